-- Step 1 of the artist resolution: who the artists are and how they are spelled. Every artist
-- Last.fm told us about (heard, charted, tag-top) with its most frequent Last.fm spelling, and
-- every primary artist of the Kaggle catalogue that Last.fm never named, with its most frequent
-- Kaggle spelling, so the marts cover the catalogue (name_source 'lastfm' | 'kaggle').
with lastfm_spellings as (
    select
        artist_id,
        artist_key,
        artist_name,
        row_number() over (partition by artist_id order by count(*) desc, artist_name) as spelling_rank
    from {{ ref('int_lastfm__tracks') }}
    group by artist_id, artist_key, artist_name
),

kaggle_tracks as (
    {{ with_name_keys(ref('stg_kaggle__tracks'), {'artist_key': 'primary_artist'}) }}
),

kaggle_spellings as (
    select
        artist_key,
        primary_artist as artist_name,
        row_number() over (partition by artist_key order by count(*) desc, primary_artist) as spelling_rank
    from kaggle_tracks
    where artist_key is not null
    group by artist_key, primary_artist
)

select
    artist_id,
    artist_key,
    artist_name,
    'lastfm' as name_source
from lastfm_spellings
where spelling_rank = 1
union all
select
    {{ artist_id_of('kaggle_spellings.artist_key') }} as artist_id,
    kaggle_spellings.artist_key,
    kaggle_spellings.artist_name,
    'kaggle' as name_source
from kaggle_spellings
where
    kaggle_spellings.spelling_rank = 1
    and not exists (
        select 1 from lastfm_spellings
        where lastfm_spellings.artist_key = kaggle_spellings.artist_key
    )
