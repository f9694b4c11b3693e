"""The contract between publishing (``music_platform.recommender.publication``) and the service.

A publication is one immutable snapshot of what the service shows: ``ml.user_recommendations``
rows with its ``publication_id``, ``ml.similar_tracks`` rows of its ``model_version`` and the
display fields in ``ml.published_tracks`` / ``ml.published_artists`` with its
``publication_id``. The pointer to the live one is ``ml.model_registry``
(:data:`LIVE_PUBLICATION_SQL`). Kept free of the recommender so that the service starts fast.
"""

from __future__ import annotations

from dataclasses import dataclass

PUBLICATION_COLUMN = "publication_id"
REGISTRY_TABLE = "model_registry"
RECOMMENDATIONS_TABLE = "user_recommendations"
SIMILAR_TABLE = "similar_tracks"
TRACKS_TABLE = "published_tracks"
ARTISTS_TABLE = "published_artists"
TRACK_DISPLAY_COLUMNS = ("track_id", "track_name", "artist_id", "artist_name", "genre", "genres", "listen_count")
ARTIST_DISPLAY_COLUMNS = ("artist_id", "artist_name", "genre", "top_tags")

# The live publication: that of the latest published version (several versions may be
# published; rolling back retires the live one). Versions without a publication are skipped.
LIVE_PUBLICATION_SQL = (
    "select cast(model_version as varchar) as model_version, cast(publication_id as varchar) as publication_id "
    "from ml.model_registry where lower(status) = 'published' and publication_id is not null "
    "order by published_at desc nulls last, model_version desc limit 1"
)


@dataclass(frozen=True)
class Publication:
    model_version: str
    publication_id: str
