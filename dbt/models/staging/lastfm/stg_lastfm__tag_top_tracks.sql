-- Top tracks per genre tag; the tag is the genre the listeners gave the track.
with ranked as (
    select
        lower(trim(tag_name)) as tag_name,
        cast(track_rank as integer) as tag_rank,
        trim(track_name) as track_name,
        nullif(trim(track_mbid), '') as track_mbid,
        trim(artist_name) as artist_name,
        nullif(trim(artist_mbid), '') as artist_mbid,
        cast(duration_s as integer) as duration_s,
        source,
        ingested_at,
        row_number() over (partition by lower(trim(tag_name)), track_rank order by ingested_at desc) as duplicate_rank
    from {{ source('lastfm', 'lastfm_tag_top_tracks') }}
    where track_name is not null and artist_name is not null
)

select
    tag_name,
    tag_rank,
    track_name,
    track_mbid,
    artist_name,
    artist_mbid,
    duration_s,
    source,
    ingested_at
from ranked
where duplicate_rank = 1
