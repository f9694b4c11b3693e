-- Cross-source track resolution: each Last.fm track matched to a Spotify/Kaggle track id by
-- normalised (artist, track) names; among several Kaggle versions the most popular wins.
with kaggle_ranked as (
    select
        k.*,
        row_number() over (
            partition by artist_key, track_key order by popularity desc, spotify_track_id
        ) as version_rank
    from {{ ref('stg_kaggle__tracks') }} as k
)

select
    t.track_id,
    t.artist_id,
    t.artist_key,
    t.track_key,
    t.artist_name,
    t.track_name,
    t.track_mbid,
    k.spotify_track_id,
    case when k.spotify_track_id is not null then 'normalised_name' end as match_method,
    coalesce(k.duration_ms, cast(t.duration_s as {{ dbt.type_bigint() }}) * 1000) as duration_ms,
    k.popularity,
    k.genre as kaggle_genre,
    k.genres as kaggle_genres,
    k.danceability,
    k.energy,
    k.speechiness,
    k.acousticness,
    k.instrumentalness,
    k.liveness,
    k.valence,
    k.tempo,
    k.loudness,
    case when k.spotify_track_id is not null then 'kaggle' end as audio_features_source
from {{ ref('int_lastfm__tracks') }} as t
left join kaggle_ranked as k
    on t.artist_key = k.artist_key
    and t.track_key = k.track_key
    and k.version_rank = 1
