-- Cross-source track resolution: every Last.fm track with its Spotify track id and its values,
-- each group taken from the best source that has it, with the source named:
--   id          : the Kaggle file (names, MBIDs; int_tracks_kaggle_matched), else a Spotify track
--                 (found by search) with the same normalised names (match_method 'spotify_name');
--   duration    : Spotify, else Kaggle, else Last.fm (duration_source);
--   popularity  : Spotify, else Kaggle (popularity_source; Spotify withdrew it for dev-mode apps);
--   genre       : the Spotify artist's genres in our vocabulary, else the Kaggle genres (genre_source);
--   audio features, as one group: Spotify, else Kaggle (audio_features_source).
-- The sources' disagreements are flagged (1/0) and counted by a Dagster check: durations more
-- than 10 s apart, and artist names that do not normalise to the Last.fm one.
with matched as (
    select * from {{ ref('int_tracks_kaggle_matched') }}
),

spotify_tracks as (
    {{ with_name_keys(
        ref('stg_spotify__tracks'), {'artist_key': 'artist_name', 'track_key': 'track_name'}, 'int_spotify__name_keys'
    ) }}
),

kaggle_tracks as (
    {{ with_name_keys(ref('stg_kaggle__tracks'), {'artist_key': 'primary_artist'}) }}
),

spotify_versions as (
    select
        spotify_track_id,
        artist_key,
        track_key,
        row_number() over (
            partition by artist_key, track_key order by coalesce(popularity, -1) desc, spotify_track_id
        ) as version_rank
    from spotify_tracks
    where artist_key is not null and track_key is not null
),

resolved as (
    select
        m.*,
        coalesce(m.spotify_track_id, s.spotify_track_id) as resolved_track_id,
        coalesce(m.match_method, case when s.spotify_track_id is not null then 'spotify_name' end) as resolved_method
    from matched as m
    left join spotify_versions as s
        on m.spotify_track_id is null
        and s.version_rank = 1
        and m.artist_key = s.artist_key
        and m.track_key = s.track_key
)

select
    r.track_id,
    r.artist_id,
    r.artist_key,
    r.track_key,
    r.artist_name,
    r.track_name,
    r.track_mbid,
    r.resolved_track_id as spotify_track_id,
    r.resolved_method as match_method,
    s.spotify_artist_id,
    s.artist_key as spotify_artist_key,
    coalesce(s.duration_ms, k.duration_ms, cast(r.duration_s as {{ dbt.type_bigint() }}) * 1000) as duration_ms,
    case
        when s.duration_ms is not null then 'spotify'
        when k.duration_ms is not null then 'kaggle'
        when r.duration_s is not null then 'lastfm'
    end as duration_source,
    coalesce(s.popularity, k.popularity) as popularity,
    case
        when s.popularity is not null then 'spotify'
        when k.popularity is not null then 'kaggle'
    end as popularity_source,
    coalesce(g.genre, k.genre) as genre,
    case when g.genre is not null then g.genres else k.genres end as genres,
    case when g.genre is not null then 'spotify' when k.genre is not null then 'kaggle' end as genre_source,
    case when f.spotify_track_id is not null then f.danceability else k.danceability end as danceability,
    case when f.spotify_track_id is not null then f.energy else k.energy end as energy,
    case when f.spotify_track_id is not null then f.speechiness else k.speechiness end as speechiness,
    case when f.spotify_track_id is not null then f.acousticness else k.acousticness end as acousticness,
    case when f.spotify_track_id is not null then f.instrumentalness else k.instrumentalness end as instrumentalness,
    case when f.spotify_track_id is not null then f.liveness else k.liveness end as liveness,
    case when f.spotify_track_id is not null then f.valence else k.valence end as valence,
    case when f.spotify_track_id is not null then f.tempo else k.tempo end as tempo,
    case when f.spotify_track_id is not null then f.loudness else k.loudness end as loudness,
    case
        when f.spotify_track_id is not null then 'spotify'
        when k.spotify_track_id is not null then 'kaggle'
    end as audio_features_source,
    case
        when s.duration_ms is not null and k.duration_ms is not null
            and abs(s.duration_ms - k.duration_ms) > 10000 then 1
        when s.duration_ms is not null and r.duration_s is not null
            and abs(s.duration_ms - r.duration_s * 1000) > 10000 then 1
        when k.duration_ms is not null and r.duration_s is not null
            and abs(k.duration_ms - r.duration_s * 1000) > 10000 then 1
        else 0
    end as duration_conflict,
    case
        when k.artist_key is not null and k.artist_key <> r.artist_key then 1
        when s.artist_key is not null and s.artist_key <> r.artist_key then 1
        else 0
    end as artist_name_conflict
from resolved as r
left join kaggle_tracks as k on r.resolved_track_id = k.spotify_track_id
left join spotify_tracks as s on r.resolved_track_id = s.spotify_track_id
left join {{ ref('stg_spotify__audio_features') }} as f on r.resolved_track_id = f.spotify_track_id
left join {{ ref('int_spotify__artist_genres') }} as g on s.spotify_artist_id = g.spotify_artist_id
