-- The latest global chart.
with ranked as (
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
        ingested_at,
        row_number() over (partition by chart_rank order by ingested_at desc) as duplicate_rank
    from {{ source('lastfm', 'lastfm_chart_top_tracks') }}
    where track_name is not null and artist_name is not null
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
