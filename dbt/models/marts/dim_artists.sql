-- Every artist we know (heard or charted on Last.fm, or in the Kaggle catalogue), with genre,
-- top tags, Spotify popularity and audience; each value group names its source.
with ranked_tags as (
    select
        artist_id,
        tag_name,
        tag_rank,
        row_number() over (partition by artist_id order by tag_rank, tag_name) as tag_position
    from {{ ref('artist_tags') }}
),

-- The five best-ranked tags; limited before aggregating because listagg's limit argument
-- becomes array functions that differ between warehouses.
tag_lists as (
    select
        artist_id,
        {{ dbt.listagg('tag_name', "';'", "order by tag_rank, tag_name") }} as top_tags
    from ranked_tags
    where tag_position <= 5
    group by artist_id
),

audience as (
    select artist_id, count(distinct user_id) as listener_count, count(*) as listen_count
    from {{ ref('fct_listens') }}
    group by artist_id
)

select
    a.artist_id,
    a.artist_name,
    a.name_source,
    a.artist_mbid,
    a.spotify_artist_id,
    a.genre,
    a.genre_source,
    t.top_tags,
    a.popularity,
    a.popularity_source,
    a.followers,
    coalesce(au.listener_count, 0) as listener_count,
    coalesce(au.listen_count, 0) as listen_count
from {{ ref('int_artists_resolved') }} as a
left join tag_lists as t on a.artist_id = t.artist_id
left join audience as au on a.artist_id = au.artist_id
