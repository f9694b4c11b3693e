{#- Timestamps (UTC, without time zone) later than now plus one hour of clock skew are impossible for listens. -#}
{% test not_in_future(model, column_name) %}
select *
from {{ model }}
where {{ column_name }} > {{ dbt.dateadd('hour', 1, utc_now()) }}
{% endtest %}
