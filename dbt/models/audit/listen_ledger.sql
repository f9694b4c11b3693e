-- Where every scrobble went, per listening day (grain: listen_date): what raw received, what
-- staging removed as duplicates and kept, what the mart kept and what it set aside with a
-- reason. Each figure is counted on its own table, so a layer that loses rows shows up as
-- unaccounted_rows <> 0. A day balances when
--     received_rows = staged_rows + duplicate_rows          (raw -> staging)
--     staged_rows   = kept_rows + set_aside_rows            (staging -> mart)
-- The test on this model (listens_accounted_for) fails the build for a day that does not
-- balance or keeps less than 95% of what raw received, and user_track_interactions, which
-- depends on it, is then not built from that day; the Dagster check listens_accounted_for on
-- marts/fct_listens reads these rows and shows them per partition.
--
-- A view: every read counts the tables as they are now, so rows that disappear after a build
-- show up at the next check. Readers filter by day (the filter reaches the tables, each of
-- which is organised by day). Tagged "daily": it runs with the day-partitioned models.
{{ config(materialized='view', tags=['daily']) }}

with raw_rows as (
    select cast(scrobble_date as date) as listen_date, count(*) as received_rows
    from {{ source('lastfm', 'lastfm_scrobbles') }}
    group by cast(scrobble_date as date)
),

-- distinct on the deduplication key of stg_lastfm__scrobbles, counted on raw
distinct_raw_rows as (
    select listen_date, count(*) as distinct_rows
    from (
        select distinct
            cast(scrobble_date as date) as listen_date,
            trim(user_name) as user_name,
            played_at_uts,
            trim(artist_name) as artist_name,
            trim(track_name) as track_name
        from {{ source('lastfm', 'lastfm_scrobbles') }}
    ) as scrobbles
    group by listen_date
),

staged as (
    select listen_date, count(*) as staged_rows
    from {{ ref('stg_lastfm__scrobbles') }}
    group by listen_date
),

kept as (
    select listen_date, count(*) as kept_rows
    from {{ ref('fct_listens') }}
    group by listen_date
),

set_aside as (
    select listen_date, count(*) as set_aside_rows
    from {{ ref('listens_set_aside') }}
    group by listen_date
),

days as (
    select listen_date from raw_rows
    union
    select listen_date from staged
    union
    select listen_date from kept
    union
    select listen_date from set_aside
),

counts as (
    select
        d.listen_date,
        coalesce(r.received_rows, 0) as received_rows,
        coalesce(r.received_rows, 0) - coalesce(dr.distinct_rows, 0) as duplicate_rows,
        coalesce(s.staged_rows, 0) as staged_rows,
        coalesce(k.kept_rows, 0) as kept_rows,
        coalesce(a.set_aside_rows, 0) as set_aside_rows
    from days as d
    left join raw_rows as r on d.listen_date = r.listen_date
    left join distinct_raw_rows as dr on d.listen_date = dr.listen_date
    left join staged as s on d.listen_date = s.listen_date
    left join kept as k on d.listen_date = k.listen_date
    left join set_aside as a on d.listen_date = a.listen_date
)

select
    listen_date,
    received_rows,
    duplicate_rows,
    staged_rows,
    kept_rows,
    set_aside_rows,
    received_rows - duplicate_rows - kept_rows - set_aside_rows as unaccounted_rows,
    received_rows - duplicate_rows - staged_rows as lost_in_staging_rows,
    staged_rows - kept_rows - set_aside_rows as lost_in_mart_rows,
    case when received_rows > 0 then cast(kept_rows as {{ dbt.type_float() }}) / received_rows end as kept_share,
    {{ utc_now() }} as measured_at
from counts
