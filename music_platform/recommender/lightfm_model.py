"""LightFM hybrid training with early stopping on a validation split inside the training data.

Procedure (``train_lightfm``):

1. hold out ``validation_fraction`` of each training user's interactions (random, seeded);
2. train on the rest one epoch at a time, measuring precision@k on the validation part every
   ``eval_every`` epochs; stop after ``patience`` evaluations without improvement, or once
   ``time_budget_seconds`` of training have passed (CPU seconds over the training threads, at
   most the wall time: a busy machine does not shorten the search; the epoch that crosses it is
   validated too, so the best epoch seen so far is kept);
3. refit a fresh model on the *whole* training data for the best number of epochs (so no
   interaction is wasted), or keep the best snapshot when ``refit_on_full`` is off.
"""

from __future__ import annotations

import copy
import os
import time
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import scipy.sparse as sp

from music_platform.recommender.dataset import RecDataset
from music_platform.recommender.models import FactorScorer, TrainedModel
from music_platform.recommender.scoring import top_k
from music_platform.recommender.splits import split_holdout

LOSSES = ("warp", "bpr", "warp-kos", "logistic")

# LightFM's threads update the shared embeddings without locks (Hogwild), so two trainings with
# several threads on the same data differ. Below this many interactions one thread costs well
# under a second and the same data gives the same model: on a 40-listener world the gate's
# decision against popularity flipped from run to run with two threads.
SINGLE_THREAD_BELOW_INTERACTIONS = 50_000


@dataclass(frozen=True)
class LightFMParams:
    """LightFM hyperparameters.

    Defaults chosen on validation splits inside HetRec training data (outer seeds 101-102, never
    the test folds; ``benchmarks/recommender_tuning.py``, results in docs/recommender.md), one
    factor at a time: WARP with 64 components (32 and 128 were worse), learning rate 0.05 (0.1
    worse), no L2 (1e-6 worse), unweighted interactions (play-count weights worse) and
    ``max_sampled=60`` (10 → 30 → 60 each better). ``max_epochs`` only bounds training; early
    stopping picks the count. ``time_budget_seconds`` (None: no limit) bounds the epoch search in
    time: training stops after the first epoch that ends past it. Time is CPU seconds over the
    training threads, at most the wall time, so other jobs on the machine do not shorten the
    search; it still depends on the machine's speed, so it is a ceiling for deployments, not a
    tuning knob.
    """

    no_components: int = 64
    loss: str = "warp"
    learning_rate: float = 0.05
    learning_schedule: str = "adagrad"
    item_alpha: float = 0.0
    user_alpha: float = 0.0
    max_sampled: int = 60
    max_epochs: int = 40
    use_item_features: bool = True  # False: ids only (plain matrix factorisation)
    use_user_features: bool = False
    sample_weight_alpha: float | None = None  # weight interactions by 1+alpha*log1p(plays); None: unweighted
    early_stopping: bool = True
    validation_fraction: float = 0.1
    eval_every: int = 2
    patience: int = 2
    refit_on_full: bool = True
    validation_k: int = 10
    num_threads: int = 2
    random_state: int = 42
    time_budget_seconds: float | None = None

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        if self.no_components < 1 or self.max_epochs < 1:
            raise ValueError("no_components and max_epochs must be >= 1")
        if self.time_budget_seconds is not None and not self.time_budget_seconds > 0:
            raise ValueError(f"time_budget_seconds must be positive or None, got {self.time_budget_seconds}")


def new_estimator(params: LightFMParams) -> Any:
    from lightfm import LightFM

    return LightFM(
        no_components=params.no_components,
        loss=params.loss,
        learning_rate=params.learning_rate,
        learning_schedule=params.learning_schedule,
        item_alpha=params.item_alpha,
        user_alpha=params.user_alpha,
        max_sampled=params.max_sampled,
        random_state=np.random.RandomState(params.random_state),
    )


def _features(dataset: RecDataset, params: LightFMParams) -> tuple[sp.csr_matrix | None, sp.csr_matrix | None]:
    items = dataset.item_features if params.use_item_features else None
    users = dataset.user_features if params.use_user_features else None
    return users, items


def _fit_inputs(dataset: RecDataset, params: LightFMParams) -> tuple[sp.coo_matrix, sp.coo_matrix | None]:
    interactions = dataset.interactions.tocoo()
    if params.sample_weight_alpha is None:
        return interactions, None
    weights = dataset.confidence(params.sample_weight_alpha)
    weights.data /= weights.data.mean()  # mean weight 1 keeps the learning rate meaningful
    return interactions, weights.tocoo()  # same sparsity order as the interactions


def lightfm_scorer(estimator: Any, dataset: RecDataset, params: LightFMParams) -> FactorScorer:
    user_features, item_features = _features(dataset, params)
    item_bias, item_embeddings = estimator.get_item_representations(item_features)
    _, user_embeddings = estimator.get_user_representations(user_features)
    return FactorScorer(
        user_vectors=np.asarray(user_embeddings, dtype=np.float32),
        item_embeddings=np.asarray(item_embeddings, dtype=np.float32),
        item_bias=np.asarray(item_bias, dtype=np.float32),
        fold_in="softmax",
    )


