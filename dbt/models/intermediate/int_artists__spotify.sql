-- Step 2 of the artist resolution: each artist's Spotify artist and what Spotify says of it.
-- The Spotify artist is the primary artist of the artist's resolved tracks whose name key
-- matches (the most frequent one, then the smallest id); its genre is its first genre in our
-- vocabulary; popularity and followers are null where Spotify withdrew them. Artists without
-- such a Spotify artist (or without Spotify) have no row.
with spotify_ids as (
    select
        artist_key,
        spotify_artist_id,
        row_number() over (partition by artist_key order by count(*) desc, spotify_artist_id) as id_rank
    from {{ ref('int_tracks_resolved') }}
    where spotify_artist_id is not null and spotify_artist_key = artist_key
    group by artist_key, spotify_artist_id
)

select
    ids.artist_key,
    ids.spotify_artist_id,
    genres.genre,
    artists.popularity,
    artists.followers
from spotify_ids as ids
left join {{ ref('stg_spotify__artists') }} as artists on ids.spotify_artist_id = artists.spotify_artist_id
left join {{ ref('int_spotify__artist_genres') }} as genres on ids.spotify_artist_id = genres.spotify_artist_id
where ids.id_rank = 1
