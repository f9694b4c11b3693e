-- One row per normalised artist we know: every artist Last.fm told us about (heard, charted,
-- tag-top), and the Kaggle catalogue's primary artists, so the marts cover the catalogue.
-- Values, each with its source:
--   artist_name        : the most frequent Last.fm spelling, else the Kaggle one (name_source);
--   spotify_artist_id  : the primary Spotify artist of its resolved tracks whose name matches;
--   genre              : the Spotify artist's first genre in our vocabulary, else its best-ranked
--                        Last.fm tag that is a known genre, else its most common Kaggle genre
--                        (genre_source 'spotify' | 'lastfm_tags' | 'kaggle');
--   popularity, followers: Spotify (null where Spotify withdrew them, or without Spotify).
with lastfm_spellings as (
    select
        artist_id,
        artist_key,
        artist_name,
        row_number() over (partition by artist_id order by count(*) desc, artist_name) as spelling_rank
    from {{ ref('int_lastfm__tracks') }}
    group by artist_id, artist_key, artist_name
),

kaggle_tracks as (
    {{ with_name_keys(ref('stg_kaggle__tracks'), {'artist_key': 'primary_artist'}) }}
),

kaggle_spellings as (
    select
        artist_key,
        primary_artist as artist_name,
        row_number() over (partition by artist_key order by count(*) desc, primary_artist) as spelling_rank
    from kaggle_tracks
    where artist_key is not null
    group by artist_key, primary_artist
),

artists as (
    select artist_id, artist_key, artist_name, 'lastfm' as name_source
    from lastfm_spellings
    where spelling_rank = 1
    union all
    select {{ artist_id_of('k.artist_key') }} as artist_id, k.artist_key, k.artist_name, 'kaggle' as name_source
    from kaggle_spellings as k
    where k.spelling_rank = 1
        and not exists (select 1 from lastfm_spellings as l where l.artist_key = k.artist_key)
),

spotify_ids as (
    select
        artist_key,
        spotify_artist_id,
        row_number() over (partition by artist_key order by count(*) desc, spotify_artist_id) as id_rank
    from {{ ref('int_tracks_resolved') }}
    where spotify_artist_id is not null and spotify_artist_key = artist_key
    group by artist_key, spotify_artist_id
),

artist_tags as (
    {{ with_name_keys(ref('stg_lastfm__artist_tags'), {'artist_key': 'artist_name'}) }}
),

tag_genres as (
    select
        tags.artist_key,
        tags.tag_name as genre,
        row_number() over (partition by tags.artist_key order by tags.tag_rank, tags.tag_count desc) as genre_rank
    from artist_tags as tags
    inner join {{ ref('int_genre_vocabulary') }} as vocabulary on tags.tag_name = vocabulary.genre
),

kaggle_genres as (
    select
        artist_key,
        genre,
        row_number() over (partition by artist_key order by count(*) desc, genre) as genre_rank
    from kaggle_tracks
    where genre is not null and artist_key is not null
    group by artist_key, genre
)

select
    a.artist_id,
    a.artist_key,
    a.artist_name,
    a.name_source,
    m.artist_mbid,
    si.spotify_artist_id,
    coalesce(sg.genre, t.genre, k.genre) as genre,
    case
        when sg.genre is not null then 'spotify'
        when t.genre is not null then 'lastfm_tags'
        when k.genre is not null then 'kaggle'
    end as genre_source,
    sa.popularity,
    case when sa.popularity is not null then 'spotify' end as popularity_source,
    sa.followers
from artists as a
left join spotify_ids as si on a.artist_key = si.artist_key and si.id_rank = 1
left join {{ ref('stg_spotify__artists') }} as sa on si.spotify_artist_id = sa.spotify_artist_id
left join {{ ref('int_spotify__artist_genres') }} as sg on si.spotify_artist_id = sg.spotify_artist_id
left join tag_genres as t on a.artist_key = t.artist_key and t.genre_rank = 1
left join kaggle_genres as k on a.artist_key = k.artist_key and k.genre_rank = 1
left join {{ ref('int_lastfm__artist_mbids') }} as m on a.artist_key = m.artist_key
