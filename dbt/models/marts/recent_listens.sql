-- What each listener played lately, for the recommendation service (issue 19: real time).
--
-- The service refreshes its copy of this relation every few seconds in the background, so a
-- track played since the published recommendations were generated is never recommended back, and
-- "because you just played ..." can lean on the newest listens. It is a view over fct_listens:
-- always what the last daily build committed, with no second write into the warehouse (DuckDB has
-- one writer), and bounded for the service: the last var recent_listens_days (default 2) days
-- before the newest listening day plus that day, and each listener's var recent_listens_per_user
-- (default 500) most recent tracks. The window is relative to the newest listen, not the clock,
-- so a stalled feed keeps the last known listens instead of an empty list. It is tagged daily:
-- the day-partitioned build that restates fct_listens also reports it.
{{ config(materialized='view', tags=['daily']) }}

with newest as (
    select max(listen_date) as newest_date
    from {{ ref('fct_listens') }}
),

window_listens as (
    select
        f.user_id,
        f.track_id,
        f.played_at
    from {{ ref('fct_listens') }} as f
    cross join newest as n
    where f.listen_date >= n.newest_date - {{ var('recent_listens_days', 2) | int }}
),

per_track as (
    select
        user_id,
        track_id,
        count(*) as play_count,
        max(played_at) as last_played_at
    from window_listens
    group by user_id, track_id
),

ranked as (
    select
        user_id,
        track_id,
        play_count,
        last_played_at,
        row_number() over (partition by user_id order by last_played_at desc, track_id asc) as recency_rank
    from per_track
)

select
    user_id,
    track_id,
    play_count,
    last_played_at,
    recency_rank
from ranked
where recency_rank <= {{ var('recent_listens_per_user', 500) | int }}
