-- The recommender's input: how often each user played each track, and when.
--
-- Incremental by listening day, restating only the (user, track) pairs a day range can change.
-- unique_key (user_id, track_id) with delete+insert: a restated pair's row is replaced by its
-- count over its whole history, so it never double-counts. The range is the run's
-- --event-time-start/--event-time-end or the vars min_date/max_date (the range fct_listens has
-- just restated), or without them the newest stored day minus
-- lookback_days onwards (macros/partition_date_range.sql: restated_day_range); the pairs are:
--   * every pair with a listen in the range now, and
--   * every stored pair whose first..last play overlaps the range (it may have lost listens there).
-- The pre-hook first drops overlapping pairs left with no listen at all (nothing to insert for
-- them). A plain run never deletes the whole table; the first run and --full-refresh build from
-- scratch. music_platform_tests/test_incremental_models.py proves day-by-day builds and
-- restatements equal a full refresh.
--
-- Built only from days whose ledger balances: it depends on audit.listen_ledger, whose test
-- fails the day otherwise, and dbt then skips this model.
-- depends_on: {{ ref('listen_ledger') }}
{%- set min_date, max_date = restated_day_range('max(cast(last_played_at as date))') -%}
{%- set restate_range = is_incremental() and min_date is not none -%}

{{ config(
    materialized='incremental',
    tags=['daily'],
    incremental_strategy='delete+insert',
    unique_key=['user_id', 'track_id'],
    on_schema_change='fail',
    pre_hook="{% if is_incremental() %}{% set first, last = restated_day_range('max(cast(last_played_at as date))') %}{% if first is not none %}delete from {{ this }} as stored where cast(stored.last_played_at as date) >= cast('{{ first }}' as date) and cast(stored.first_played_at as date) <= cast('{{ last }}' as date) and not exists (select 1 from {{ ref('fct_listens') }} as f where f.user_id = stored.user_id and f.track_id = stored.track_id){% endif %}{% endif %}",
) }}

{%- if restate_range %}
with touched as (
    select distinct user_id, track_id
    from {{ ref('fct_listens') }}
    where listen_date between cast('{{ min_date }}' as date) and cast('{{ max_date }}' as date)
    union
    select user_id, track_id
    from {{ this }}
    where cast(last_played_at as date) >= cast('{{ min_date }}' as date)
        and cast(first_played_at as date) <= cast('{{ max_date }}' as date)
)

select
    f.user_id,
    f.track_id,
    count(*) as play_count,
    min(f.played_at) as first_played_at,
    max(f.played_at) as last_played_at
from {{ ref('fct_listens') }} as f
inner join touched as t on f.user_id = t.user_id and f.track_id = t.track_id
group by f.user_id, f.track_id
{%- else %}
select
    user_id,
    track_id,
    count(*) as play_count,
    min(played_at) as first_played_at,
    max(played_at) as last_played_at
from {{ ref('fct_listens') }}
group by user_id, track_id
{%- endif %}
