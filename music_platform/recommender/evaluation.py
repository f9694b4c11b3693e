"""Offline evaluation shared by the ``ml/model_evaluation`` asset and the benchmark.

Protocol: a model trained on ``train`` ranks, for every user with at least one test interaction,
all items except those in the user's training history; the top ``k`` are compared with the
user's held-out items (binary relevance). Metrics are means over those users:

- ``precision@k`` = hits / k
- ``recall@k`` = hits / |test items|
- ``ndcg@k`` = DCG / ideal DCG with gains 1 / log2(rank + 1), ideal over min(|test|, k) hits
- ``map@k`` = mean over users of (Σ precision@i at each hit i ≤ k) / min(|test|, k)
- ``auc`` = probability a held-out item outranks a random unheard item (ties count one half)
- ``coverage@k`` = share of the catalogue appearing in at least one user's top k
- ``full_list_share@k`` = share of evaluated users who get k recommendations

Each ranking metric also comes with its standard error over users (``precision@k:stderr``, …):
the gate uses it to tell a regression from the noise of a small test set.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.stats import rankdata

from music_platform.recommender.dataset import RecDataset
from music_platform.recommender.models import TrainedModel
from music_platform.recommender.scoring import history_in_model_space, model_user_positions, score_users, top_k

RANKING_METRICS = ("precision", "recall", "ndcg", "map")
STDERR_SUFFIX = ":stderr"
METRICS = (*RANKING_METRICS, "auc", "coverage", "full_list_share")


def metric_key(metric: str, k: int) -> str:
    return metric if metric == "auc" else f"{metric}@{k}"


def ranking_metrics(items: np.ndarray, relevant: sp.csr_matrix, k: int) -> dict[str, np.ndarray]:
    """Per-user precision/recall/NDCG/AP at k for recommended ``items`` (rows, ``-1`` padded)
    against the binary ``relevant`` matrix (same rows). Users without relevant items give NaN."""
    n_rows = items.shape[0]
    items = items[:, :k]
    safe = np.maximum(items, 0)
    relevant_dense = relevant.toarray() > 0 if relevant.shape[1] <= 200_000 else None
    if relevant_dense is not None:
        hits = relevant_dense[np.arange(n_rows)[:, None], safe] & (items >= 0)
    else:  # very wide catalogues: look hits up in the sparse rows
        hits = (np.asarray(relevant[np.repeat(np.arange(n_rows), k), safe.ravel()]).reshape(items.shape) > 0) & (
            items >= 0
        )
    n_relevant = np.diff(relevant.indptr).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        n_hits = hits.sum(axis=1)
        discounts = 1.0 / np.log2(np.arange(2, k + 2))
        ideal = np.cumsum(discounts)[np.clip(n_relevant.astype(int), 1, k) - 1]
        precision_at_i = np.cumsum(hits, axis=1) / np.arange(1, k + 1)
        out = {
            "precision": n_hits / k,
            "recall": n_hits / n_relevant,
            "ndcg": (hits * discounts).sum(axis=1) / ideal,
            "map": (precision_at_i * hits).sum(axis=1) / np.minimum(n_relevant, k),
        }
    none = n_relevant == 0
    for values in out.values():
        values[none] = np.nan
    return out


def auc_per_user(scores: np.ndarray, train: sp.csr_matrix, test: sp.csr_matrix) -> np.ndarray:
    """Mann–Whitney AUC of test items against unheard items, per row (NaN without test items).

    ``scores`` must not yet be masked. Items the model cannot score (``-inf``) rank below every
    scored item; training items are left out of both sides.
    """
    scores = scores.astype(np.float64, copy=True)
    finite = np.isfinite(scores)
    floor = scores[finite].min() - 1.0 if finite.any() else 0.0
    scores[~finite] = floor
    scores = mask_training(scores, train)
    ranks = rankdata(scores, axis=1, method="average")  # 1-based; training items share the bottom ranks
    n_items = scores.shape[1]
    n_train = np.diff(train.indptr).astype(np.float64)
    n_pos = np.diff(test.indptr).astype(np.float64)
    rows = np.repeat(np.arange(scores.shape[0]), np.diff(test.indptr))
    rank_sum = np.bincount(rows, weights=ranks[rows, test.indices], minlength=scores.shape[0])
    # Every positive beats every (-inf) training item; remove those wins and the positives' own ranks.
    wins = rank_sum - n_pos * (n_pos + 1) / 2.0 - n_pos * n_train
    n_neg = n_items - n_train - n_pos
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = wins / (n_pos * n_neg)
    auc[(n_pos == 0) | (n_neg <= 0)] = np.nan
    return auc


def mask_training(scores: np.ndarray, train: sp.csr_matrix) -> np.ndarray:
    rows = np.repeat(np.arange(train.shape[0]), np.diff(train.indptr))
    scores[rows, train.indices] = -np.inf
    return scores


def evaluate_model(
    model: TrainedModel,
    train: RecDataset,
    test: RecDataset,
    k: int = 10,
    batch_size: int = 1024,
    compute_auc: bool = True,
    num_threads: int = 2,
    per_user: dict[str, np.ndarray] | None = None,
) -> dict[str, float]:
    """Metrics of ``model`` on the (train, test) split, keyed ``precision@10``, ``auc``, … plus ``users``.

    Pass a dict as ``per_user`` to receive each ranking metric per evaluated user (``ndcg@10`` →
    array) and ``"users"`` → their dataset row indices, for paired tests between models.
    """
    history = history_in_model_space(model, train)
    relevant = history_in_model_space(model, test).copy()  # a copy: the dataset caches its matrices
    relevant.data = np.ones_like(relevant.data)
    positions = model_user_positions(model, train)
    users = np.flatnonzero(np.diff(relevant.indptr) > 0)
    sums = dict.fromkeys((*RANKING_METRICS, "auc"), 0.0)
    squares = dict.fromkeys(RANKING_METRICS, 0.0)
    auc_users = 0
    full_lists = 0
    recommended = np.zeros(model.n_items, dtype=bool)
    per_user_parts: dict[str, list[np.ndarray]] = {name: [] for name in RANKING_METRICS}
    for begin in range(0, len(users), batch_size):
        rows = users[begin : begin + batch_size]
        batch_history = history[rows]
        batch_relevant = relevant[rows]
        scores = score_users(model, positions[rows], batch_history)
        if compute_auc:
            auc = auc_per_user(scores, batch_history, batch_relevant)
            sums["auc"] += float(np.nansum(auc))
            auc_users += int(np.isfinite(auc).sum())
        items, _ = top_k(scores, k, exclude=batch_history, num_threads=num_threads)
        for name, values in ranking_metrics(items, batch_relevant, k).items():
            per_user_parts[name].append(values)
            sums[name] += float(np.nansum(values))
            squares[name] += float(np.nansum(values * values))
        full_lists += int((items >= 0).all(axis=1).sum())
        recommended[items[items >= 0]] = True
    n_users = max(len(users), 1)
    result = {metric_key(name, k): sums[name] / n_users for name in RANKING_METRICS}
    for name in RANKING_METRICS:
        mean = sums[name] / n_users
        variance = max(squares[name] / n_users - mean * mean, 0.0) * n_users / max(n_users - 1, 1)
        result[metric_key(name, k) + STDERR_SUFFIX] = float(np.sqrt(variance / n_users))
    if compute_auc:
        result["auc"] = sums["auc"] / max(auc_users, 1)
    result[metric_key("coverage", k)] = float(recommended.mean()) if model.n_items else 0.0
    result[metric_key("full_list_share", k)] = full_lists / n_users
    result["users"] = float(len(users))
    if per_user is not None:
        per_user["users"] = users
        for name, parts in per_user_parts.items():
            per_user[metric_key(name, k)] = np.concatenate(parts) if parts else np.zeros(0)
    return result


def evaluate_models(
    models: Mapping[str, TrainedModel],
    train: RecDataset,
    test: RecDataset,
    k: int = 10,
    compute_auc: bool = True,
    per_user: dict[str, dict[str, np.ndarray]] | None = None,
) -> pd.DataFrame:
    """Long table of every model's metrics on one split: columns model, metric, k, value, stderr, users.

    ``k`` is null for AUC (not a cut-off metric). Pass the popularity model among ``models`` and use
    :func:`with_baseline` to get the ``ml.model_evaluation`` shape. ``per_user`` receives each
    model's per-user values (see :func:`evaluate_model`), for paired tests.
    """
    rows = []
    for name, model in models.items():
        mine: dict[str, np.ndarray] | None = {} if per_user is not None else None
        metrics = evaluate_model(model, train, test, k=k, compute_auc=compute_auc, per_user=mine)
        if per_user is not None:
            per_user[name] = mine
        users = int(metrics.pop("users"))
        for key, value in metrics.items():
            if key.endswith(STDERR_SUFFIX):
                continue
            metric, _, cut = key.partition("@")
            rows.append(
                {
                    "model": name,
                    "metric": metric,
                    "k": int(cut) if cut else None,
                    "value": value,
                    "stderr": metrics.get(key + STDERR_SUFFIX, np.nan),
                    "users": users,
                }
            )
    frame = pd.DataFrame(rows, columns=["model", "metric", "k", "value", "stderr", "users"])
    frame["k"] = frame["k"].astype("Int64")
    return frame


def with_baseline(evaluation: pd.DataFrame, model: str, baseline: str = "popularity") -> pd.DataFrame:
    """One model's rows with the baseline's value beside each metric: metric, k, value, baseline_value."""
    mine = evaluation[evaluation["model"] == model][["metric", "k", "value"]]
    base = evaluation[evaluation["model"] == baseline][["metric", "k", "value"]].rename(
        columns={"value": "baseline_value"}
    )
    return mine.merge(base, on=["metric", "k"], how="left").reset_index(drop=True)


def metrics_dict(evaluation: pd.DataFrame, model: str, column: str = "value") -> dict[str, float]:
    """``{"precision@10": …, "auc": …}`` for one model of an :func:`evaluate_models` table (the gate's
    input); ``column="stderr"`` gives the metrics' standard errors instead."""
    rows = evaluation[evaluation["model"] == model]
    return {
        metric_key(metric, int(k) if pd.notna(k) else 0): float(value)
        for metric, k, value in zip(rows["metric"], rows["k"], rows[column], strict=True)
    }
