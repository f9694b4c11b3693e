{#- One row of audit.source_ledger: how a staging model accounts for the rows of its source.
    `required` is the staging model's filter (rows failing it are set aside as missing a
    required field) and `dedup_key` its deduplication key; both are restated here, next to each
    other for every source, and a staging model that drops rows any other way leaves them
    unaccounted, which the ledger's test reports. With `latest_fetch_only` the staging model
    keeps only the newest fetch (ingested_at) of its valid rows, as a whole (the chart): valid
    rows of older fetches are superseded, and duplicates are counted within the newest fetch. -#}
{% macro source_ledger_row(source_name, table_name, staging_model, required, dedup_key=none, latest_fetch_only=false) -%}
{%- set source_relation = source(source_name, table_name) -%}
{%- set is_valid = required | join(' and ') -%}
select
    '{{ source_name }}.{{ table_name }}' as source_table,
    '{{ staging_model }}' as staging_model,
    received.received_rows,
    received.missing_required_rows,
    received.superseded_rows,
    received.received_rows - received.missing_required_rows - received.superseded_rows
        - distinct_rows.distinct_rows as duplicate_rows,
    staged.staged_rows
from (
    select
        count(*) as received_rows,
        coalesce(sum(case when {{ is_valid }} then 0 else 1 end), 0) as missing_required_rows,
        {%- if latest_fetch_only %}
        coalesce(sum(case when {{ is_valid }} and ingested_at < latest.latest_ingested_at then 1 else 0 end), 0)
        {%- else %}
        0
        {%- endif %} as superseded_rows
    from {{ source_relation }}
    {%- if latest_fetch_only %}
    cross join (
        select max(ingested_at) as latest_ingested_at from {{ source_relation }} where {{ is_valid }}
    ) as latest
    {%- endif %}
) as received
cross join (
    select count(*) as distinct_rows
    from (
        select {% if dedup_key %}distinct {{ dedup_key | join(', ') }}{% else %}1 as one_row{% endif %}
        from {{ source_relation }}
        where {{ is_valid }}
        {%- if latest_fetch_only %}
            and ingested_at = (select max(ingested_at) from {{ source_relation }} where {{ is_valid }})
        {%- endif %}
    ) as valid_rows
) as distinct_rows
cross join (select count(*) as staged_rows from {{ ref(staging_model) }}) as staged
{%- endmacro %}
