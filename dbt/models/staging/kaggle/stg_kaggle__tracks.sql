-- Kaggle Spotify tracks: one row per Spotify track id, typed.
select
    track_id as spotify_track_id,
    artists,
    primary_artist,
    nullif(trim(album_name), '') as album_name,
    trim(track_name) as track_name,
    cast(popularity as integer) as popularity,
    cast(duration_ms as {{ dbt.type_bigint() }}) as duration_ms,
    explicit,
    cast(danceability as {{ dbt.type_float() }}) as danceability,
    cast(energy as {{ dbt.type_float() }}) as energy,
    cast(key as integer) as musical_key,
    cast(loudness as {{ dbt.type_float() }}) as loudness,
    cast(mode as integer) as musical_mode,
    cast(speechiness as {{ dbt.type_float() }}) as speechiness,
    cast(acousticness as {{ dbt.type_float() }}) as acousticness,
    cast(instrumentalness as {{ dbt.type_float() }}) as instrumentalness,
    cast(liveness as {{ dbt.type_float() }}) as liveness,
    cast(valence as {{ dbt.type_float() }}) as valence,
    case when tempo > 0 then cast(tempo as {{ dbt.type_float() }}) end as tempo,
    cast(time_signature as integer) as time_signature,
    lower(trim(track_genre)) as genre,
    lower(genres) as genres,
    source,
    ingested_at
from {{ source('kaggle', 'kaggle_tracks') }}
where track_id is not null
