-- The latest global chart (grain: chart_rank): the rows of the newest fetch only. A newer chart
-- replaces the older one as a whole: a shorter newest chart does not keep an older chart's rows
-- at the ranks it lacks. Rows of older fetches are superseded (counted in audit.source_ledger),
-- a rank repeated within the newest fetch keeps its most played row.
with chart as (
    select
        cast(chart_rank as integer) as chart_rank,
        trim(track_name) as track_name,
        nullif(trim(track_mbid), '') as track_mbid,
        trim(artist_name) as artist_name,
        nullif(trim(artist_mbid), '') as artist_mbid,
        cast(playcount as {{ dbt.type_bigint() }}) as playcount,
        cast(listeners as {{ dbt.type_bigint() }}) as listeners,
        cast(duration_s as integer) as duration_s,
        source,
        ingested_at
    from {{ source('lastfm', 'lastfm_chart_top_tracks') }}
    where track_name is not null and artist_name is not null
),

latest_chart as (
    select chart.*
    from chart
    where chart.ingested_at = (select max(fetches.ingested_at) from chart as fetches)
),

ranked as (
    select
        *,
        row_number() over (
            partition by chart_rank order by coalesce(playcount, -1) desc, track_name asc, artist_name asc
        ) as duplicate_rank
    from latest_chart
)

select
    chart_rank,
    track_name,
    track_mbid,
    artist_name,
    artist_mbid,
    playcount,
    listeners,
    duration_s,
    source,
    ingested_at
from ranked
where duplicate_rank = 1
