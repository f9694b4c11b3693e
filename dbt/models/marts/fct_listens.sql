-- One row per listen, keyed to the user, track and artist dimensions.
--
-- Incremental by listening day. With the vars min_date/max_date (ISO dates; Dagster passes a
-- daily partition range) a run restates exactly those days: the pre-hook deletes them, the
-- model selects them again. Without the vars an incremental run restates every day; the first
-- run and --full-refresh build the whole history. The delete runs inside the model's
-- transaction on DuckDB and PostgreSQL (dbt runs pre-hooks there); on Snowflake it commits
-- before the insert, so readers may see the range empty for the length of the insert.
--
-- Match keys are computed here, once per distinct (artist, track) spelling of the days being
-- built, with the same normalize_name macro as int_lastfm__name_keys: a daily run then needs
-- nothing but the day's listens, and full history builds normalise each spelling once.
{%- set min_date, max_date = partition_date_range() -%}
{%- set restate_range = is_incremental() and min_date is not none -%}

{{ config(
    materialized='incremental',
    incremental_strategy='delete+insert',
    unique_key='listen_date',
    on_schema_change='fail',
    pre_hook="{% if is_incremental() %}delete from {{ this }}{% if var('min_date', none) is not none %} where listen_date between cast('{{ var('min_date') }}' as date) and cast('{{ var('max_date') }}' as date){% endif %}{% endif %}",
) }}

with listens as (
    select listen_id, user_id, artist_name, track_name, played_at, listen_date, source
    from {{ ref('stg_lastfm__scrobbles') }}
    {%- if restate_range %}
    where listen_date between cast('{{ min_date }}' as date) and cast('{{ max_date }}' as date)
    {%- endif %}
),

spellings as (
    select distinct artist_name, track_name from listens
),

keys as (
    select
        artist_name,
        track_name,
        {{ normalize_name('artist_name') }} as artist_key,
        {{ normalize_name('track_name') }} as track_key
    from spellings
)

select
    s.listen_id,
    s.user_id,
    {{ hash_key("k.artist_key || '|' || k.track_key") }} as track_id,
    {{ hash_key("k.artist_key") }} as artist_id,
    s.played_at,
    s.listen_date,
    s.source
from listens as s
inner join keys as k
    on s.artist_name = k.artist_name and s.track_name = k.track_name
where k.artist_key <> '' and k.track_key <> ''
