-- The recommender's input: how often each user played each track, and when.
--
-- Incremental by listening day, restating only the (user, track) pairs a day range can change.
-- With the vars min_date/max_date (the range fct_listens has just restated) those pairs are:
--   * every pair with a listen in the range now, and
--   * every stored pair whose first..last play overlaps the range (it may have lost listens there).
-- Their counts are recomputed over their whole history (delete+insert on the pair), so a
-- restated day that adds, changes or removes listens gives what a full rebuild gives. The
-- pre-hook first drops overlapping pairs left with no listen at all (nothing to insert for
-- them). Without the vars an incremental run restates every pair; the first run and
-- --full-refresh build from scratch. music_platform_tests/test_incremental_models.py proves
-- day-by-day builds and restatements equal a full refresh.
--
-- Built only from days whose ledger balances: it depends on audit.listen_ledger, whose test
-- fails the day otherwise, and dbt then skips this model.
-- depends_on: {{ ref('listen_ledger') }}
{%- set min_date, max_date = partition_date_range() -%}
{%- set restate_range = is_incremental() and min_date is not none -%}

{{ config(
    materialized='incremental',
    tags=['daily'],
    incremental_strategy='delete+insert',
    unique_key=['user_id', 'track_id'],
    on_schema_change='fail',
    pre_hook="{% if is_incremental() %}delete from {{ this }} as stored{% if var('min_date', none) is not none %} where cast(stored.last_played_at as date) >= cast('{{ var('min_date') }}' as date) and cast(stored.first_played_at as date) <= cast('{{ var('max_date') }}' as date) and not exists (select 1 from {{ ref('fct_listens') }} as f where f.user_id = stored.user_id and f.track_id = stored.track_id){% endif %}{% endif %}",
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
