-- Every track Last.fm told us about (listened, charted or tag-top), one row per (artist key,
-- track key) (grain: track_id): the display names are the most frequently seen spelling.
with mentions as (
    select artist_name, track_name, max(track_mbid) as track_mbid, null as duration_s, count(*) as mentions
    from {{ ref('stg_lastfm__scrobbles') }}
    where set_aside_reason is null
    group by artist_name, track_name
    union all
    select artist_name, track_name, max(track_mbid) as track_mbid, max(duration_s) as duration_s, count(*) as mentions
    from {{ ref('stg_lastfm__tag_top_tracks') }}
    group by artist_name, track_name
    union all
    select artist_name, track_name, max(track_mbid) as track_mbid, max(duration_s) as duration_s, count(*) as mentions
    from {{ ref('stg_lastfm__chart_top_tracks') }}
    group by artist_name, track_name
),

keyed as (
    select
        artist_keys.name_key as artist_key,
        track_keys.name_key as track_key,
        m.artist_name,
        m.track_name,
        m.track_mbid,
        m.duration_s,
        m.mentions
    from mentions as m
    inner join {{ ref('int_name_keys') }} as artist_keys on m.artist_name = artist_keys.name
    inner join {{ ref('int_name_keys') }} as track_keys on m.track_name = track_keys.name
),

spellings as (
    select
        artist_key,
        track_key,
        artist_name,
        track_name,
        row_number() over (
            partition by artist_key, track_key order by sum(mentions) desc, artist_name asc, track_name asc
        ) as spelling_rank
    from keyed
    group by artist_key, track_key, artist_name, track_name
),

ids as (
    select artist_key, track_key, max(track_mbid) as track_mbid, max(duration_s) as duration_s
    from keyed
    group by artist_key, track_key
)

select
    {{ track_id_of('s.artist_key', 's.track_key') }} as track_id,
    {{ artist_id_of('s.artist_key') }} as artist_id,
    s.artist_key,
    s.track_key,
    s.artist_name,
    s.track_name,
    i.track_mbid,
    i.duration_s
from spellings as s
inner join ids as i on s.artist_key = i.artist_key and s.track_key = i.track_key
where s.spelling_rank = 1
