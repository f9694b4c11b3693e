-- One row per normalised artist we know (int_artists__names), with its values, each with its
-- source. Every step is a model of its own, joined here one to one on the artist key:
--   int_artists__names          : artist_id, artist_key, artist_name, name_source;
--   int_lastfm__artist_mbids    : artist_mbid;
--   int_artists__spotify        : spotify_artist_id, its genre, popularity, followers;
--   int_artists__lastfm_genres  : the best-ranked Last.fm genre tag;
--   int_artists__kaggle_genres  : the most common Kaggle genre.
-- genre is Spotify's, else Last.fm's, else Kaggle's (genre_source 'spotify' | 'lastfm_tags' |
-- 'kaggle').
select
    artists.artist_id,
    artists.artist_key,
    artists.artist_name,
    artists.name_source,
    mbids.artist_mbid,
    spotify.spotify_artist_id,
    coalesce(spotify.genre, lastfm_genres.genre, kaggle_genres.genre) as genre,
    case
        when spotify.genre is not null then 'spotify'
        when lastfm_genres.genre is not null then 'lastfm_tags'
        when kaggle_genres.genre is not null then 'kaggle'
    end as genre_source,
    spotify.popularity,
    case when spotify.popularity is not null then 'spotify' end as popularity_source,
    spotify.followers
from {{ ref('int_artists__names') }} as artists
left join {{ ref('int_lastfm__artist_mbids') }} as mbids on artists.artist_key = mbids.artist_key
left join {{ ref('int_artists__spotify') }} as spotify on artists.artist_key = spotify.artist_key
left join {{ ref('int_artists__lastfm_genres') }} as lastfm_genres on artists.artist_key = lastfm_genres.artist_key
left join {{ ref('int_artists__kaggle_genres') }} as kaggle_genres on artists.artist_key = kaggle_genres.artist_key
