-- Match keys of every distinct (artist, track) spelling Last.fm gave us. Normalising each
-- distinct name once (not once per listen) keeps the cost proportional to the catalogue.
with names as (
    select distinct artist_name, track_name from {{ ref('stg_lastfm__scrobbles') }}
    union
    select distinct artist_name, track_name from {{ ref('stg_lastfm__tag_top_tracks') }}
    union
    select distinct artist_name, track_name from {{ ref('stg_lastfm__chart_top_tracks') }}
)

select
    artist_name,
    track_name,
    {{ normalize_name('artist_name') }} as artist_key,
    {{ normalize_name('track_name') }} as track_key
from names
