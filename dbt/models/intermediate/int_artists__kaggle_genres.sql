-- Step 4 of the artist resolution: each artist's most common genre among its Kaggle tracks as
-- primary artist (ties to the first genre name), the last genre fallback.
with kaggle_tracks as (
    {{ with_name_keys(ref('stg_kaggle__tracks'), {'artist_key': 'primary_artist'}) }}
),

ranked as (
    select
        artist_key,
        genre,
        row_number() over (partition by artist_key order by count(*) desc, genre) as genre_rank
    from kaggle_tracks
    where genre is not null and artist_key is not null
    group by artist_key, genre
)

select
    artist_key,
    genre
from ranked
where genre_rank = 1
