"""One entry point per model kind, and the LightFM + EASE blend.

``train_model("lightfm" | "ease" | "als" | "popularity" | "blend", train, params)`` is what the
Dagster asset calls when the published model kind is configurable.
"""

from __future__ import annotations

import copy
import os
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

import numpy as np

from music_platform.recommender.dataset import RecDataset
from music_platform.recommender.lightfm_model import LightFMParams, refit_params, train_lightfm
from music_platform.recommender.models import (
    MODEL_KINDS,
    ALSParams,
    BlendScorer,
    CooccurrenceParams,
    EaseParams,
    TagSimilarityParams,
    TrainedModel,
    train_als,
    train_cooccurrence,
    train_ease,
    train_popularity,
    train_tag_similarity,
)

BLENDABLE = ("lightfm", "ease", "als", "cooccurrence", "tags")


@dataclass(frozen=True)
class BlendParams:
    """A weighted blend of per-user standardised scores of LightFM hybrid, EASE and/or ALS.

    The weights were chosen on a validation split inside HetRec training data with leak-free tag
    features (outer seed 101, ``benchmarks/recommender_tuning.py --stage grid``: every weight
    vector on a 0.1 simplex grid × EASE λ 50/100/200/400 × ALS 24/48/96 factors, each component
    fitted once). LightFM 0.8 + EASE 0.1 + ALS 0.1 with 48 ALS factors was best (validation P@10
    0.1446 with λ=100, against 0.1408 for the previous 0.5/0.25/0.25 and 0.1293 for LightFM
    alone); the blend's ALS uses 48 factors (the standalone ALS keeps 24, its own optimum).
    A component with weight 0 is not trained.

    ``weights`` may also hold "popularity": that weight × the standardised log listener count is
    added (negative: a penalty). −0.2 was chosen on the inner validation splits of tuning seeds
    101 and 102 (``benchmarks/recommender_tuning.py --stage prior``): +0.0021 validation P@10
    paired (± 0.0006), the same with a second LightFM fit; −0.1 to −0.4 all gain, −0.7 loses.
    The blend's components over-rank the most-listened artists a listener has not played yet.
    """

    weights: dict[str, float] = field(
        default_factory=lambda: {"lightfm": 0.8, "ease": 0.1, "als": 0.1, "popularity": -0.2}
    )
    lightfm: LightFMParams = field(default_factory=LightFMParams)
    ease: EaseParams = field(default_factory=EaseParams)
    als: ALSParams = field(default_factory=lambda: ALSParams(factors=48))
    # Top-artist co-occurrence: trained only when a mix gives it weight (by default the cold one).
    cooccurrence: CooccurrenceParams = field(default_factory=CooccurrenceParams)
    # Tag similarity: likewise only for a mix that gives it weight (by default the cold one).
    tags: TagSimilarityParams = field(default_factory=TagSimilarityParams)
    # Weights for listeners folded in from a few named items (cold start); None: ``weights``.
    # May add "popularity": the standardised log listener count as a prior. LightFM 0.9 + ALS 0.1
    # (no EASE) was the best mix of the blend's own components for five named artists, pooled over
    # the cold-start splits of tuning seeds 101 and 102; 0.1 of LightFM's weight moved to the
    # top-artist co-occurrence gained on both seeds and two LightFM fits. Round three (tuning
    # seeds 101-104, with LightFM's softmax fold-in) added tag similarity 0.05 and ALS 0.15,
    # confirmed on seeds never tuned on (docs/recommender.md#cold-start).
    cold_start_weights: dict[str, float] | None = field(
        default_factory=lambda: {"lightfm": 0.8, "als": 0.15, "cooccurrence": 0.1, "tags": 0.05}
    )

    def __post_init__(self) -> None:
        unknown = set(self.weights) - {*BLENDABLE, "popularity"}
        models = [w for n, w in self.weights.items() if n in BLENDABLE]
        if unknown or not any(w > 0 for w in models) or any(w < 0 for w in models):
            raise ValueError(
                f"blend weights must be >= 0 over {', '.join(BLENDABLE)} with one > 0 (popularity: any sign),"
                f" got {self.weights}"
            )
        if not np.isfinite(float(self.weights.get("popularity", 0.0))):
            raise ValueError(f"the popularity weight must be finite, got {self.weights['popularity']}")
        cold = self.cold_start_weights
        if cold is not None and (
            set(cold) - {*BLENDABLE, "popularity"}
            or any(w < 0 for w in cold.values())
            or not any(cold.get(n, 0.0) > 0 for n in BLENDABLE)
        ):
            raise ValueError(
                f"cold_start_weights must be >= 0 over {', '.join(BLENDABLE)}, popularity (a model > 0), got {cold}"
            )

    def components(self) -> list[str]:
        """The models to train: positive weight in the warm or the cold-start mix."""
        cold = self.cold_start_weights or {}
        return [n for n in BLENDABLE if self.weights.get(n, 0.0) > 0 or cold.get(n, 0.0) > 0]


