{#-
  The day range a partitioned run restates, as [min_date, max_date] (ISO dates, inclusive), or
  [none, none] when the run names none (restate everything):
  - dbt's own time-window flags `--event-time-start` (inclusive) and `--event-time-end`
    (exclusive), which Dagster passes for a daily partition range: they are run arguments, not
    vars, so changing them from run to run keeps partial parsing (a changed `--vars` re-parses
    the whole project);
  - else the vars min_date/max_date (inclusive; plain `dbt build --vars`, the unit tests). Both or
    neither: one alone is an error. fromisoformat rejects anything that is not a date, so the
    values are safe to inline in SQL.
  Read only when executing: parsing must not depend on the window.
-#}
{% macro partition_date_range() %}
    {%- set event_start = invocation_args_dict.get('event_time_start') if execute else none -%}
    {%- set event_end = invocation_args_dict.get('event_time_end') if execute else none -%}
    {%- if event_start is not none and event_end is not none -%}
        {%- set first = modules.datetime.date.fromisoformat((event_start | string)[:10]) -%}
        {%- set end = modules.datetime.datetime.fromisoformat(event_end | string) -%}
        {#- The end is exclusive: a window ending at midnight ends with the day before. -#}
        {%- set last = end.date() if (end.hour, end.minute, end.second, end.microsecond) != (0, 0, 0, 0)
            else end.date() - modules.datetime.timedelta(days=1) -%}
        {{ return([first.isoformat(), last.isoformat()]) }}
    {%- endif -%}
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
  The `where` of a test that judges only the days a partitioned run restated (every row on a
  full refresh or a run without a window). Used through `get_where_subquery` (below) with the
  test config `where: restated_days`, because a `where` written in YAML is rendered when dbt
  parses, and the window is a run argument.
-#}
{% macro restated_days_predicate(column='listen_date') %}
    {%- set min_date, max_date = partition_date_range() -%}
    {%- if min_date is none or flags.FULL_REFRESH -%}
        1 = 1
    {%- else -%}
        {{ column }} between cast('{{ min_date }}' as date) and cast('{{ max_date }}' as date)
    {%- endif -%}
{% endmacro %}

{#- dbt's get_where_subquery, with the named predicate `restated_days` rendered at run time. -#}
{% macro get_where_subquery(relation) -%}
    {%- set where = config.get('where', '') -%}
    {%- if where == 'restated_days' -%}
        {%- set where = restated_days_predicate() -%}
    {%- endif -%}
    {%- if where -%}
        {%- set filtered -%}
            (select * from {{ relation }} where {{ where }}) dbt_subquery
        {%- endset -%}
        {{ return(filtered) }}
    {%- else -%}
        {{ return(relation) }}
    {%- endif -%}
{%- endmacro %}

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
