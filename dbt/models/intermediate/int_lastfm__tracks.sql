-- Every track Last.fm told us about (listened, charted or tag-top), one row per normalised
-- (artist, track): the display names and MBID are the most frequently seen spelling.
with mentions as (
    select artist_key, track_key, artist_name, track_name, artist_mbid, track_mbid, null as duration_s from {{ ref('stg_lastfm__scrobbles') }}
    union all
    select artist_key, track_key, artist_name, track_name, artist_mbid, track_mbid, duration_s from {{ ref('stg_lastfm__tag_top_tracks') }}
    union all
    select artist_key, track_key, artist_name, track_name, artist_mbid, track_mbid, duration_s from {{ ref('stg_lastfm__chart_top_tracks') }}
),

spellings as (
    select
        artist_key,
        track_key,
        artist_name,
        track_name,
        row_number() over (
            partition by artist_key, track_key order by count(*) desc, artist_name, track_name
        ) as spelling_rank
    from mentions
    where artist_key <> '' and track_key <> ''
    group by artist_key, track_key, artist_name, track_name
),

ids as (
    select artist_key, track_key, max(track_mbid) as track_mbid, max(duration_s) as duration_s
    from mentions
    group by artist_key, track_key
)

select
    {{ hash_key("s.artist_key || '|' || s.track_key") }} as track_id,
    {{ hash_key("s.artist_key") }} as artist_id,
    s.artist_key,
    s.track_key,
    s.artist_name,
    s.track_name,
    i.track_mbid,
    i.duration_s
from spellings as s
inner join ids as i on s.artist_key = i.artist_key and s.track_key = i.track_key
where s.spelling_rank = 1
