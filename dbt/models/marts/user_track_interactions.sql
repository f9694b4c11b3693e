-- The recommender's input: how often each user played each track, and when.
select
    user_id,
    track_id,
    count(*) as play_count,
    min(played_at) as first_played_at,
    max(played_at) as last_played_at
from {{ ref('fct_listens') }}
group by user_id, track_id
