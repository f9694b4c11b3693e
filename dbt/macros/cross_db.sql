{#- Dialect differences live here (adapter dispatch), never in the models. -#}

{% macro regexp_replace_all(expr, pattern, replacement) -%}
    {{ return(adapter.dispatch('regexp_replace_all', 'music_platform')(expr, pattern, replacement)) }}
{%- endmacro %}
{% macro default__regexp_replace_all(expr, pattern, replacement) -%}
    regexp_replace({{ expr }}, '{{ pattern }}', '{{ replacement }}', 'g')
{%- endmacro %}
{% macro snowflake__regexp_replace_all(expr, pattern, replacement) -%}
    regexp_replace({{ expr }}, '{{ pattern }}', '{{ replacement }}')
{%- endmacro %}

{#- md5 hex digest of a string: the surrogate keys of artists, tracks and listens. -#}
{% macro hash_key(expr) -%}
    md5(cast({{ expr }} as {{ dbt.type_string() }}))
{%- endmacro %}

{% macro epoch_to_timestamp(expr) -%}
    {{ return(adapter.dispatch('epoch_to_timestamp', 'music_platform')(expr)) }}
{%- endmacro %}
{% macro default__epoch_to_timestamp(expr) -%}
    cast(to_timestamp({{ expr }}) as timestamp)
{%- endmacro %}
{% macro postgres__epoch_to_timestamp(expr) -%}
    (to_timestamp({{ expr }}) at time zone 'UTC')
{%- endmacro %}
{% macro snowflake__epoch_to_timestamp(expr) -%}
    to_timestamp_ntz({{ expr }})
{%- endmacro %}

{#- Split a ';'-joined list into its first element. -#}
{% macro first_of_list(expr) -%}
    trim({{ dbt.split_part(expr, "';'", 1) }})
{%- endmacro %}

{#- Now as a UTC timestamp without time zone, the type every stored timestamp has. Comparing
    those with current_timestamp would read them in the session's time zone (Snowflake's
    default is America/Los_Angeles), so recent rows would look hours off. -#}
{% macro utc_now() -%}
    {{ return(adapter.dispatch('utc_now', 'music_platform')()) }}
{%- endmacro %}
{% macro default__utc_now() -%}
    (current_timestamp at time zone 'UTC')
{%- endmacro %}
{% macro snowflake__utc_now() -%}
    sysdate()
{%- endmacro %}

{#- The ids of artists and tracks: md5 of their name keys. The track's two keys are joined by
    U+001F (unit separator), which no key contains, so no two (artist, track) pairs share an id. -#}
{% macro artist_id_of(artist_key) -%}
    {{ hash_key(artist_key) }}
{%- endmacro %}
{% macro track_id_of(artist_key, track_key) -%}
    {{ hash_key(artist_key ~ " || chr(31) || " ~ track_key) }}
{%- endmacro %}
