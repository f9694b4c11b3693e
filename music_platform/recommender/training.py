"""One entry point per model kind, and the LightFM + EASE blend.

``train_model("lightfm" | "ease" | "als" | "popularity" | "blend", train, params)`` is what the
Dagster asset calls when the published model kind is configurable.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

from music_platform.recommender.dataset import RecDataset
from music_platform.recommender.lightfm_model import LightFMParams, train_lightfm
from music_platform.recommender.models import (
    MODEL_KINDS,
    ALSParams,
    BlendScorer,
    EaseParams,
    TrainedModel,
    train_als,
    train_ease,
    train_popularity,
)


@dataclass(frozen=True)
class BlendParams:
    """LightFM hybrid + EASE, per-user standardised scores mixed with ``lightfm_weight``.

    ``lightfm_weight=0.5`` was chosen on validation splits inside HetRec training data
    (grid 0.3/0.5/0.7, benchmarks/recommender_tuning.py).
    """

    lightfm_weight: float = 0.5
    lightfm: LightFMParams = field(default_factory=LightFMParams)
    ease: EaseParams = field(default_factory=EaseParams)


def blend_models(lightfm_model: TrainedModel, ease_model: TrainedModel, lightfm_weight: float = 0.5) -> TrainedModel:
    """Combine two models fitted on the same training data (fit time is their sum)."""
    if not 0.0 <= lightfm_weight <= 1.0:
        raise ValueError(f"lightfm_weight must be in [0, 1], got {lightfm_weight}")
    if list(lightfm_model.item_ids) != list(ease_model.item_ids):
        raise ValueError("blended models must share their item ids (train them on one dataset)")
    scorer = BlendScorer(
        components=[lightfm_model.scorer, ease_model.scorer],
        weights=[lightfm_weight, 1.0 - lightfm_weight],
        explainer=1,  # EASE's weights say which heard item drove a recommendation
        similarity=0,  # LightFM embeddings cover every item, played or not
    )
    return TrainedModel(
        kind="blend",
        scorer=scorer,
        user_ids=lightfm_model.user_ids,
        item_ids=lightfm_model.item_ids,
        catalog=lightfm_model.catalog,
        item_popularity=lightfm_model.item_popularity,
        params={"lightfm_weight": lightfm_weight, "lightfm": lightfm_model.params, "ease": ease_model.params},
        fit_seconds=lightfm_model.fit_seconds + ease_model.fit_seconds,
        training_info={"lightfm": lightfm_model.training_info, "ease": ease_model.training_info},
        estimator=lightfm_model.estimator,
    )


def train_blend(train: RecDataset, params: BlendParams | None = None) -> TrainedModel:
    params = params or BlendParams()
    started = time.perf_counter()
    model = blend_models(train_lightfm(train, params.lightfm), train_ease(train, params.ease), params.lightfm_weight)
    model.fit_seconds = time.perf_counter() - started
    model.params = asdict(params)
    return model


def train_model(kind: str, train: RecDataset, params: Any = None) -> TrainedModel:
    """Train a model of ``kind`` (one of ``MODEL_KINDS``) with its params dataclass (or defaults)."""
    if kind == "popularity":
        return train_popularity(train)
    if kind == "ease":
        return train_ease(train, params or EaseParams())
    if kind == "als":
        return train_als(train, params or ALSParams())
    if kind == "lightfm":
        return train_lightfm(train, params or LightFMParams())
    if kind == "blend":
        return train_blend(train, params or BlendParams())
    raise ValueError(f"unknown model kind {kind!r}; expected one of {', '.join(MODEL_KINDS)}")
