-- Weighted tags per artist (item features of the recommender).
select
    a.artist_id,
    t.tag_name,
    max(t.tag_weight) as tag_weight,
    min(t.tag_rank) as tag_rank
from ({{ with_name_keys(ref('stg_lastfm__artist_tags'), {'artist_key': 'artist_name'}) }}) as t
inner join {{ ref('int_artists_resolved') }} as a on t.artist_key = a.artist_key
group by a.artist_id, t.tag_name
