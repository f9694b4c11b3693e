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

{#-
  The day range an incremental run restates, as [min_date, max_date] (ISO dates, inclusive), or
  [none, none] for "every day" (a first run, --full-refresh, or an empty table):
  - with the vars min_date/max_date (Dagster's daily partitions): those days;
  - without them, incremental: the newest stored day minus the var lookback_days (default 3, for
    late scrobbles) up to any later day. A plain scheduled `dbt build` therefore reads and
    rewrites only recent days and never deletes history; rebuilding everything is
    `--full-refresh` only.
  `newest_day_sql` is the expression of the stored table's newest day (e.g. max(listen_date)).
  Called by the model and by its pre-hook; both are rendered before the pre-hook deletes
  anything, so they see the same newest day.
-#}
{% macro restated_day_range(newest_day_sql) %}
    {%- set min_date, max_date = partition_date_range() -%}
    {%- if min_date is not none or not is_incremental() or not execute -%}
        {{ return([min_date, max_date]) }}
    {%- endif -%}
    {%- set newest = run_query("select " ~ newest_day_sql ~ " from " ~ this).columns[0].values()[0] -%}
    {%- if newest is none -%}
        {{ return([none, none]) }}
    {%- endif -%}
    {%- set newest = modules.datetime.date.fromisoformat((newest | string)[:10]) -%}
    {%- set lookback = modules.datetime.timedelta(days=var('lookback_days', 3) | int) -%}
    {{ return([(newest - lookback).isoformat(), '9999-12-31']) }}
{% endmacro %}