def blend_models(
    models: Mapping[str, TrainedModel],
    weights: Mapping[str, float],
    cold_start_weights: Mapping[str, float] | None = None,
) -> TrainedModel:
    """Combine models fitted on the same training data (fit time is their sum).

    ``weights`` and ``cold_start_weights`` (optional: for listeners folded in from history alone)
    may add a "popularity" prior: the standardised log listener count (``BlendScorer``).

    Reasons come from EASE when it is part of the blend (its weights say which heard item drove a
    recommendation); similar items from LightFM when present (its embeddings cover unplayed items).
    """
    cold = dict(cold_start_weights or {})
    names = [name for name in models if weights.get(name, 0.0) > 0 or cold.get(name, 0.0) > 0]
    if not any(weights.get(name, 0.0) > 0 for name in names):
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
        weights=[float(weights.get(n, 0.0)) for n in names],
        explainer=explainer,
        similarity=similarity,
        cold_weights=[float(cold.get(n, 0.0)) for n in names] if cold_start_weights is not None else None,
        prior_weight=float(weights.get("popularity", 0.0)),
        cold_prior_weight=float(cold.get("popularity", 0.0)),
        prior=(
            np.log1p(first.item_popularity.astype(np.float32))
            if weights.get("popularity", 0.0) or cold.get("popularity", 0.0)
            else None
        ),
        names=list(names),
    )
    return TrainedModel(
        kind="blend",
        scorer=scorer,
        user_ids=first.user_ids,
        item_ids=first.item_ids,
        catalog=first.catalog,
        item_popularity=first.item_popularity,
        params={
            "weights": {
                **{n: float(weights.get(n, 0.0)) for n in names},
                **({"popularity": float(weights["popularity"])} if weights.get("popularity") else {}),
            },
            "cold_start_weights": cold or None,
            **{n: models[n].params for n in names},
        },
        fit_seconds=sum(models[n].fit_seconds for n in names),
        training_info={n: models[n].training_info for n in names},
        estimator=models[names[0]].estimator,
    )


def with_cold_start_weights(model: TrainedModel, cold_start_weights: Mapping[str, float]) -> TrainedModel:
    """The same fitted blend with another mix for folded-in listeners (known listeners unchanged):
    compares cold-start mixes on the very same components, e.g. in the cold-start benchmark."""
    scorer = model.scorer
    names = getattr(scorer, "names", None)
    if not isinstance(scorer, BlendScorer) or names is None:
        raise ValueError("with_cold_start_weights needs a blend that records its components' names")
    unknown = set(cold_start_weights) - {*names, "popularity"}
    if unknown or not any(cold_start_weights.get(n, 0.0) > 0 for n in names):
        raise ValueError(f"cold-start weights {dict(cold_start_weights)} do not fit the blend's components {names}")
    if cold_start_weights.get("popularity", 0.0) and scorer.prior is None:
        prior = np.log1p(model.item_popularity.astype(np.float32))
    else:
        prior = scorer.prior
    variant = copy.copy(model)
    variant.scorer = replace(
        scorer,
        cold_weights=[float(cold_start_weights.get(n, 0.0)) for n in names],
        cold_prior_weight=float(cold_start_weights.get("popularity", 0.0)),
        prior=prior,
    )
    variant.params = {**model.params, "cold_start_weights": dict(cold_start_weights)}
    return variant


