-- The genres we know: the genre tags we asked Last.fm for, and the Kaggle genres.
select distinct tag_name as genre from {{ ref('stg_lastfm__tag_top_tracks') }}
union
select distinct genre from {{ ref('stg_kaggle__tracks') }} where genre is not null
