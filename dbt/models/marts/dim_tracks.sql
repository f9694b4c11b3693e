-- Every track we know (listened, charted or tag-top on Last.fm), with its genre and audio
-- features and where each came from (int_tracks_resolved): Spotify where this app may fetch it,
-- else the Kaggle file; a track without a genre of its own takes its artist's.
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
    coalesce(t.genre, a.genre) as genre,
    coalesce(t.genres, a.genre) as genres,
    case when t.genre is not null then t.genre_source else a.genre_source end as genre_source,
    t.duration_ms,
    t.duration_source,
    t.popularity,
    t.popularity_source,
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