def train_blend(train: RecDataset, params: BlendParams | None = None) -> TrainedModel:
    params = params or BlendParams()
    started = time.perf_counter()
    trainers = {
        "lightfm": lambda: train_lightfm(train, params.lightfm),
        "ease": lambda: train_ease(train, params.ease),
        "als": lambda: train_als(train, params.als),
        "cooccurrence": lambda: train_cooccurrence(train, params.cooccurrence),
        "tags": lambda: train_tag_similarity(train, params.tags),
    }
    fitted = {name: trainers[name]() for name in params.components()}
    model = blend_models(fitted, params.weights, params.cold_start_weights)
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
            cold_start_weights=params.get("cold_start_weights") if "weights" in params else defaults.cold_start_weights,
            lightfm=_from_dict(LightFMParams, params.get("lightfm")),
            ease=_from_dict(EaseParams, params.get("ease")),
            als=_from_dict(ALSParams, params.get("als")),
            cooccurrence=_from_dict(CooccurrenceParams, params.get("cooccurrence")),
            tags=_from_dict(TagSimilarityParams, params.get("tags")),
        )
    raise ValueError(f"unknown model kind {kind!r}; expected one of {', '.join(MODEL_KINDS)}")


# ---------------------------------------------------------------------------------------
# Selection among candidate configurations, and the refit on all data
# ---------------------------------------------------------------------------------------
CANDIDATES = ("lightfm", "blend")  # the LightFM hybrid (the core model) and its blend with EASE + ALS
SELECTION_METRIC = "ndcg@10"


@dataclass
class Selection:
    """Every candidate trained on one training split and evaluated on its held-out part."""

    winner: str
    metric: str
    models: dict[str, TrainedModel]  # trained on the training split only
    metrics: dict[str, dict[str, float]]  # candidate → evaluate_model figures (with ``:stderr``)
    refit: dict[str, Any] = field(default_factory=dict)  # whether the winner was refitted on all data, and why
    fit_cpu_seconds: dict[str, float] = field(default_factory=dict)  # candidate → CPU seconds of its fit

    def summary(self) -> dict[str, Any]:
        """JSON-ready: the winner, the metric and each candidate's figures (the registry's record)."""
        return {
            "winner": self.winner,
            "metric": self.metric,
            "refit": self.refit,
            "candidates": {name: {k: round(float(v), 6) for k, v in m.items()} for name, m in self.metrics.items()},
        }


