-- The name key of every artist and track name Last.fm and the Kaggle file gave us: one row per
-- distinct spelling (grain: name). Intermediate models join it instead of computing keys per
-- row; the rule is the name_key macro (macros/name_key.sql), the same as music_platform.identity.
-- Spotify's names have their own dictionary (int_spotify__name_keys): which Spotify tracks are
-- fetched depends on this one.
with names as (
    select artist_name as name from {{ ref('stg_lastfm__scrobbles') }}
    union
    select track_name from {{ ref('stg_lastfm__scrobbles') }}
    union
    select artist_name from {{ ref('stg_lastfm__tag_top_tracks') }}
    union
    select track_name from {{ ref('stg_lastfm__tag_top_tracks') }}
    union
    select artist_name from {{ ref('stg_lastfm__chart_top_tracks') }}
    union
    select track_name from {{ ref('stg_lastfm__chart_top_tracks') }}
    union
    select artist_name from {{ ref('stg_lastfm__artist_tags') }}
    union
    select primary_artist from {{ ref('stg_kaggle__tracks') }}
    union
    select track_name from {{ ref('stg_kaggle__tracks') }}

),

named as (
    select name from names where name is not null and name <> ''
),

{{ name_key_ctes('name', 'named') }}

select name, name_key
from name_keys
