-- Every track we know, with its genre and audio features (and where each came from).
with audience as (
    select track_id, count(distinct user_id) as listener_count, count(*) as listen_count
    from {{ ref('fct_listens') }}
    group by track_id
)

select
    t.track_id,
    t.track_name,
    t.artist_id,
    t.artist_name,
    t.track_mbid,
    t.spotify_track_id,
    t.match_method,
    coalesce(t.kaggle_genre, a.genre) as genre,
    coalesce(t.kaggle_genres, a.genre) as genres,
    case when t.kaggle_genre is not null then 'kaggle' else a.genre_source end as genre_source,
    t.duration_ms,
    t.popularity,
    t.danceability,
    t.energy,
    t.speechiness,
    t.acousticness,
    t.instrumentalness,
    t.liveness,
    t.valence,
    t.tempo,
    t.loudness,
    t.audio_features_source,
    coalesce(au.listener_count, 0) as listener_count,
    coalesce(au.listen_count, 0) as listen_count
from {{ ref('int_tracks_resolved') }} as t
left join {{ ref('int_artists_resolved') }} as a on t.artist_id = a.artist_id
left join audience as au on t.track_id = au.track_id
