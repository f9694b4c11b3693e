{#- One row of audit.source_ledger: how a staging model accounts for the rows of its source.
    `required` is the staging model's filter (rows failing it are set aside as missing a
    required field) and `dedup_key` its deduplication key; both are restated here, next to each
    other for every source, and a staging model that drops rows any other way leaves them
    unaccounted, which the ledger's test reports. -#}
{% macro source_ledger_row(source_name, table_name, staging_model, required, dedup_key=none) -%}
select
    '{{ source_name }}.{{ table_name }}' as source_table,
    '{{ staging_model }}' as staging_model,
    received.received_rows,
    received.missing_required_rows,
    received.received_rows - received.missing_required_rows - distinct_rows.distinct_rows as duplicate_rows,
    staged.staged_rows
from (
    select
        count(*) as received_rows,
        coalesce(sum(case when {{ required | join(' and ') }} then 0 else 1 end), 0) as missing_required_rows
    from {{ source(source_name, table_name) }}
) as received
cross join (
    select count(*) as distinct_rows
    from (
        select {% if dedup_key %}distinct {{ dedup_key | join(', ') }}{% else %}1 as one_row{% endif %}
        from {{ source(source_name, table_name) }}
        where {{ required | join(' and ') }}
    ) as valid_rows
) as distinct_rows
cross join (select count(*) as staged_rows from {{ ref(staging_model) }}) as staged
{%- endmacro %}