def select_candidate(
    train: RecDataset,
    test: RecDataset,
    candidates: tuple[str, ...] | list[str] = CANDIDATES,
    blend_params: BlendParams | None = None,
    metric: str = SELECTION_METRIC,
    k: int = 10,
) -> Selection:
    """Train each candidate kind on ``train`` and keep the one with the best ``metric`` on ``test``.

    The blend reuses the LightFM hybrid fitted for the ``lightfm`` candidate (same params), so
    selecting costs one LightFM fit plus EASE and ALS, not two LightFM fits. Ties go to the
    earlier candidate (the LightFM hybrid first: the simpler model wins a draw).
    """
    from music_platform.recommender.evaluation import evaluate_model

    params = blend_params or BlendParams()
    unknown = [c for c in candidates if c not in ("lightfm", "ease", "als", "blend")]
    if unknown or not candidates:
        raise ValueError(f"candidates must be among lightfm, ease, als, blend; got {list(candidates)}")
    components: dict[str, TrainedModel] = {}
    trainers = {
        "lightfm": lambda: train_lightfm(train, params.lightfm),
        "ease": lambda: train_ease(train, params.ease),
        "als": lambda: train_als(train, params.als),
        "cooccurrence": lambda: train_cooccurrence(train, params.cooccurrence),
        "tags": lambda: train_tag_similarity(train, params.tags),
    }
    needed = {c for c in candidates if c != "blend"}
    if "blend" in candidates:
        needed |= set(params.components())
    cpu: dict[str, float] = {}  # CPU seconds of each fit (all threads): the refit estimate's basis
    for name in BLENDABLE:
        if name in needed:
            started = time.process_time()
            components[name] = trainers[name]()
            cpu[name] = time.process_time() - started
    models: dict[str, TrainedModel] = {c: components[c] for c in candidates if c != "blend"}
    metrics = {name: evaluate_model(model, train, test, k=k, compute_auc=False) for name, model in models.items()}
    if "blend" in candidates:
        models["blend"], metrics["blend"] = _blend_with_or_without_prior(components, params, train, test, metric, k)
    winner = max(candidates, key=lambda c: (metrics[c][metric], -list(candidates).index(c)))
    fit_cpu = {c: sum(cpu[n] for n in params.components()) if c == "blend" else cpu[c] for c in candidates}
    return Selection(winner=winner, metric=metric, models=models, metrics=metrics, fit_cpu_seconds=fit_cpu)


def _blend_with_or_without_prior(
    components: Mapping[str, TrainedModel],
    params: BlendParams,
    train: RecDataset,
    test: RecDataset,
    metric: str,
    k: int,
) -> tuple[TrainedModel, dict[str, float]]:
    """The blend, with its popularity prior only where the selection split says it helps.

    The prior's weight (−0.2) was tuned on HetRec, where the components over-rank the most
    listened artists; on data where popularity itself predicts well (a small or head-heavy
    catalogue) the same penalty costs a lot. Both variants reuse the fitted components, so the
    choice costs one more evaluation, no training; it is made on the same split as the
    selection and recorded in ``training_info["popularity_prior"]``.
    """
    from music_platform.recommender.evaluation import evaluate_model

    variants = [dict(params.weights)]
    if params.weights.get("popularity"):
        variants.append({name: w for name, w in params.weights.items() if name != "popularity"})
    scored = []
    for weights in variants:
        blend = blend_models(components, weights, params.cold_start_weights)
        blend.params = asdict(replace(params, weights=weights))
        scored.append((blend, evaluate_model(blend, train, test, k=k, compute_auc=False)))
    # The variant with the prior first: it wins a draw (the tuned configuration).
    order = max(range(len(scored)), key=lambda i: (scored[i][1][metric], -i))
    best, best_metrics = scored[order]
    best.training_info["popularity_prior"] = {
        "weight": float(best.params["weights"].get("popularity", 0.0)),
        f"{metric} with prior": round(float(scored[0][1][metric]), 6),
        **({f"{metric} without prior": round(float(scored[1][1][metric]), 6)} if len(scored) > 1 else {}),
    }
    return best, best_metrics


def refit_on_all(kind: str, trained: TrainedModel, data: RecDataset) -> TrainedModel:
    """Retrain the configuration of ``trained`` (fitted on a training split) on all of ``data``.

    LightFM reuses the epoch count its early stopping found, so the refit costs one training
    without a second search.
    """
    if kind == "lightfm":
        return train_lightfm(data, refit_params(LightFMParams(**_lightfm_fields(trained.params)), trained))
    if kind == "blend":
        params = params_from_dict("blend", trained.params)
        lightfm_info = trained.training_info.get("lightfm")
        if isinstance(lightfm_info, dict) and "epochs" in lightfm_info:
            lightfm = replace(
                params.lightfm,
                early_stopping=False,
                max_epochs=max(1, int(lightfm_info["epochs"])),
                time_budget_seconds=None,
            )
            params = replace(params, lightfm=lightfm)
        return train_blend(data, params)
    return train_model(kind, data, params_from_dict(kind, trained.params))


