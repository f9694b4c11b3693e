-- The name key of every artist and track name Spotify gave us (grain: name), by the same rule
-- as int_name_keys. Separate because the Spotify tracks fetched depend on int_name_keys.
with names as (
    select artist_name as name from {{ ref('stg_spotify__tracks') }}
    union
    select track_name from {{ ref('stg_spotify__tracks') }}
),

named as (
    select name from names where name is not null and name <> ''
),

{{ name_key_ctes('name', 'named') }}

select name, name_key
from name_keys
