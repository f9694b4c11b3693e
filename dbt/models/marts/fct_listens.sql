-- One row per listen, keyed to the user, track and artist dimensions.
select
    s.listen_id,
    s.user_id,
    {{ hash_key("k.artist_key || '|' || k.track_key") }} as track_id,
    {{ hash_key("k.artist_key") }} as artist_id,
    s.played_at,
    s.listen_date,
    s.source
from {{ ref('stg_lastfm__scrobbles') }} as s
inner join {{ ref('int_lastfm__name_keys') }} as k
    on s.artist_name = k.artist_name and s.track_name = k.track_name
where k.artist_key <> '' and k.track_key <> ''
