-- Step 3 of the artist resolution: each artist's best-ranked Last.fm tag that is a known genre
-- (int_genre_vocabulary), the fallback when Spotify gives no genre. Ties on rank and count go to
-- the first tag name, so a rebuild picks the same genre.
with artist_tags as (
    {{ with_name_keys(ref('stg_lastfm__artist_tags'), {'artist_key': 'artist_name'}) }}
),

ranked as (
    select
        tags.artist_key,
        tags.tag_name as genre,
        row_number() over (
            partition by tags.artist_key order by tags.tag_rank asc, tags.tag_count desc, tags.tag_name asc
        ) as genre_rank
    from artist_tags as tags
    inner join {{ ref('int_genre_vocabulary') }} as vocabulary on tags.tag_name = vocabulary.genre
    -- a tag of a spelling without a name key could name no artist
    where tags.artist_key is not null
)

select
    artist_key,
    genre
from ranked
where genre_rank = 1
