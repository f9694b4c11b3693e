-- Scrobbles that could not become listens, each with the reason (grain: listen_id). Together
-- with marts.fct_listens they hold every staged scrobble exactly once; audit.listen_ledger
-- adds them up per day. Reasons: missing_user, missing_artist_name, missing_track_name,
-- missing_played_at, missing_listen_date, listen_date_mismatch, played_at_in_future
-- (macros/listen_set_aside_reason.sql).
--
-- Incremental by listening day exactly like fct_listens (same window, same lookback rule, so the
-- two describe the same days; its own newest day can only be older, which restates more).
-- Real time (issue 19): the raw day is a direct parent, so a load of today's scrobbles triggers
-- this day's partition by declarative automation (staging is a view and does not rebuild then).
-- depends_on: {{ source('lastfm', 'lastfm_scrobbles') }}
{%- set min_date, max_date = restated_day_range('max(listen_date)') -%}
{%- set restate_range = is_incremental() and min_date is not none -%}

{{ config(
    materialized='incremental',
    tags=['daily'],
    incremental_strategy='delete+insert',
    unique_key='listen_date',
    on_schema_change='fail',
    pre_hook="{% if is_incremental() %}{% set first, last = restated_day_range('max(listen_date)') %}{% if first is not none %}delete from {{ this }} where listen_date between cast('{{ first }}' as date) and cast('{{ last }}' as date){% endif %}{% endif %}",
) }}

select
    listen_id,
    set_aside_reason as reason,
    user_id,
    artist_name,
    track_name,
    album_name,
    played_at_uts,
    played_at,
    listen_date,
    track_mbid,
    artist_mbid,
    source,
    ingested_at
from {{ ref('stg_lastfm__scrobbles') }}
where set_aside_reason is not null
{%- if restate_range %}
    and listen_date between cast('{{ min_date }}' as date) and cast('{{ max_date }}' as date)
{%- endif %}
