{#- The column's total equals the number of rows of compare_model (e.g. play counts add up to
    the listens they count). -#}
{% test sum_equals_row_count(model, column_name, compare_model) %}
with totals as (
    select coalesce(sum({{ column_name }}), 0) as column_total from {{ model }}
),

compared as (
    select count(*) as compare_rows from {{ compare_model }}
)

select t.column_total, c.compare_rows
from totals as t
cross join compared as c
where t.column_total <> c.compare_rows
{% endtest %}
