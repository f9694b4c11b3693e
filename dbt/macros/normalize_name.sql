{#-
  Normalise an artist or track name so Last.fm and Spotify/Kaggle spellings meet:
  case, accents, "feat."/"ft." credits, "- Remastered 2011"-style suffixes, bracketed
  version notes, a leading "The", and punctuation. Patterns avoid backslashes so the
  same text works on DuckDB, PostgreSQL and Snowflake.
-#}
{% macro normalize_name(expr) -%}
    trim({{ regexp_replace_all(
        regexp_replace_all(
            regexp_replace_all(
                regexp_replace_all(
                    regexp_replace_all(
                        "translate(lower(" ~ expr ~ "), 'áàâäãåāąéèêëēęíìîïīóòôöõøōúùûüūñńçćýÿšśžźżłß', 'aaaaaaaaeeeeeeiiiiioooooooouuuuunnccyysszzzls')",
                        ' *[([]? *(feat|ft|featuring)[.]? .*$', ''),
                    ' +- +[^-]*(remaster|remix|live|version|edit|mono|stereo|mix|demo).*$', ''),
                ' *[([][^])]*(remaster|version|edit|mono|stereo|live|demo)[^])]*[])]', ''),
            '^the +', ''),
        '[^a-z0-9]+', ' ') }})
{%- endmacro %}