def validation_precision(scorer: FactorScorer, train: sp.csr_matrix, valid: sp.csr_matrix, k: int) -> float:
    """Mean precision@k over users with validation items, training items excluded."""
    users = np.flatnonzero(np.diff(valid.indptr) > 0)
    hits = 0.0
    for begin in range(0, len(users), 2048):
        rows = users[begin : begin + 2048]
        scores = scorer.score(rows, train[rows])
        items, _ = top_k(scores, k, exclude=train[rows])
        relevant = valid[rows].toarray() > 0
        hits += float((relevant[np.arange(len(rows))[:, None], np.maximum(items, 0)] & (items >= 0)).sum())
    return hits / (k * max(len(users), 1))


def _fit_epochs(estimator: Any, dataset: RecDataset, params: LightFMParams, epochs: int) -> None:
    interactions, weights = _fit_inputs(dataset, params)
    user_features, item_features = _features(dataset, params)
    estimator.fit_partial(
        interactions,
        user_features=user_features,
        item_features=item_features,
        sample_weight=weights,
        epochs=epochs,
        num_threads=params.num_threads,
    )


def train_lightfm(train: RecDataset, params: LightFMParams | None = None) -> TrainedModel:
    """Fit LightFM on ``train`` (early stopping on an inner validation split unless disabled)."""
    params = params or LightFMParams()
    if params.num_threads > 1 and train.interactions.nnz < SINGLE_THREAD_BELOW_INTERACTIONS:
        params = replace(params, num_threads=1)
    started = time.perf_counter()
    cpu_started = time.process_time()
    threads = max(1, min(params.num_threads, _cores()))

    def out_of_time() -> bool:
        # The budget counts CPU seconds over the threads training may use (at most the wall
        # time): the time the search takes without other jobs. With wall time, a shared machine
        # cut the search short (a load of 15 on 2 cores gave a fifth of the epochs) and the model
        # depended on who else was running.
        budget = params.time_budget_seconds
        if budget is None:
            return False
        wall = time.perf_counter() - started
        return min(wall, (time.process_time() - cpu_started) / threads) >= budget

    info: dict[str, Any] = {"stopped_by": "max_epochs"}
    epochs = params.max_epochs
    estimator = None
    if params.early_stopping:
        inner, valid = split_holdout(train, "random", params.validation_fraction, seed=params.random_state)
        candidate = new_estimator(params)
        interactions, weights = _fit_inputs(inner, params)
        user_features, item_features = _features(inner, params)
        inner_history, valid_matrix = inner.interactions, valid.interactions
        best, best_epoch, best_snapshot, stale, curve = -1.0, 0, None, 0, []
        for epoch in range(1, params.max_epochs + 1):
            info["epochs_trained"] = epoch
            candidate.fit_partial(
                interactions,
                user_features=user_features,
                item_features=item_features,
                sample_weight=weights,
                epochs=1,
                num_threads=params.num_threads,
            )
            timed_out = out_of_time()
            if epoch % params.eval_every and epoch != params.max_epochs and not timed_out:
                continue
            value = validation_precision(
                lightfm_scorer(candidate, inner, params), inner_history, valid_matrix, params.validation_k
            )
            curve.append((epoch, round(value, 5)))
            if value > best:
                best, best_epoch, stale = value, epoch, 0
                if not params.refit_on_full:
                    best_snapshot = copy.deepcopy(candidate)
            else:
                stale += 1
                if stale >= params.patience:
                    info["stopped_by"] = "early_stopping"
                    break
            if timed_out:
                info["stopped_by"] = "time_budget"
                break
        info.update(best_epoch=best_epoch, validation_precision=best, validation_curve=curve)
        epochs = best_epoch
        estimator = best_snapshot
    if estimator is None:
        estimator = new_estimator(params)
        if params.early_stopping or params.time_budget_seconds is None:
            _fit_epochs(estimator, train, params, epochs)  # the refit: the epoch count is decided
        else:
            trained = 0
            while trained < epochs:
                _fit_epochs(estimator, train, params, 1)
                trained += 1
                if out_of_time() and trained < epochs:
                    info["stopped_by"] = "time_budget"
                    break
            epochs = trained
    info.setdefault("epochs_trained", epochs)
    info["epochs"] = epochs  # the epochs the returned model has
    info["training_seconds"] = round(time.perf_counter() - started, 3)
    scorer = lightfm_scorer(estimator, train, params)
    return TrainedModel(
        kind="lightfm",
        scorer=scorer,
        user_ids=train.user_ids,
        item_ids=train.item_ids,
        catalog=train.catalog,
        item_popularity=train.item_user_counts.copy(),
        params=asdict(params),
        fit_seconds=time.perf_counter() - started,
        training_info=info,
        estimator=estimator,
    )


def refit_params(params: LightFMParams, trained: TrainedModel) -> LightFMParams:
    """Params to refit on all data for the epoch count early stopping found (no second search)."""
    return replace(
        params,
        early_stopping=False,
        max_epochs=max(1, int(trained.training_info.get("epochs", params.max_epochs))),
        time_budget_seconds=None,  # the count is decided; a budget would cut the refit short
    )


def ids_only(params: LightFMParams) -> LightFMParams:
    """The same hyperparameters without item features (pure collaborative filtering)."""
    return replace(params, use_item_features=False)


def _cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)
