-- One row per listen, keyed to the user, track and artist dimensions.
select
    s.listen_id,
    s.user_id,
    {{ hash_key("s.artist_key || '|' || s.track_key") }} as track_id,
    {{ hash_key("s.artist_key") }} as artist_id,
    s.played_at,
    s.listen_date,
    s.source
from {{ ref('stg_lastfm__scrobbles') }} as s
where s.artist_key <> '' and s.track_key <> ''
