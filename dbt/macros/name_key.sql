{#-
  The name key: the identity of an artist or track name, the same on DuckDB, PostgreSQL and
  Snowflake as in Python (music_platform/identity/name_key.py has the rule in prose and the
  reference implementation; docs/DATA_FLOW.md explains it). Names are folded one character at a
  time through the seed name_key_characters, so no warehouse's own Unicode functions (which
  differ) take part.

  name_key_ctes(prefix, names_relation, name_column) emits common table expressions, to be
  placed inside a model's WITH list, that end in "<prefix>_keys (name, name_key)" for every
  distinct non-empty name of names_relation.name_column. Keys are computed once per distinct
  name, never per row.
-#}

{% macro name_key_ctes(prefix, names_relation, name_column='name') -%}
{{ prefix }}_characters as (
    {{ name_key_characters_of(names_relation, name_column, name_column) }}
),

{{ prefix }}_symbols as (
    select
        c.name,
        trim({{ regexp_replace_all(dbt.listagg(name_key_fold('c.character', 'f.code_point', 'f.symbol_fold'), "''", 'order by c.position'), ' +', ' ') }}) as symbols
    from {{ prefix }}_characters as c
    left join {{ ref('name_key_characters') }} as f on f.code_point = {{ code_point('c.character') }}
    group by c.name
),

{{ prefix }}_without_notes as (
    select
        name,
        {{ regexp_replace_all(regexp_replace_all('symbols', ' +- +[^-]*(remaster|remix|live|version|edit|mono|stereo|mix|demo).*$', ''), ' *[([][^])]*(remaster|version|edit|mono|stereo|live|demo)[^])]*[])]', '') }} as without_notes
    from {{ prefix }}_symbols
),

{{ prefix }}_letter_characters as (
    {{ name_key_characters_of(prefix ~ '_without_notes', 'name', 'without_notes') }}
),

{{ prefix }}_letters as (
    select
        c.name,
        trim({{ regexp_replace_all(dbt.listagg(name_key_fold('c.character', 'f.code_point', 'f.letter_fold'), "''", 'order by c.position'), ' +', ' ') }}) as letters
    from {{ prefix }}_letter_characters as c
    left join {{ ref('name_key_characters') }} as f on f.code_point = {{ code_point('c.character') }}
    group by c.name
),

{{ prefix }}_uncredited as (
    select
        name,
        trim({{ regexp_replace_all(regexp_replace_all('letters', '^(the )+', ''), '(^| )(feat|ft|featuring) .*$', '') }}) as letters
    from {{ prefix }}_letters
),

{{ prefix }}_keys as (
    select
        s.name,
        case
            when u.letters <> '' then u.letters
            when s.symbols <> '' then s.symbols
            else {{ name_key_invisible_placeholder('s.name') }}
        end as name_key
    from {{ prefix }}_symbols as s
    left join {{ prefix }}_uncredited as u on s.name = u.name
)
{%- endmacro %}

{#- What a character becomes: its fold from the seed (stored behind a "|"), else itself. -#}
{% macro name_key_fold(character, matched_code_point, fold) -%}
    case when {{ matched_code_point }} is null then {{ character }} else substr({{ fold }}, 2) end
{%- endmacro %}

{#- A name of invisible characters only: one U+2423 OPEN BOX per character. -#}
{% macro name_key_invisible_placeholder(name) -%}
    repeat('{{ "\u2423" }}', length({{ name }}))
{%- endmacro %}

{#- The Unicode code point of a one-character string. -#}
{% macro code_point(expr) -%}
    {{ return(adapter.dispatch('code_point', 'music_platform')(expr)) }}
{%- endmacro %}
{% macro default__code_point(expr) -%}
    unicode({{ expr }})
{%- endmacro %}
{% macro postgres__code_point(expr) -%}
    ascii({{ expr }})
{%- endmacro %}

{#- One row per character of relation.text_column: (name, position, character), where name is
    relation.key_column; positions count code points from 1. -#}
{% macro name_key_characters_of(relation, key_column, text_column) -%}
    {{ return(adapter.dispatch('name_key_characters_of', 'music_platform')(relation, key_column, text_column)) }}
{%- endmacro %}
{% macro default__name_key_characters_of(relation, key_column, text_column) -%}
    select r.{{ key_column }} as name, p.position, substr(r.{{ text_column }}, p.position, 1) as character
    from {{ relation }} as r
    cross join lateral generate_series(1, length(r.{{ text_column }})) as p (position)
{%- endmacro %}
{% macro duckdb__name_key_characters_of(relation, key_column, text_column) -%}
    select r.{{ key_column }} as name, p.position, substr(r.{{ text_column }}, p.position, 1) as character
    from {{ relation }} as r
    cross join range(1, length(r.{{ text_column }}) + 1) as p (position)
{%- endmacro %}
{% macro snowflake__name_key_characters_of(relation, key_column, text_column) -%}
    select
        r.{{ key_column }} as name,
        cast(p.value as integer) as position,
        substr(r.{{ text_column }}, cast(p.value as integer), 1) as character
    from {{ relation }} as r,
        lateral flatten(input => array_generate_range(1, length(r.{{ text_column }}) + 1)) as p
{%- endmacro %}

{#- Select `relation` with the name keys of some of its name columns added, e.g.
    with_name_keys(ref('stg_kaggle__tracks'), {'artist_key': 'primary_artist', 'track_key': 'track_name'}),
    looked up in the dictionary model `dictionary` (int_name_keys, or int_spotify__name_keys for
    Spotify's names). A null or empty name gets a null key. -#}
{% macro with_name_keys(relation, keys, dictionary='int_name_keys') -%}
    select
        r.*
        {%- for key_column, name_column in keys.items() %},
        {{ key_column }}_lookup.name_key as {{ key_column }}
        {%- endfor %}
    from {{ relation }} as r
    {%- for key_column, name_column in keys.items() %}
    left join {{ ref(dictionary) }} as {{ key_column }}_lookup on r.{{ name_column }} = {{ key_column }}_lookup.name
    {%- endfor %}
{%- endmacro %}
