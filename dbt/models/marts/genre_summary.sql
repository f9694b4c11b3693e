-- Catalogue and listening per genre.
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
    avg(t.danceability) as avg_danceability,
    avg(t.energy) as avg_energy,
    avg(t.valence) as avg_valence,
    avg(t.tempo) as avg_tempo
from {{ ref('dim_tracks') }} as t
left join listens as l on t.genre = l.genre
where t.genre is not null
group by t.genre
