-- Every tracked user: profile (when Last.fm gave one) and listening summary.
with listening as (
    select
        user_id,
        count(*) as listen_count,
        count(distinct track_id) as distinct_tracks,
        min(played_at) as first_listen_at,
        max(played_at) as last_listen_at
    from {{ ref('fct_listens') }}
    group by user_id
),

all_users as (
    select user_id from {{ ref('stg_lastfm__users') }}
    union
    select user_id from listening
)

select
    u.user_id,
    p.country,
    p.age,
    p.gender,
    p.registered_at,
    coalesce(l.listen_count, 0) as listen_count,
    coalesce(l.distinct_tracks, 0) as distinct_tracks,
    l.first_listen_at,
    l.last_listen_at,
    coalesce(p.source, 'scrobbles') as source
from all_users as u
left join {{ ref('stg_lastfm__users') }} as p on u.user_id = p.user_id
left join listening as l on u.user_id = l.user_id
