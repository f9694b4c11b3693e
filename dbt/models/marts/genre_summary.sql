-- Catalogue and listening per genre (grain: genre). The averages are cast to the float type of
-- the audio features, so the contract's column types are the same on every warehouse.
with listens as (
    select t.genre, count(*) as listen_count, count(distinct l.user_id) as listener_count
    from {{ ref('fct_listens') }} as l
    inner join {{ ref('dim_tracks') }} as t on l.track_id = t.track_id
    where t.genre is not null
    group by t.genre
)

select
    t.genre,
    count(distinct t.artist_id) as artist_count,
    count(*) as track_count,
    coalesce(max(l.listen_count), 0) as listen_count,
    coalesce(max(l.listener_count), 0) as listener_count,
    cast(avg(t.danceability) as {{ dbt.type_float() }}) as avg_danceability,
    cast(avg(t.energy) as {{ dbt.type_float() }}) as avg_energy,
    cast(avg(t.valence) as {{ dbt.type_float() }}) as avg_valence,
    cast(avg(t.tempo) as {{ dbt.type_float() }}) as avg_tempo
from {{ ref('dim_tracks') }} as t
left join listens as l on t.genre = l.genre
where t.genre is not null
group by t.genre
