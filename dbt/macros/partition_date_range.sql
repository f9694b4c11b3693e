{#-
  The day range a partitioned run restates: the vars min_date/max_date (ISO dates; Dagster
  passes a daily partition range), returned as [min_date, max_date], or [none, none] when the
  run has neither (restate everything). Both or neither: one alone is an error. fromisoformat
  rejects anything that is not a date, so the values are safe to inline in SQL.
-#}
{% macro partition_date_range() %}
    {%- set min_date = var('min_date', none) -%}
    {%- set max_date = var('max_date', none) -%}
    {%- if (min_date is none) != (max_date is none) -%}
        {{ exceptions.raise_compiler_error(model.name ~ ": pass both min_date and max_date, or neither") }}
    {%- endif -%}
    {%- if min_date is not none -%}
        {%- set min_date = modules.datetime.date.fromisoformat(min_date | string).isoformat() -%}
        {%- set max_date = modules.datetime.date.fromisoformat(max_date | string).isoformat() -%}
    {%- endif -%}
    {{ return([min_date, max_date]) }}
{% endmacro %}
