-- Spotify audio features: one row per Spotify track id (the latest answer), typed.
with ranked as (
    select
        *,
        row_number() over (partition by track_id order by ingested_at desc) as duplicate_rank
    from {{ source('spotify', 'spotify_audio_features') }}
    where track_id is not null
)

select
    track_id as spotify_track_id,
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
    -- tempo 0 is silence, not a tempo (the marts require tempo > 0)
    case when tempo > 0 then cast(tempo as {{ dbt.type_float() }}) end as tempo,
    cast(duration_ms as {{ dbt.type_bigint() }}) as duration_ms,
    cast(time_signature as integer) as time_signature,
    source,
    ingested_at
from ranked
where duplicate_rank = 1
