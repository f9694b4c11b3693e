{#- The combination of columns identifies a row: the grain of a model whose key spans several
    columns. Named and called like dbt_utils' test (combination_of_columns, quote_columns), so
    tools that recognise primary-key tests see it; implemented here because `dbt deps` cannot
    reach the package hub. -#}
{% test unique_combination_of_columns(model, combination_of_columns, quote_columns=false) %}
{%- if quote_columns -%}
    {%- set columns = [] -%}
    {%- for column in combination_of_columns -%}
        {%- do columns.append(adapter.quote(column)) -%}
    {%- endfor -%}
{%- else -%}
    {%- set columns = combination_of_columns -%}
{%- endif -%}
select {{ columns | join(', ') }}, count(*) as occurrences
from {{ model }}
group by {{ columns | join(', ') }}
having count(*) > 1
{% endtest %}
