{#- Custom schemas (staging, intermediate, marts, audit, reference) keep their plain names in
    production, which is what Dagster and the Python assets read. A development or CI run sets
    MUSIC_PLATFORM_SCHEMA_PREFIX (e.g. `dev_alice_`, `ci_1234_`): every schema dbt writes gets
    it, so runs sharing one PostgreSQL or Snowflake database never touch each other's tables.
    The sources stay in the shared `raw` schema they are read from. -#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- set prefix = env_var('MUSIC_PLATFORM_SCHEMA_PREFIX', '') | trim | lower -%}
    {%- if prefix and not modules.re.fullmatch('[a-z][a-z0-9_]*', prefix) -%}
        {{ exceptions.raise_compiler_error("MUSIC_PLATFORM_SCHEMA_PREFIX must be letters, digits and _ (starting with a letter), not " ~ prefix) }}
    {%- endif -%}
    {%- if custom_schema_name is none -%}{{ target.schema | trim }}{%- else -%}{{ prefix ~ (custom_schema_name | trim) }}{%- endif -%}
{%- endmacro %}
