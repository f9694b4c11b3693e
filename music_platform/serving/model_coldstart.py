"""Cold start through the trained model, preferred when the served version's artifact exists.

``ModelRegistry(models_dir).load(version)`` gives the published ``TrainedModel`` of
``<data_dir>/models/<version>/``; ``recommend_cold_start(model, artists, tracks, k)`` folds the
named items into a one-row history and scores every track with the model (LightFM builds the
history from item features, so tracks nobody has played yet still count).

The service has already matched the names against its catalogue (case- and
accent-insensitively), so the model is asked with artist and track ids.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from music_platform.config import Settings
from music_platform.serving.coldstart import Suggestion
from music_platform.serving.snapshot import Snapshot

log = logging.getLogger(__name__)


class ModelColdStartRecommender:
    strategy = "model"

    def __init__(self, model, model_version: str) -> None:
        self.model = model
        self.model_version = model_version

    def recommend(self, snapshot: Snapshot, artists: Sequence[int], tracks: Sequence[int], k: int) -> list[Suggestion]:
        """The model's top ``k``; empty when the model knows none of the named items (the
        service then asks the catalogue recommender)."""
        from music_platform.recommender.cold_start import recommend_cold_start

        cat = snapshot.catalogue
        result = recommend_cold_start(
            self.model,
            artists=[cat.artist_ids[a] for a in artists],
            tracks=[cat.track_ids[t] for t in tracks],
            k=k,
        )
        if result.fallback:
            return []
        named = set(tracks)
        suggestions = []
        for track_id, score, reason in zip(
            result.recommendations["track_id"],
            result.recommendations["score"],
            result.recommendations["reason"],
            strict=True,
        ):
            track = cat.track_index.get(str(track_id))
            if track is None or track in named:
                continue  # not in the served catalogue: nothing to name it with
            suggestions.append(Suggestion(track=track, score=float(score), reason=str(reason)))
        return suggestions[:k]


def load_model_cold_start(settings: Settings, model_version: str | None) -> ModelColdStartRecommender | None:
    """The model-backed recommender for ``model_version``, or None when it has no artifact."""
    if model_version is None or not (settings.models_dir / model_version / "model.pkl").is_file():
        return None
    from music_platform.recommender.registry import ModelRegistry

    model = ModelRegistry(settings.models_dir).load(model_version)
    log.info("cold start uses the %s model of version %s", model.kind, model_version)
    return ModelColdStartRecommender(model, model_version)
