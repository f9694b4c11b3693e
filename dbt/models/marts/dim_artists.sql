-- Every artist we know, with genre, top tags and audience.
with tag_lists as (
    select
        artist_id,
        {{ dbt.listagg('tag_name', "';'", "order by tag_rank", 5) }} as top_tags
    from {{ ref('artist_tags') }}
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
    a.artist_mbid,
    a.genre,
    a.genre_source,
    t.top_tags,
    coalesce(au.listener_count, 0) as listener_count,
    coalesce(au.listen_count, 0) as listen_count
from {{ ref('int_artists_resolved') }} as a
left join tag_lists as t on a.artist_id = t.artist_id
left join audience as au on a.artist_id = au.artist_id
