-- How each staging model accounts for its reference source (grain: source_table): the raw rows
-- are the staged rows, plus the duplicates staging removed (an older fetch of the same entity),
-- plus the rows of an older fetch superseded as a whole (the chart: only the latest chart is
-- kept), plus the rows set aside for a missing required field. Scrobbles have their own, per-day
-- ledger (audit.listen_ledger). The required fields and deduplication keys below restate each
-- staging model's; a staging model that drops rows any other way leaves them unaccounted.
{%- set sources = [
    ('lastfm', 'lastfm_users', 'stg_lastfm__users', ['user_name is not null'], ['trim(user_name)']),
    ('lastfm', 'lastfm_artist_tags', 'stg_lastfm__artist_tags',
        ['artist_name is not null', 'tag_name is not null'], ['trim(artist_name)', 'lower(trim(tag_name))']),
    ('lastfm', 'lastfm_tag_top_tracks', 'stg_lastfm__tag_top_tracks',
        ['track_name is not null', 'artist_name is not null'], ['lower(trim(tag_name))', 'track_rank']),
    ('lastfm', 'lastfm_chart_top_tracks', 'stg_lastfm__chart_top_tracks',
        ['track_name is not null', 'artist_name is not null'], ['chart_rank']),
    ('kaggle', 'kaggle_tracks', 'stg_kaggle__tracks', ['track_id is not null'], none),
    ('spotify', 'spotify_tracks', 'stg_spotify__tracks',
        ['track_id is not null', 'track_name is not null', 'primary_artist_name is not null'], ['track_id']),
    ('spotify', 'spotify_artists', 'stg_spotify__artists', ['artist_id is not null', 'artist_name is not null'],
        ['artist_id']),
    ('spotify', 'spotify_audio_features', 'stg_spotify__audio_features', ['track_id is not null'], ['track_id']),
] %}
{#- Staged as the newest fetch only, as a whole (see macros/source_ledger.sql). -#}
{%- set latest_fetch_only = ['lastfm_chart_top_tracks'] %}

with ledger as (
    {%- for source_name, table_name, staging_model, required, dedup_key in sources %}
    {{ source_ledger_row(
        source_name, table_name, staging_model, required, dedup_key, table_name in latest_fetch_only
    ) }}
    {%- if not loop.last %}
    union all
    {%- endif %}
    {%- endfor %}
)

select
    source_table,
    staging_model,
    received_rows,
    missing_required_rows,
    superseded_rows,
    duplicate_rows,
    staged_rows,
    received_rows - missing_required_rows - superseded_rows - duplicate_rows - staged_rows as unaccounted_rows,
    {{ utc_now() }} as measured_at
from ledger
