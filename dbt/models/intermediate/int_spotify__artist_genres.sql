-- The genres of each Spotify artist that are in our genre vocabulary, best first (Spotify lists
-- an artist's genres most relevant first). Spotify's genres are finer than ours ("modern rock",
-- "dance pop"); only whole entries equal to a known genre count, compared without case and
-- punctuation ("hip hop" = "hip-hop"). Empty when Spotify did not send genres (withdrawn for
-- development-mode apps since 2026) or none is in the vocabulary.
with artists as (
    select
        spotify_artist_id,
        ';'
        || trim({{ regexp_replace_all(regexp_replace_all('genres', '[^a-z0-9;]+', ' '), ' *; *', ';') }})
        || ';' as genre_list
    from {{ ref('stg_spotify__artists') }}
    where genres is not null
),

vocabulary as (
    select
        genre,
        trim({{ regexp_replace_all('lower(genre)', '[^a-z0-9]+', ' ') }}) as genre_key
    from {{ ref('int_genre_vocabulary') }}
),

matched as (
    select
        a.spotify_artist_id,
        v.genre,
        row_number() over (
            partition by a.spotify_artist_id
            order by {{ dbt.position("';' || v.genre_key || ';'", 'a.genre_list') }}, v.genre
        ) as genre_rank
    from artists as a
    inner join vocabulary as v on a.genre_list like '%;' || v.genre_key || ';%'
    where v.genre_key <> ''
)

select
    spotify_artist_id,
    max(case when genre_rank = 1 then genre end) as genre,
    {{ dbt.listagg('genre', "';'", "order by genre_rank") }} as genres
from matched
group by spotify_artist_id
