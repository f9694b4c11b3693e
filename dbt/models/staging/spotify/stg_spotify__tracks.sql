-- Spotify tracks: one row per Spotify track id (the latest answer), typed.
with ranked as (
    select
        *,
        row_number() over (partition by track_id order by ingested_at desc) as duplicate_rank
    from {{ source('spotify', 'spotify_tracks') }}
    where track_id is not null and track_name is not null and primary_artist_name is not null
)

select
    track_id as spotify_track_id,
    trim(track_name) as track_name,
    primary_artist_id as spotify_artist_id,
    trim(primary_artist_name) as artist_name,
    artist_ids as spotify_artist_ids,
    artist_names,
    nullif(trim(album_name), '') as album_name,
    album_release_date,
    cast(duration_ms as {{ dbt.type_bigint() }}) as duration_ms,
    explicit,
    cast(popularity as integer) as popularity,
    nullif(trim(isrc), '') as isrc,
    source,
    ingested_at
from ranked
where duplicate_rank = 1
