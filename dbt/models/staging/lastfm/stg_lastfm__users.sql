-- Latest profile per user (grain: user_id, the trimmed user name).
with ranked as (
    select
        trim(user_name) as user_id,
        nullif(trim(real_name), '') as real_name,
        nullif(trim(country), '') as country,
        case when age > 0 and age < 120 then cast(age as integer) end as age,
        nullif(lower(trim(gender)), '') as gender,
        subscriber,
        cast(playcount as {{ dbt.type_bigint() }}) as lastfm_playcount,
        cast(registered_at as {{ dbt.type_timestamp() }}) as registered_at,
        source,
        ingested_at,
        row_number() over (partition by trim(user_name) order by ingested_at desc) as recency_rank
    from {{ source('lastfm', 'lastfm_users') }}
    where user_name is not null
)

select user_id, real_name, country, age, gender, subscriber, lastfm_playcount, registered_at, source, ingested_at
from ranked
where recency_rank = 1
