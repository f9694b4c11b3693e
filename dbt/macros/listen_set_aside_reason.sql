{#- Why a staged scrobble cannot become a listen (null when it can): the first rule it breaks.
    Read in stg_lastfm__scrobbles, where the columns are typed and trimmed. A name written in any
    script, or in symbols only, is a valid name; only a missing one is not. -#}
{% macro listen_set_aside_reason() -%}
    case
        when user_id is null then 'missing_user'
        when artist_name is null then 'missing_artist_name'
        when track_name is null then 'missing_track_name'
        when played_at is null or played_at_uts is null then 'missing_played_at'
        when listen_date is null then 'missing_listen_date'
        when cast(played_at as date) <> listen_date then 'listen_date_mismatch'
        when played_at > {{ dbt.dateadd('hour', 1, utc_now()) }} then 'played_at_in_future'
    end
{%- endmacro %}
