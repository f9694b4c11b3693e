"""One entry point per model kind, and the LightFM + EASE blend.

``train_model("lightfm" | "ease" | "als" | "popularity" | "blend", train, params)`` is what the
Dagster asset calls when the published model kind is configurable.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np

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

BLENDABLE = ("lightfm", "ease", "als")


@dataclass(frozen=True)
class BlendParams:
    """A weighted blend of per-user standardised scores of LightFM hybrid, EASE and/or ALS.

    The weights were chosen on validation splits inside HetRec training data
    (benchmarks/recommender_tuning.py, stage ``blend``): LightFM 0.5 + EASE 0.25 + ALS 0.25 beat
    every single model and the two-model blends tried (LightFM+EASE at 0.3/0.5/0.7, LightFM+ALS,
    EASE+ALS, equal thirds). A component with weight 0 is not trained.
    """

    weights: dict[str, float] = field(default_factory=lambda: {"lightfm": 0.5, "ease": 0.25, "als": 0.25})
    lightfm: LightFMParams = field(default_factory=LightFMParams)
    ease: EaseParams = field(default_factory=EaseParams)
    als: ALSParams = field(default_factory=ALSParams)

    def __post_init__(self) -> None:
        unknown = set(self.weights) - set(BLENDABLE)
        if unknown or not any(w > 0 for w in self.weights.values()) or any(w < 0 for w in self.weights.values()):
            raise ValueError(f"blend weights must be >= 0 over {', '.join(BLENDABLE)} with one > 0, got {self.weights}")


def blend_models(models: Mapping[str, TrainedModel], weights: Mapping[str, float]) -> TrainedModel:
    """Combine models fitted on the same training data (fit time is their sum).

    Reasons come from EASE when it is part of the blend (its weights say which heard item drove a
    recommendation); similar items from LightFM when present (its embeddings cover unplayed items).
    """
    names = [name for name in models if weights.get(name, 0.0) > 0]
    if not names:
        raise ValueError("a blend needs at least one model with a positive weight")
    first = models[names[0]]
    for name in names[1:]:
        if not np.array_equal(models[name].item_ids, first.item_ids):
            raise ValueError("blended models must share their item ids (train them on one dataset)")
    kinds = [models[n].kind for n in names]
    explainer = kinds.index("ease") if "ease" in kinds else 0
    with_vectors = [i for i, n in enumerate(names) if models[n].scorer.item_vectors() is not None]
    similarity = kinds.index("lightfm") if "lightfm" in kinds else (with_vectors[0] if with_vectors else 0)
    scorer = BlendScorer(
        components=[models[n].scorer for n in names],
        weights=[float(weights[n]) for n in names],
        explainer=explainer,
        similarity=similarity,
    )
    return TrainedModel(
        kind="blend",
        scorer=scorer,
        user_ids=first.user_ids,
        item_ids=first.item_ids,
        catalog=first.catalog,
        item_popularity=first.item_popularity,
        params={"weights": {n: float(weights[n]) for n in names}, **{n: models[n].params for n in names}},
        fit_seconds=sum(models[n].fit_seconds for n in names),
        training_info={n: models[n].training_info for n in names},
        estimator=models[names[0]].estimator,
    )


def train_blend(train: RecDataset, params: BlendParams | None = None) -> TrainedModel:
    params = params or BlendParams()
    started = time.perf_counter()
    trainers = {
        "lightfm": lambda: train_lightfm(train, params.lightfm),
        "ease": lambda: train_ease(train, params.ease),
        "als": lambda: train_als(train, params.als),
    }
    fitted = {name: trainers[name]() for name, weight in params.weights.items() if weight > 0}
    model = blend_models(fitted, params.weights)
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


def _from_dict(cls: type, values: Mapping[str, Any] | None) -> Any:
    names = {f.name for f in fields(cls)}
    return cls(**{key: value for key, value in (values or {}).items() if key in names})


def params_from_dict(kind: str, params: Mapping[str, Any] | None) -> Any:
    """Rebuild the params dataclass of ``kind`` from ``TrainedModel.params`` / a registry's params.json.

    Used to compare against the published model *on the same split*: retrain its configuration
    on the candidate's training data (the published artefact itself has seen today's test
    interactions, so scoring it on them would flatter it).
    """
    params = params or {}
    if kind == "popularity":
        return None
    if kind == "lightfm":
        return _from_dict(LightFMParams, params)
    if kind == "ease":
        return _from_dict(EaseParams, params)
    if kind == "als":
        return _from_dict(ALSParams, params)
    if kind == "blend":
        defaults = BlendParams()
        return BlendParams(
            weights=dict(params.get("weights") or defaults.weights),
            lightfm=_from_dict(LightFMParams, params.get("lightfm")),
            ease=_from_dict(EaseParams, params.get("ease")),
            als=_from_dict(ALSParams, params.get("als")),
        )
    raise ValueError(f"unknown model kind {kind!r}; expected one of {', '.join(MODEL_KINDS)}")
