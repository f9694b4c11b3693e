-- Tags per artist (grain: artist_name, tag_name), latest fetch wins; weight is Last.fm's 0-100
-- count scaled to 0..1. Deduplicated on the names as output (trimmed; tags also lower case), so
-- spellings that differ only in padding are one row.
with ranked as (
    select
        trim(artist_name) as artist_name,
        nullif(trim(artist_mbid), '') as artist_mbid,
        lower(trim(tag_name)) as tag_name,
        cast(tag_count as integer) as tag_count,
        cast(tag_rank as integer) as tag_rank,
        source,
        ingested_at,
        row_number() over (
            partition by trim(artist_name), lower(trim(tag_name)) order by ingested_at desc, tag_rank asc
        ) as duplicate_rank
    from {{ source('lastfm', 'lastfm_artist_tags') }}
    where artist_name is not null and tag_name is not null
)

select
    artist_name,
    artist_mbid,
    tag_name,
    tag_count,
    cast(tag_count as {{ dbt.type_float() }}) / 100.0 as tag_weight,
    tag_rank,
    source,
    ingested_at
from ranked
where duplicate_rank = 1