def _lightfm_fields(params: Mapping[str, Any]) -> dict[str, Any]:
    names = {f.name for f in fields(LightFMParams)}
    return {key: value for key, value in params.items() if key in names}


# ---------------------------------------------------------------------------------------
# The production configuration: what the pipeline publishes by default
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ProductionConfig:
    """The pipeline's default model configuration (``ml/lightfm_model`` with its default
    ``ModelConfig``), and what ``music-platform benchmark`` measures as ``production``.

    Select among ``candidates`` on a stable hold-out of the data it is given, then (with
    ``refit_on_full``) retrain the winner on all of it. LightFM is bounded for a daily pipeline:
    at most ``max_epochs`` (early stopping picks the count) and ``time_budget_seconds`` of epoch search.
    """

    candidates: tuple[str, ...] = CANDIDATES
    test_fraction: float = 0.2
    refit_on_full: bool = True
    # The refit runs only when the winner's fit on the split, scaled to all the data, is expected
    # to take at most this long (None: always). At 10 M scrobbles LightFM's epoch search alone uses
    # the 300 s budget, so the refit is skipped there (docs/scaling.md); HetRec refits in seconds.
    refit_max_seconds: float | None = 300.0
    max_epochs: int = 20
    no_components: int = 64
    time_budget_seconds: float | None = 300.0
    # EASE's dense Gram inverse is O(items³): the pipeline covers the 8,000 most-listened items
    # (256 MB, seconds); the blend's other components score the rest.
    ease_max_items: int = 8_000

    def lightfm_params(self) -> LightFMParams:
        return LightFMParams(
            max_epochs=self.max_epochs,
            no_components=self.no_components,
            refit_on_full=False,  # inside the epoch search; the refit on all data is refit_on_full
            time_budget_seconds=self.time_budget_seconds,
        )

    def blend_params(self) -> BlendParams:
        return BlendParams(lightfm=self.lightfm_params(), ease=replace(EaseParams(), max_items=self.ease_max_items))


PRODUCTION = ProductionConfig()


def train_production(
    data: RecDataset,
    config: ProductionConfig = PRODUCTION,
    selection_split: tuple[RecDataset, RecDataset] | None = None,
) -> tuple[Selection, TrainedModel, TrainedModel]:
    """(selection, the winner trained on the selection split, the served model).

    ``selection_split`` defaults to the pipeline's stable hold-out of ``data``. The served model is
    the winner refitted on all of ``data`` when ``config.refit_on_full``, else the split-trained one.
    """
    from music_platform.recommender.stable_split import stable_holdout

    train, test = selection_split or stable_holdout(data, config.test_fraction)
    selection = select_candidate(train, test, config.candidates, config.blend_params())
    holdout_model = selection.models[selection.winner]
    # The expected refit time is what the winner's fit took on this machine without other jobs:
    # its CPU seconds over the cores it may use (never more than its wall time). With wall time
    # alone, a busy machine decided whether the served model is refitted (HetRec under a load of
    # 13 skipped a refit that takes 20 s idle, and served the weaker split-trained model).
    cpu = selection.fit_cpu_seconds.get(selection.winner)
    fit_seconds = holdout_model.fit_seconds if cpu is None else min(holdout_model.fit_seconds, cpu / _cores())
    expected = fit_seconds * data.n_interactions / max(train.n_interactions, 1)
    if not config.refit_on_full:
        selection.refit = {"done": False, "reason": "refit_on_full is off"}
    elif config.refit_max_seconds is not None and expected > config.refit_max_seconds:
        selection.refit = {
            "done": False,
            "reason": f"expected refit {expected:.0f} s > refit_max_seconds {config.refit_max_seconds:.0f} s",
        }
    else:
        selection.refit = {"done": True, "reason": f"expected refit {expected:.1f} s", "expected_seconds": expected}
    served = refit_on_all(selection.winner, holdout_model, data) if selection.refit["done"] else holdout_model
    if selection.refit["done"]:
        selection.refit["seconds"] = round(served.fit_seconds, 3)
    return selection, holdout_model, served


def _cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)
