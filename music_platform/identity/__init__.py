"""Identity of names: the one rule that says when two artist or track spellings are the same."""

from music_platform.identity.name_key import (
    artist_id,
    name_key,
    name_key_or_blank,
    track_id,
    track_lookup_keys,
    track_pair_key,
    track_query_keys,
)

__all__ = [
    "artist_id",
    "name_key",
    "name_key_or_blank",
    "track_id",
    "track_lookup_keys",
    "track_pair_key",
    "track_query_keys",
]
