-- One row per normalised artist with its primary genre: the best-ranked Last.fm tag that is a
-- known genre, else the most common Kaggle genre of its matched tracks.
with artist_names as (
    select
        artist_id,
        artist_key,
        artist_name,
        row_number() over (partition by artist_id order by count(*) desc, artist_name) as spelling_rank
    from {{ ref('int_lastfm__tracks') }}
    group by artist_id, artist_key, artist_name
),

tag_genres as (
    select
        tags.artist_key,
        tags.tag_name as genre,
        row_number() over (partition by tags.artist_key order by tags.tag_rank, tags.tag_count desc) as genre_rank
    from {{ ref('stg_lastfm__artist_tags') }} as tags
    inner join {{ ref('int_genre_vocabulary') }} as vocabulary on tags.tag_name = vocabulary.genre
),

kaggle_genres as (
    select
        artist_key,
        kaggle_genre as genre,
        row_number() over (partition by artist_key order by count(*) desc, kaggle_genre) as genre_rank
    from {{ ref('int_tracks_resolved') }}
    where kaggle_genre is not null
    group by artist_key, kaggle_genre
),

mbids as (
    select k.artist_key, max(s.artist_mbid) as artist_mbid
    from (
        select artist_name, max(artist_mbid) as artist_mbid
        from {{ ref('stg_lastfm__scrobbles') }}
        group by artist_name
    ) as s
    inner join (select distinct artist_name, artist_key from {{ ref('int_lastfm__name_keys') }}) as k
        on s.artist_name = k.artist_name
    group by k.artist_key
)

select
    n.artist_id,
    n.artist_key,
    n.artist_name,
    m.artist_mbid,
    coalesce(t.genre, k.genre) as genre,
    case when t.genre is not null then 'lastfm_tags' when k.genre is not null then 'kaggle' end as genre_source
from artist_names as n
left join tag_genres as t on n.artist_key = t.artist_key and t.genre_rank = 1
left join kaggle_genres as k on n.artist_key = k.artist_key and k.genre_rank = 1
left join mbids as m on n.artist_key = m.artist_key
where n.spelling_rank = 1
