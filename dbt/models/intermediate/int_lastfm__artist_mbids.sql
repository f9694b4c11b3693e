-- The MusicBrainz id Last.fm gives each normalised artist (the most frequent one when spellings
-- disagree). Two artist keys with the same MBID are spellings of one artist (an alias, a
-- transliteration), which track resolution uses when names alone do not match.
with named_mbids as (
    select distinct artist_name, artist_mbid
    from {{ ref('stg_lastfm__scrobbles') }}
    where artist_mbid is not null and set_aside_reason is null
    union all
    select artist_name, artist_mbid from {{ ref('stg_lastfm__tag_top_tracks') }} where artist_mbid is not null
    union all
    select artist_name, artist_mbid from {{ ref('stg_lastfm__chart_top_tracks') }} where artist_mbid is not null
    union all
    select artist_name, artist_mbid from {{ ref('stg_lastfm__artist_tags') }} where artist_mbid is not null
),

mentions as (
    select k.name_key as artist_key, m.artist_mbid
    from named_mbids as m
    inner join {{ ref('int_name_keys') }} as k on m.artist_name = k.name
),

ranked as (
    select
        artist_key,
        artist_mbid,
        row_number() over (partition by artist_key order by count(*) desc, artist_mbid) as mbid_rank
    from mentions
    group by artist_key, artist_mbid
)

select artist_key, artist_mbid
from ranked
where mbid_rank = 1
