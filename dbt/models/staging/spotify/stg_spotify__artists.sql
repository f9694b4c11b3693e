-- Spotify artists: one row per Spotify artist id (the latest answer).
-- genres stays ';'-joined and lower case; null where Spotify no longer sends it.
with ranked as (
    select
        *,
        row_number() over (partition by artist_id order by ingested_at desc) as duplicate_rank
    from {{ source('spotify', 'spotify_artists') }}
    where artist_id is not null and artist_name is not null
)

select
    artist_id as spotify_artist_id,
    trim(artist_name) as artist_name,
    nullif(lower(trim(genres)), '') as genres,
    cast(popularity as integer) as popularity,
    cast(followers as {{ dbt.type_bigint() }}) as followers,
    source,
    ingested_at
from ranked
where duplicate_rank = 1
