-- Every Last.fm track with the Spotify track id the Kaggle file gives it, and how it was found:
--   name        : same normalised (artist, track) as a Kaggle row;
--   track_mbid  : another Last.fm spelling of the same recording (same track MBID) matched by name;
--   artist_mbid : the same title under another spelling of the artist (same artist MBID).
-- Among several Kaggle versions of a song (reissues) the most popular wins. The Spotify raw
-- assets read this model to know which ids to fetch (and which tracks to search for).
with lastfm_tracks as (
    select * from {{ ref('int_lastfm__tracks') }}
),

kaggle_versions as (
    select
        spotify_track_id,
        artist_key,
        track_key,
        row_number() over (
            partition by artist_key, track_key order by popularity desc, spotify_track_id asc
        ) as version_rank
    from (
        {{ with_name_keys(ref('stg_kaggle__tracks'), {'artist_key': 'primary_artist', 'track_key': 'track_name'}) }}
    ) as kaggle
    where artist_key is not null and track_key is not null
),

kaggle_best as (
    select spotify_track_id, artist_key, track_key from kaggle_versions where version_rank = 1
),

by_name as (
    select t.track_id, k.spotify_track_id
    from lastfm_tracks as t
    inner join kaggle_best as k on t.artist_key = k.artist_key and t.track_key = k.track_key
),

by_track_mbid as (
    select t.track_id, min(n.spotify_track_id) as spotify_track_id
    from lastfm_tracks as t
    inner join lastfm_tracks as sibling
        on t.track_mbid = sibling.track_mbid and t.track_id <> sibling.track_id
    inner join by_name as n on sibling.track_id = n.track_id
    where t.track_mbid is not null
    group by t.track_id
),

artist_mbids as (
    select artist_key, artist_mbid from {{ ref('int_lastfm__artist_mbids') }}
),

artist_aliases as (
    select a.artist_key, b.artist_key as alias_key
    from artist_mbids as a
    inner join artist_mbids as b on a.artist_mbid = b.artist_mbid and a.artist_key <> b.artist_key
),

by_artist_mbid as (
    select t.track_id, min(k.spotify_track_id) as spotify_track_id
    from lastfm_tracks as t
    inner join artist_aliases as al on t.artist_key = al.artist_key
    inner join kaggle_best as k on al.alias_key = k.artist_key and t.track_key = k.track_key
    group by t.track_id
)

select
    t.track_id,
    t.artist_id,
    t.artist_key,
    t.track_key,
    t.artist_name,
    t.track_name,
    t.track_mbid,
    t.duration_s,
    coalesce(n.spotify_track_id, tm.spotify_track_id, am.spotify_track_id) as spotify_track_id,
    case
        when n.spotify_track_id is not null then 'name'
        when tm.spotify_track_id is not null then 'track_mbid'
        when am.spotify_track_id is not null then 'artist_mbid'
    end as match_method
from lastfm_tracks as t
left join by_name as n on t.track_id = n.track_id
left join by_track_mbid as tm on t.track_id = tm.track_id
left join by_artist_mbid as am on t.track_id = am.track_id
