"""Wiring of cold start into the service; the rule itself is ``recommender.cold_start``.

The service resolves a new listener's names against the snapshot's catalogue (case- and
accent-insensitive) and asks ``ColdStart.recommend`` with catalogue positions. That applies
``recommender.cold_start.cold_start_answer`` (the served version's trained model, else the
catalogue's own signals, else popularity) to the snapshot. This module only decides which model
goes with which version: the published artifact of ``<data_dir>/models/<version>/`` when it
exists, none otherwise.

The recommender package (SciPy, pandas) is imported on the first reload, in the reload thread,
not when the service module is imported: the web worker starts in half the time.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from music_platform.config import Settings
from music_platform.serving.snapshot import Snapshot

if TYPE_CHECKING:
    from music_platform.recommender.cold_start import ColdStartAnswer

log = logging.getLogger(__name__)


class ColdStart:
    """Cold start for one served version: with its trained ``model``, or the catalogue alone.

    ``strategy`` is the first strategy tried (``/health`` reports it): "model" with a model,
    "catalogue" (``recommender.cold_start.STRATEGY_CATALOGUE``) without.
    """

    def __init__(self, model: Any = None, model_version: str | None = None) -> None:
        self.model = model
        self.model_version = model_version
        self.strategy = "model" if model is not None else "catalogue"

    def recommend(self, snapshot: Snapshot, artists: Sequence[int], tracks: Sequence[int], k: int) -> ColdStartAnswer:
        from music_platform.recommender.cold_start import cold_start_answer

        return cold_start_answer(snapshot.catalogue, snapshot.similar_track_indices, artists, tracks, k, self.model)


def load_cold_start(settings: Settings, model_version: str | None) -> ColdStart:
    """Cold start with the trained model of ``model_version`` when its artifact exists, else
    the catalogue's (an unreadable artifact also falls back, with a warning)."""
    from music_platform.recommender.cold_start import cold_start_answer  # noqa: F401  (import now, off the request path)

    if model_version is None or not (settings.models_dir / model_version / "model.pkl").is_file():
        return ColdStart()
    from music_platform.recommender.registry import ModelRegistry

    try:
        model = ModelRegistry(settings.models_dir).load(model_version)
    except Exception as exc:
        log.warning("model cold start unavailable for version %s (%s): using the catalogue", model_version, exc)
        return ColdStart()
    log.info("cold start uses the %s model of version %s", model.kind, model_version)
    return ColdStart(model, model_version)
