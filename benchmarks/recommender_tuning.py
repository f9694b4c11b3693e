"""Hyperparameter selection on HetRec Last.fm 2K — on validation data only, never on test folds.

For each outer seed the data is split exactly as the benchmark does (random 20% of each user's
interactions held out as *test*); the test part is then discarded. The remaining training part
is split again (20% per user, seed + 1000) into inner-train and *validation*; every candidate
configuration is trained on inner-train and scored on validation. The outer seeds used here
(101, 102 by default) differ from the benchmark's reporting seeds (7, 8, 9).

    .venv/bin/python benchmarks/recommender_tuning.py --data-dir /work/shared/data/hetrec2011-lastfm-2k \
        --stage all --json /tmp/tuning.json

Stages: ease, als, lightfm, blend (blend uses the chosen LightFM, EASE and ALS defaults and
also reports each of them alone). Expect ~40 minutes for ``all`` on a busy 2-core machine.
Prints one line per configuration: mean validation precision@10 / NDCG@10 over the outer seeds.
``grid`` scores blend weights on a simplex; ``fusion`` finishes it around the chosen weights (EASE
λ 200/400, more ALS factors or regularisation, reciprocal-rank instead of z-score fusion); ``cold``
scores cold-start mixes on each seed's cold-start split (new listeners naming five artists);
``coldnew`` adds models trained for the cold-start task (top-artist co-occurrence, (E)DLAE, item-kNN)
to the cold-start mix; ``coldmix`` is round two of the cold-start mix (normalisations, weights of
the named artists, tag similarity, a LightFM trained on listeners' top artists, a weight grid),
pooled over the seeds; ``coldthree`` is round three (the naming order of the five artists, LightFM
fold-ins, popularity damping, naive Bayes, EASE λ 1000, a greedy forward selection on tuning seeds
101-104 only, and its pre-declared candidate, scored unchanged on any other seeds); ``prior``
scores the blend's warm popularity weight (a penalty when negative).
Run them one seed at a time on a shared machine (``--seeds 101``, then ``--seeds 102``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from music_platform.recommender.cold_start import cold_start_split
from music_platform.recommender.evaluation import evaluate_model, ranking_metrics
from music_platform.recommender.features import FeatureConfig
from music_platform.recommender.hetrec import leak_free_side_features, load_hetrec_lastfm
from music_platform.recommender.lightfm_model import LightFMParams, new_estimator, train_lightfm
from music_platform.recommender.models import (
    ALSParams,
    CooccurrenceParams,
    EaseParams,
    EaseScorer,
    _ease_weights,
    _standardise_rows,
    top_items_per_user,
    train_als,
    train_cooccurrence,
    train_ease,
)
from music_platform.recommender.scoring import mask_items, top_k
from music_platform.recommender.splits import split_holdout, split_users
from music_platform.recommender.training import BlendParams, blend_models


def inner_splits(data_dir: Path, seeds: list[int], feature_config: FeatureConfig | None = None):
    dataset = load_hetrec_lastfm(data_dir, feature_config)
    for seed in seeds:
        train, test_never_scored = split_holdout(dataset, "random", 0.2, seed=seed)
        inner, valid = split_holdout(train, "random", 0.2, seed=seed + 1000)
        # Tags of validation and test pairs stay unseen (the test part's are dropped too).
        inner = leak_free_side_features(leak_free_side_features(inner, valid), test_never_scored)
        yield inner, valid


def score(results: list[dict], label: str, config: dict, rows: list[dict]) -> None:
    p = float(np.mean([r["precision@10"] for r in results]))
    n = float(np.mean([r["ndcg@10"] for r in results]))
    fit = float(np.mean([r["fit_seconds"] for r in results]))
    rows.append({"stage": label, "config": config, "precision@10": p, "ndcg@10": n, "fit_seconds": fit})
    print(
        f"{label:8s} P@10 {p:.4f}  NDCG@10 {n:.4f}  fit {fit:5.1f}s  {json.dumps(config, sort_keys=True)}", flush=True
    )


def evaluate(model, inner, valid) -> dict:
    metrics = evaluate_model(model, inner, valid, k=10, compute_auc=False)
    metrics["fit_seconds"] = model.fit_seconds
    return metrics


def tune_ease(data_dir: Path, seeds: list[int], rows: list[dict]) -> None:
    splits = list(inner_splits(data_dir, seeds))
    grid = [EaseParams(l2=l2) for l2 in (50.0, 100.0, 150.0, 200.0, 400.0, 800.0)]
    grid += [EaseParams(input_alpha=1.0), EaseParams(min_item_users=3)]
    # The cost of keeping only each item's strongest weights (forced sparse with dense_up_to=0).
    grid += [EaseParams(dense_up_to=0, top_neighbours=top) for top in (256, 512, 1024)]
    for params in grid:
        score([evaluate(train_ease(i, params), i, v) for i, v in splits], "ease", asdict(params), rows)


def tune_als(data_dir: Path, seeds: list[int], rows: list[dict]) -> None:
    splits = list(inner_splits(data_dir, seeds))
    for factors in (16, 24, 32, 64, 128):
        for regularization in (0.01, 0.1, 1.0, 10.0):
            for alpha in (0.5, 1.0, 2.0, 4.0):
                params = ALSParams(factors=factors, regularization=regularization, confidence_alpha=alpha)
                score([evaluate(train_als(i, params), i, v) for i, v in splits], "als", asdict(params), rows)


# Round one starts from plain settings; every config is spelled out so reruns match the record.
LIGHTFM_BASE = LightFMParams(max_sampled=10, item_alpha=0.0, user_alpha=0.0)
ROUND_ONE_FEATURES = FeatureConfig(tag_weight=0.5, max_tags=20)


def tune_lightfm(data_dir: Path, seeds: list[int], rows: list[dict]) -> None:
    """One-factor-at-a-time search around a plain starting point (a full grid would take hours)."""
    features = {
        "tag_weight=0.5": ROUND_ONE_FEATURES,
        "tag_weight=0.25": replace(ROUND_ONE_FEATURES, tag_weight=0.25),
        "tag_weight=1.0": replace(ROUND_ONE_FEATURES, tag_weight=1.0),
        "max_tags=10": replace(ROUND_ONE_FEATURES, max_tags=10),
    }
    params_grid = {
        "max_sampled=30": replace(LIGHTFM_BASE, max_sampled=30),
        "no_components=128": replace(LIGHTFM_BASE, no_components=128),
        "item_alpha=1e-6": replace(LIGHTFM_BASE, item_alpha=1e-6, user_alpha=1e-6),
        "learning_rate=0.1": replace(LIGHTFM_BASE, learning_rate=0.1),
        "weighted": replace(LIGHTFM_BASE, sample_weight_alpha=1.0),
        "ids only (max_sampled=30, alpha=1e-6)": replace(
            LIGHTFM_BASE, max_sampled=30, item_alpha=1e-6, user_alpha=1e-6, use_item_features=False
        ),
    }
    for name, config in features.items():
        splits = list(inner_splits(data_dir, seeds, config))
        score([evaluate(train_lightfm(i, LIGHTFM_BASE), i, v) for i, v in splits], "lightfm", {"features": name}, rows)
    splits = list(inner_splits(data_dir, seeds, ROUND_ONE_FEATURES))
    for name, params in params_grid.items():
        score([evaluate(train_lightfm(i, params), i, v) for i, v in splits], "lightfm", {"params": name}, rows)
    tune_lightfm_round_two(data_dir, seeds, rows)


def tune_lightfm_round_two(data_dir: Path, seeds: list[int], rows: list[dict]) -> None:
    """Round two around the round-one winner (max_sampled=30, tag_weight=0.5)."""
    winner = replace(LIGHTFM_BASE, max_sampled=30)
    splits = list(inner_splits(data_dir, seeds, replace(ROUND_ONE_FEATURES, max_tags=10)))
    score([evaluate(train_lightfm(i, winner), i, v) for i, v in splits], "lightfm", {"round2": "max_tags=10"}, rows)
    splits = list(inner_splits(data_dir, seeds, ROUND_ONE_FEATURES))
    for name, params in {
        "no_components=32": replace(winner, no_components=32),
        "max_sampled=60": replace(winner, max_sampled=60),
    }.items():
        score([evaluate(train_lightfm(i, params), i, v) for i, v in splits], "lightfm", {"round2": name}, rows)


def tune_blend(data_dir: Path, seeds: list[int], rows: list[dict]) -> None:
    grid = [
        {"lightfm": 1.0},
        {"ease": 1.0},
        {"als": 1.0},
        {"lightfm": 0.3, "ease": 0.7},
        {"lightfm": 0.5, "ease": 0.5},
        {"lightfm": 0.7, "ease": 0.3},
        {"lightfm": 0.5, "als": 0.5},
        {"ease": 0.5, "als": 0.5},
        {"lightfm": 1 / 3, "ease": 1 / 3, "als": 1 / 3},
        {"lightfm": 0.5, "ease": 0.25, "als": 0.25},
    ]
    results: list[list[dict]] = [[] for _ in grid]
    for inner, valid in inner_splits(data_dir, seeds):
        fitted = {"lightfm": train_lightfm(inner, LightFMParams()), "ease": train_ease(inner), "als": train_als(inner)}
        for slot, weights in enumerate(grid):
            results[slot].append(evaluate(blend_models(fitted, weights), inner, valid))
    for weights, values in zip(grid, results, strict=True):
        score(values, "blend", {k: round(v, 3) for k, v in weights.items()}, rows)


def _standardised_scores(model, inner, valid) -> tuple[np.ndarray, np.ndarray, sp.csr_matrix, sp.csr_matrix]:
    """Per-user z-scored scores (as BlendScorer computes them) of the validation users."""
    users = np.flatnonzero(np.diff(valid.interactions.indptr) > 0)
    history = inner.play_counts[users]
    raw = model.scorer
    scores = raw.raw_score(users, history) if isinstance(raw, EaseScorer) else raw.score(users, history)
    return _standardise_rows(scores), users, history, valid.interactions[users]


def tune_blend_grid(data_dir: Path, seeds: list[int], rows: list[dict]) -> None:
    """Blend weights over a simplex (step 0.1) for EASE l2 and ALS factor variants, each component
    fitted once per split and its standardised validation scores reused across weight vectors."""
    components: dict[str, list] = {}
    for inner, valid in inner_splits(data_dir, seeds):
        fitted = {"lightfm": train_lightfm(inner, LightFMParams())}
        fitted.update({f"ease l2={l2:g}": train_ease(inner, EaseParams(l2=l2)) for l2 in (50.0, 100.0, 200.0, 400.0)})
        fitted.update({f"als f={f}": train_als(inner, ALSParams(factors=f)) for f in (24, 48, 96)})
        for name, model in fitted.items():
            components.setdefault(name, []).append(_standardised_scores(model, inner, valid))
        print(f"fitted {', '.join(fitted)}", flush=True)
    steps = [round(0.1 * i, 1) for i in range(11)]
    for ease in [n for n in components if n.startswith("ease")]:
        for als in [n for n in components if n.startswith("als")]:
            for w_l in steps:
                for w_e in steps:
                    w_a = round(1.0 - w_l - w_e, 1)
                    if w_a < 0:
                        continue
                    results = []
                    for split in range(len(seeds)):
                        lf, users, history, relevant = components["lightfm"][split]
                        total = w_l * lf + w_e * components[ease][split][0] + w_a * components[als][split][0]
                        items, _ = top_k(total, 10, exclude=history)
                        metrics = ranking_metrics(items, relevant, 10)
                        results.append(
                            {
                                "precision@10": float(np.nanmean(metrics["precision"])),
                                "ndcg@10": float(np.nanmean(metrics["ndcg"])),
                                "fit_seconds": 0.0,
                            }
                        )
                    config = {"lightfm": w_l, ease: w_e, als: w_a}
                    score(results, "grid", config, rows)


def _reciprocal_rank(scores: np.ndarray, heard: sp.csr_matrix, offset: float = 60.0) -> np.ndarray:
    """1 / (offset + rank) of every item among the user's unheard items (reciprocal-rank fusion)."""
    masked = mask_items(scores.copy(), heard)
    order = np.argsort(-masked, axis=1)
    ranks = np.empty_like(order)
    ranks[np.arange(len(masked))[:, None], order] = np.arange(masked.shape[1])[None, :]
    return (1.0 / (offset + ranks)).astype(np.float32)


def _score_mixes(label: str, mixes: dict[str, np.ndarray], history: sp.csr_matrix, relevant, rows: list[dict]) -> None:
    for name, total in mixes.items():
        items, _ = top_k(total, 10, exclude=history)
        metrics = ranking_metrics(items, relevant, 10)
        values = {
            "precision@10": float(np.nanmean(metrics["precision"])),
            "ndcg@10": float(np.nanmean(metrics["ndcg"])),
            "fit_seconds": 0.0,
        }
        score([values], label, {"mix": name}, rows)


def _component_scores(fit_on, users: np.ndarray, history: sp.csr_matrix) -> dict[str, np.ndarray]:
    """Raw scores of the blend's candidate components (EASE λ 100/200/400, ALS variants), popularity."""
    fitted = {"lightfm": train_lightfm(fit_on, LightFMParams())}
    fitted.update({f"ease{l2:g}": train_ease(fit_on, EaseParams(l2=l2)) for l2 in (100.0, 200.0, 400.0)})
    for factors, reg in ((48, 1.0), (64, 1.0), (48, 10.0)):
        fitted[f"als{factors}r{reg:g}"] = train_als(fit_on, ALSParams(factors=factors, regularization=reg))
    raw = {
        name: m.scorer.raw_score(users, history) if isinstance(m.scorer, EaseScorer) else m.scorer.score(users, history)
        for name, m in fitted.items()
    }
    prior = np.log1p(fit_on.item_user_counts.astype(np.float32))
    raw["popularity"] = np.broadcast_to(prior, (len(users), fit_on.n_items))
    return raw


def _weight_mixes(z: dict[str, np.ndarray], priors: tuple[float, ...]) -> dict[str, np.ndarray]:
    mixes = {}
    for ease in [n for n in z if n.startswith("ease")]:
        for als in [n for n in z if n.startswith("als")]:
            for w_l in (0.6, 0.7, 0.8, 0.9):
                for w_e in (0.0, 0.1, 0.2):
                    w_a = round(1.0 - w_l - w_e, 1)
                    if w_a < 0:
                        continue
                    for w_p in priors:
                        total = w_l * z["lightfm"] + w_e * z[ease] + w_a * z[als] + w_p * z["popularity"]
                        mixes[f"lightfm {w_l} {ease} {w_e} {als} {w_a} popularity {w_p}"] = total
    return mixes


def tune_fusion(data_dir: Path, seeds: list[int], rows: list[dict]) -> None:
    """Finishes the blend grid (EASE λ 200/400, ALS 64 factors or regularisation 10) around the
    chosen weights, and compares z-score fusion with reciprocal-rank fusion (one seed at a time)."""
    for inner, valid in inner_splits(data_dir, seeds):
        users = np.flatnonzero(np.diff(valid.interactions.indptr) > 0)
        history, relevant = inner.play_counts[users], valid.interactions[users]
        raw = _component_scores(inner, users, history)
        served = {name: _standardise_rows(raw[name]) for name in ("lightfm", "ease100", "als48r1")}
        mixes = {
            "blend as served (0.8/0.1/0.1, z over all items)": sum(
                w * served[n] for n, w in (("lightfm", 0.8), ("ease100", 0.1), ("als48r1", 0.1))
            )
        }
        mixes.update({f"alone {name}": mask_items(scores.copy(), history) for name, scores in raw.items()})
        # The grid standardises over the unheard items only (heard items masked first).
        z = {name: _standardise_rows(mask_items(scores.copy(), history)) for name, scores in raw.items()}
        mixes.update(_weight_mixes(z, (0.0,)))
        rr = {name: _reciprocal_rank(raw[name], history) for name in ("lightfm", "ease200", "als48r1")}
        for w_l in (0.6, 0.7, 0.8, 0.9):
            for w_e in (0.0, 0.1, 0.2):
                w_a = round(1.0 - w_l - w_e, 1)
                if w_a >= 0:
                    total = w_l * rr["lightfm"] + w_e * rr["ease200"] + w_a * rr["als48r1"]
                    mixes[f"reciprocal rank: lightfm {w_l} ease200 {w_e} als48r1 {w_a}"] = total
        _score_mixes("fusion", mixes, history, relevant, rows)


def tune_cold(data_dir: Path, seeds: list[int], rows: list[dict]) -> None:
    """Cold-start mixes of the blend's components for new listeners naming five artists, on the
    cold-start split of each tuning seed (10% of users held out whole), never a reporting seed."""
    dataset = load_hetrec_lastfm(data_dir)
    for seed in seeds:
        kept, named, rest = cold_start_split(dataset, fraction=0.1, n_named=5, seed=seed)
        kept = leak_free_side_features(kept, kept.with_interactions(np.zeros(kept.n_interactions, dtype=bool)))
        raw = _component_scores(kept, np.full(named.shape[0], -1), named)
        z = {name: _standardise_rows(scores) for name, scores in raw.items()}
        mixes = {f"alone {name}": scores.copy() for name, scores in raw.items()}
        mixes.update(_weight_mixes(z, (0.0, 0.05, 0.1)))
        _score_mixes(f"cold {seed}", mixes, named, rest, rows)


def _dlae_scores(kept, named: sp.csr_matrix, dropout: float, l2: float, emphasized: bool) -> np.ndarray:
    """(E)DLAE (Steck 2020) on the items with >= 2 listeners: B = (G + Λ)⁻¹ G with
    Λ = diag(p/(1-p) · diag(G)) + λI (DLAE), or with diag(B) = 0 (EDLAE: EASE with that Λ)."""
    active = np.flatnonzero(kept.item_user_counts >= 2)
    x = kept.interactions[:, active].tocsc().astype(np.float64)
    gram = (x.T @ x).toarray()
    penalty = dropout / (1.0 - dropout) * np.diag(gram) + l2
    gram[np.diag_indices_from(gram)] += penalty
    inverse = np.linalg.inv(gram)
    weights = -inverse / np.diag(inverse)[None, :] if emphasized else -inverse * penalty[None, :]
    np.fill_diagonal(weights, 0.0)
    out = np.zeros((named.shape[0], kept.n_items), dtype=np.float32)
    out[:, active] = np.asarray(named[:, active].astype(np.float64) @ weights, dtype=np.float32)
    return out


def tune_cold_models(data_dir: Path, seeds: list[int], rows: list[dict]) -> None:
    """Models trained for the cold-start task itself, added to the served cold-start mix (LightFM
    0.9 + ALS 0.1) with weight taken from LightFM, on each tuning seed's cold-start split: the
    top-artist co-occurrence (``train_cooccurrence``, as served), (E)DLAE with high dropout,
    cosine item-kNN. Prints P@10 and the paired per-listener difference to the mix before."""
    dataset = load_hetrec_lastfm(data_dir)
    for seed in seeds:
        kept, named, rest = cold_start_split(dataset, fraction=0.1, n_named=5, seed=seed)
        kept = leak_free_side_features(kept, kept.with_interactions(np.zeros(kept.n_interactions, dtype=bool)))
        users = np.full(named.shape[0], -1)
        z = {
            "lightfm": _standardise_rows(train_lightfm(kept, LightFMParams()).scorer.score(users, named)),
            "als": _standardise_rows(train_als(kept, ALSParams(factors=48)).scorer.score(users, named)),
        }
        extra: dict[str, np.ndarray] = {}
        for label, params in {
            "cooccurrence (as served)": CooccurrenceParams(),
            "cooccurrence smoothing 0.1": CooccurrenceParams(smoothing=0.1),
            "cooccurrence top 5": CooccurrenceParams(top_k=5),
            "cooccurrence exponent 0.5": CooccurrenceParams(popularity_exponent=0.5),
            "cooccurrence all items, all neighbours": CooccurrenceParams(max_items=None, top_neighbours=10**6),
        }.items():
            extra[label] = train_cooccurrence(kept, params).scorer.raw_score(users, named)
        x = kept.interactions.astype(np.float32)
        listeners = np.maximum(kept.item_user_counts.astype(np.float32), 1.0)
        scaled = named.astype(np.float32) @ sp.diags(1.0 / np.sqrt(listeners))
        extra["item-kNN (cosine)"] = np.asarray((scaled @ (x.T @ x)).todense()) / np.sqrt(listeners)[None, :]
        for dropout, emphasized in ((0.8, False), (0.9, False), (0.9, True)):
            label = f"{'EDLAE' if emphasized else 'DLAE'} p {dropout} λ 100"
            extra[label] = _dlae_scores(kept, named, dropout, 100.0, emphasized)

        def precision(total: np.ndarray, named=named, rest=rest) -> np.ndarray:
            items, _ = top_k(total, 10, exclude=named)
            return ranking_metrics(items, rest, 10)["precision"]

        reference = precision(0.9 * z["lightfm"] + 0.1 * z["als"])
        for label, raw in {"": None, **extra}.items():
            for weight in (0.0,) if raw is None else (0.05, 0.1, 0.2, 1.0):
                if raw is None:
                    total = 0.9 * z["lightfm"] + 0.1 * z["als"]
                elif weight == 1.0:
                    total = raw.copy()
                else:
                    total = (0.9 - weight) * z["lightfm"] + 0.1 * z["als"] + weight * _standardise_rows(raw)
                got = precision(total)
                diff = got - reference
                values = {"precision@10": float(np.nanmean(got)), "ndcg@10": float("nan"), "fit_seconds": 0.0}
                config = {
                    "seed": seed,
                    "added": label or "none (LightFM 0.9 + ALS 0.1)",
                    "weight": "alone" if weight == 1.0 else weight,
                    "paired_diff": round(float(diff.mean()), 4),
                    "paired_se": round(float(diff.std(ddof=1) / np.sqrt(len(diff))), 4),
                }
                score([values], "coldnew", config, rows)


def tune_prior(data_dir: Path, seeds: list[int], rows: list[dict]) -> None:
    """The warm popularity weight of the blend (negative: a penalty), pooled over the seeds, with
    the paired per-user difference to the blend without it; each component fitted once per split
    (two LightFM fits, random states 42 and 43, to see that the gain is not one fit's luck)."""
    weights = {"lightfm": 0.8, "ease": 0.1, "als": 0.1}
    per_fit: dict[int, list[tuple[dict[str, np.ndarray], sp.csr_matrix, sp.csr_matrix]]] = {42: [], 43: []}
    for inner, valid in inner_splits(data_dir, seeds):
        users = np.flatnonzero(np.diff(valid.interactions.indptr) > 0)
        history, relevant = inner.play_counts[users], valid.interactions[users]
        shared = {
            "ease": _standardise_rows(train_ease(inner, EaseParams()).scorer.raw_score(users, history)),
            "als": _standardise_rows(train_als(inner, ALSParams(factors=48)).scorer.score(users, history)),
            "popularity": _standardise_rows(
                np.broadcast_to(np.log1p(inner.item_user_counts.astype(np.float32)), (len(users), inner.n_items))
            ),
        }
        for state in per_fit:
            lightfm = train_lightfm(inner, LightFMParams(random_state=state)).scorer.score(users, history)
            per_fit[state].append(({**shared, "lightfm": _standardise_rows(lightfm)}, history, relevant))

    def precision(splits, prior: float) -> np.ndarray:
        values = []
        for z, history, relevant in splits:
            total = sum(w * z[n] for n, w in weights.items()) + prior * z["popularity"]
            items, _ = top_k(total, 10, exclude=history)
            values.append(ranking_metrics(items, relevant, 10)["precision"])
        return np.concatenate(values)

    for state, splits in per_fit.items():
        reference = precision(splits, 0.0)
        for prior in (0.0, -0.1, -0.2, -0.25, -0.3, -0.4, -0.5, -0.7, 0.1):
            got = precision(splits, prior)
            diff = (got - reference)[np.isfinite(got - reference)]
            se = float(diff.std(ddof=1) / np.sqrt(len(diff)))
            values = {"precision@10": float(np.nanmean(got)), "ndcg@10": float("nan"), "fit_seconds": 0.0}
            score(
                [values],
                "prior",
                {
                    "lightfm_random_state": state,
                    "popularity": prior,
                    "paired_diff": round(float(diff.mean()), 4),
                    "paired_se": round(se, 4),
                },
                rows,
            )


def _tag_similarity(kept, named: sp.csr_matrix) -> np.ndarray:
    """Content score: tf-idf cosine between the named artists' tag profile and every artist, from
    the kept listeners' leak-free tag features (the ``tag:`` columns of ``item_features``)."""
    names = kept.item_feature_names.astype(str)
    tags = kept.item_features.tocsc()[:, np.flatnonzero(np.char.startswith(names, "tag:"))].tocsr()
    carriers = np.asarray((tags > 0).sum(axis=0)).ravel()
    tags = tags @ sp.diags(np.log((1.0 + tags.shape[0]) / (1.0 + carriers)).astype(np.float32))
    norms = np.sqrt(np.asarray(tags.multiply(tags).sum(axis=1)).ravel())
    tags = sp.diags(1.0 / np.where(norms > 0, norms, 1.0)) @ tags
    return np.asarray(((named.astype(np.float32) @ tags) @ tags.T).todense(), dtype=np.float32)


def _favourites_lightfm(kept, named: sp.csr_matrix, top: int = 10, epochs: int = 10) -> np.ndarray:
    """LightFM (the served hyperparameters) whose listeners are represented by their ``top`` most
    played artists (user features = mean of those, no user id): trained for the input a new
    listener gives; the fold-in is the mean of the named artists' user-feature embeddings."""

    def mean_rows(matrix: sp.csr_matrix) -> sp.csr_matrix:
        sums = np.asarray(matrix.sum(axis=1)).ravel()
        return sp.csr_matrix(sp.diags(1.0 / np.where(sums > 0, sums, 1.0)) @ matrix.astype(np.float32))

    params = LightFMParams()
    estimator = new_estimator(params)
    estimator.fit(
        kept.interactions.tocoo(),
        user_features=mean_rows(top_items_per_user(kept.play_counts, top)),
        item_features=kept.item_features,
        epochs=epochs,
        num_threads=params.num_threads,
    )
    bias, items = estimator.get_item_representations(kept.item_features)
    _, users = estimator.get_user_representations(mean_rows(named))
    return np.asarray(users @ items.T + bias[None, :], dtype=np.float32)


def _named_rows(named: sp.csr_matrix):
    for row in range(named.shape[0]):
        yield named.indices[named.indptr[row] : named.indptr[row + 1]]


def tune_cold_mix(data_dir: Path, seeds: list[int], rows: list[dict]) -> None:
    """Round two of the cold-start mix (2026-12-07), pooled over the cold-start splits of the
    given tuning seeds, paired per listener against the served mix (LightFM 0.8 + ALS 0.1 +
    top-artist co-occurrence 0.1, z-scores over all items): a weight grid including EASE and the
    popularity prior; rank-based and top-n z-score normalisations; the named artists weighted by
    inverse popularity; LightFM's fold-in aggregated per named artist; tag similarity; a prior
    against artists that are usually a favourite (an unnamed artist is one played less than the
    named five); a LightFM trained on listeners' top 10 artists as user features."""
    dataset = load_hetrec_lastfm(data_dir)
    blend = BlendParams()
    splits = []
    for seed in seeds:
        kept, named, rest = cold_start_split(dataset, fraction=0.1, n_named=5, seed=seed)
        kept = leak_free_side_features(kept, kept.with_interactions(np.zeros(kept.n_interactions, dtype=bool)))
        users = np.full(named.shape[0], -1)
        # The mix served in round two folded new listeners into LightFM by the mean (FactorScorer).
        lightfm = replace(train_lightfm(kept, blend.lightfm).scorer, fold_in="mean")
        norms = np.linalg.norm(lightfm.user_vectors, axis=1)
        typical_norm = float(np.median(norms[norms > 0]))  # the mean fold-in's length (FactorScorer)
        cooccurrence = train_cooccurrence(kept, blend.cooccurrence).scorer
        pop = kept.item_user_counts.astype(np.float64)
        favoured = np.asarray(top_items_per_user(kept.play_counts, 5).sum(axis=0)).ravel()
        raw = {
            "lightfm": lightfm.score(users, named),
            "als": train_als(kept, blend.als).scorer.score(users, named),
            "cooccurrence": cooccurrence.raw_score(users, named),
            "ease": train_ease(kept, blend.ease).scorer.raw_score(users, named),
            "popularity": np.broadcast_to(np.log1p(pop).astype(np.float32), (len(users), kept.n_items)),
            # log(1 - share of j's listeners with j in their top 5), shrunk towards 0.1 by one listener
            "not favourite": np.broadcast_to(
                np.log1p(-np.minimum((favoured + 0.1) / (pop + 1.0), 0.99)).astype(np.float32),
                (len(users), kept.n_items),
            ),
            "tags": _tag_similarity(kept, named),
            "favourites lightfm": _favourites_lightfm(kept, named),
        }
        for exponent in (0.25, 0.5):
            weighted = sp.csr_matrix(named.astype(np.float32) @ sp.diags(np.maximum(pop, 1.0) ** -exponent))
            weighted = sp.csr_matrix(weighted.multiply(1.0 / weighted.sum(axis=1)))
            vectors = np.asarray(weighted @ lightfm.item_embeddings, dtype=np.float32)
            vectors *= typical_norm / np.linalg.norm(vectors, axis=1, keepdims=True)
            raw[f"lightfm idf {exponent}"] = vectors @ lightfm.item_embeddings.T + lightfm.item_bias[None, :]
            expanded = np.zeros((len(users), kept.n_items), dtype=np.float32)
            expanded[:, cooccurrence.active_items] = (
                weighted[:, cooccurrence.active_items] @ cooccurrence.weights
            ).toarray()
            raw[f"cooccurrence idf {exponent}"] = expanded
        per_named = []
        for items in _named_rows(named):
            vectors = lightfm.item_embeddings[items]
            vectors = vectors / np.linalg.norm(vectors, axis=1, keepdims=True) * typical_norm
            per_named.append(_standardise_rows(vectors @ lightfm.item_embeddings.T + lightfm.item_bias[None, :]))
        raw["lightfm per-named mean"] = np.stack([z.mean(axis=0) for z in per_named])
        raw["lightfm per-named max"] = np.stack([z.max(axis=0) for z in per_named])
        z = {name: _standardise_rows(np.array(scores)) for name, scores in raw.items()}
        z["lightfm gauss-rank"] = _gauss_rank(raw["lightfm"])
        z["als gauss-rank"] = _gauss_rank(raw["als"])
        z["cooccurrence gauss-rank"] = _gauss_rank(raw["cooccurrence"])
        for n in (500, 2000):
            for name in ("lightfm", "als", "cooccurrence"):
                z[f"{name} ztop{n}"] = _standardise_top(raw[name], n)
        splits.append((z, named, rest))
        print(f"coldmix: seed {seed} fitted ({named.shape[0]} new listeners)", flush=True)

    def precision(weights: dict[str, float]) -> np.ndarray:
        values = []
        for z, named, rest in splits:
            total = sum(w * z[name] for name, w in weights.items() if w)
            items, _ = top_k(np.ascontiguousarray(total, dtype=np.float32), 10, exclude=named)
            values.append(ranking_metrics(items, rest, 10)["precision"])
        return np.concatenate(values)

    served = {"lightfm": 0.8, "als": 0.1, "cooccurrence": 0.1}
    reference = precision(served)
    mixes: dict[str, dict[str, float]] = {"served: lightfm 0.8 als 0.1 cooccurrence 0.1": served}
    for suffix in (" gauss-rank", " ztop500", " ztop2000"):
        for wl, wa, wc in ((0.8, 0.1, 0.1), (0.6, 0.2, 0.2), (0.5, 0.2, 0.3)):
            mixes[f"normalised by{suffix}: {wl} / {wa} / {wc}"] = {
                f"lightfm{suffix}": wl,
                f"als{suffix}": wa,
                f"cooccurrence{suffix}": wc,
            }
    for exponent in (0.25, 0.5):
        mixes[f"named weighted by popularity^-{exponent}: lightfm"] = {
            **served,
            "lightfm": 0,
            f"lightfm idf {exponent}": 0.8,
        }
        mixes[f"named weighted by popularity^-{exponent}: co-occurrence"] = {
            **served,
            "cooccurrence": 0,
            f"cooccurrence idf {exponent}": 0.1,
        }
    for how in ("mean", "max"):
        mixes[f"lightfm per named artist, {how} of z-scores"] = {
            **served,
            "lightfm": 0,
            f"lightfm per-named {how}": 0.8,
        }
    for weight in (0.05, 0.1):
        mixes[f"tag similarity {weight} from lightfm"] = {**served, "lightfm": 0.8 - weight, "tags": weight}
    for weight in (0.05, 0.1, 0.2):
        mixes[f"not-a-favourite prior {weight}"] = {**served, "not favourite": weight}
    mixes["favourites lightfm alone"] = {"favourites lightfm": 1.0}
    for weight in (0.2, 0.3, 0.4):
        mixes[f"favourites lightfm {weight} from lightfm"] = {
            **served,
            "lightfm": 0.8 - weight,
            "favourites lightfm": weight,
        }
    mixes["favourites lightfm 0.3 + tags 0.05 from lightfm"] = {
        **served,
        "lightfm": 0.45,
        "favourites lightfm": 0.3,
        "tags": 0.05,
    }
    grid = {}
    for wl in (0.6, 0.7, 0.8, 0.9):
        for wa in (0.05, 0.1, 0.15, 0.2):
            for wc in (0.05, 0.1, 0.15, 0.2):
                for we in (0.0, 0.05):
                    for wp in (-0.1, 0.0, 0.05):
                        weights = {"lightfm": wl, "als": wa, "cooccurrence": wc, "ease": we, "popularity": wp}
                        grid[f"grid: lightfm {wl} als {wa} cooccurrence {wc} ease {we} popularity {wp}"] = weights

    def report(label: str, weights: dict[str, float], quiet: bool = False) -> dict:
        got = precision(weights)
        diff = (got - reference)[np.isfinite(got - reference)]
        values = {"precision@10": float(np.nanmean(got)), "ndcg@10": float("nan"), "fit_seconds": 0.0}
        config = {
            "seeds": seeds,
            "mix": label,
            "paired_diff": round(float(diff.mean()), 4),
            "paired_se": round(float(diff.std(ddof=1) / np.sqrt(len(diff))), 4),
        }
        if quiet:
            rows.append({"stage": "coldmix", "config": config, **values})
        else:
            score([values], "coldmix", config, rows)
        return config

    for label, weights in mixes.items():
        report(label, weights)
    ranked = sorted((report(label, w, quiet=True) for label, w in grid.items()), key=lambda c: -c["paired_diff"])
    print(f"coldmix: weight grid, {len(ranked)} mixes; the best ten:")
    for config in ranked[:10]:
        print(f"    {config['mix']}: paired {config['paired_diff']:+.4f} ± {config['paired_se']:.4f}")


def _named_ranks(dataset, seed: int, named: sp.csr_matrix) -> sp.csr_matrix:
    """``named`` with each listener's naming order as data (1 = most played), by the very rule
    ``cold_start_split`` uses to pick the named artists (most played first, ties by item index)."""
    _, held = split_users(dataset, fraction=0.1, seed=seed)
    counts = held.play_counts
    rows, cols, ranks = [], [], []
    for row, user in enumerate(np.flatnonzero(np.diff(counts.indptr) > 5)):
        lo, hi = counts.indptr[user], counts.indptr[user + 1]
        items, plays = counts.indices[lo:hi], counts.data[lo:hi]
        first = items[np.lexsort((items, -plays))[:5]]
        rows += [row] * len(first)
        cols += list(first)
        ranks += list(range(1, len(first) + 1))
    ranked = sp.csr_matrix((np.asarray(ranks, np.float32), (rows, cols)), shape=named.shape)
    if (ranked != 0).sum() != named.nnz or ((ranked != 0) != (named != 0)).nnz:
        raise AssertionError("the naming order does not match cold_start_split's named artists")
    return ranked


def _mean_fold_in(lightfm, weights: sp.csr_matrix, norm: float) -> np.ndarray:
    """LightFM's cold-start fold-in (``FactorScorer``, the mean of the named items' embeddings at
    the typical user norm) with per-item ``weights``."""
    weights = sp.csr_matrix(weights.multiply(1.0 / weights.sum(axis=1)))
    vectors = np.asarray(weights @ lightfm.item_embeddings, dtype=np.float32)
    vectors *= norm / np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors @ lightfm.item_embeddings.T + lightfm.item_bias[None, :]


def _naive_bayes(kept, named: sp.csr_matrix, smoothing: float, prior_power: float) -> np.ndarray:
    """Σ over the named artists i of log P(j in a library | i among its 10 most played), smoothed
    towards P(j) by ``smoothing`` listeners, minus ``prior_power`` × (named count) × log P(j)."""
    library = kept.interactions.astype(np.float32).tocsr()
    library.data[:] = 1.0
    favourites = top_items_per_user(kept.play_counts, 10)
    sources = np.unique(named.indices)
    together = np.asarray((favourites[:, sources].T @ library).todense(), dtype=np.float64)
    favoured = np.asarray(favourites[:, sources].sum(axis=0)).ravel().astype(np.float64)
    base = (np.asarray(library.sum(axis=0)).ravel() + 0.5) / (library.shape[0] + 1.0)
    log_conditional = np.log((together + smoothing * base[None, :]) / (favoured[:, None] + smoothing))
    slot = {item: k for k, item in enumerate(sources)}
    out = np.zeros(named.shape, dtype=np.float32)
    for row, items in enumerate(_named_rows(named)):
        picked = [slot[i] for i in items]
        out[row] = log_conditional[picked].sum(axis=0) - prior_power * len(picked) * np.log(base)
    return out


def _ease_scores(kept, named: sp.csr_matrix, l2: float) -> np.ndarray:
    """EASE with ``l2`` over the items with ≥ 2 training listeners (dense weights), zero elsewhere."""
    active = np.flatnonzero(kept.item_user_counts >= 2)
    library = kept.interactions[:, active].astype(np.float32).tocsr()
    library.data[:] = 1.0
    out = np.zeros(named.shape, dtype=np.float32)
    out[:, active] = named[:, active].astype(np.float32) @ _ease_weights(library, l2)
    return out


# The mix the coldthree stage's greedy search chose on tuning seeds 101-104 (2026-12-08), scored
# unchanged on any other seeds as the round's one pre-declared candidate.
COLDTHREE_TUNING_SEEDS = (101, 102, 103, 104)
COLDTHREE_CANDIDATE = {"softmax fold-in": 0.8, "als": 0.15, "cooccurrence": 0.1, "tags": 0.05}


def tune_cold_three(data_dir: Path, seeds: list[int], rows: list[dict]) -> None:
    """Round three of the cold start (2026-12-08), pooled over the cold-start splits of the given
    seeds, paired per listener against the path served before it (LightFM's mean fold-in; LightFM
    0.8 + ALS 0.1 + top-artist co-occurrence 0.1): the naming order of the five artists (most
    played first, and a shuffled control), a softmax fold-in of the LightFM user vector, LightFM
    item-item cosine, popularity damping per component, a naive-Bayes combination of the
    top-artist co-occurrence, a prior scaled by how popular the named artists are, EASE with a
    larger λ, a greedy forward selection over them (tuning seeds only) and
    ``COLDTHREE_CANDIDATE``, the mix that selection chose."""
    dataset = load_hetrec_lastfm(data_dir)
    blend = BlendParams()
    rng = np.random.default_rng(0)
    splits = []
    for seed in seeds:
        kept, named, rest = cold_start_split(dataset, fraction=0.1, n_named=5, seed=seed)
        ranks = _named_ranks(dataset, seed, named)
        shuffled = ranks.copy()
        for row in range(shuffled.shape[0]):
            lo, hi = shuffled.indptr[row], shuffled.indptr[row + 1]
            shuffled.data[lo:hi] = rng.permutation(shuffled.data[lo:hi])
        kept = leak_free_side_features(kept, kept.with_interactions(np.zeros(kept.n_interactions, dtype=bool)))
        users = np.full(named.shape[0], -1)
        served_lightfm = train_lightfm(kept, blend.lightfm).scorer
        # The reference is the mix served before this round: LightFM's mean fold-in.
        lightfm = replace(served_lightfm, fold_in="mean")
        norms = np.linalg.norm(lightfm.user_vectors, axis=1)
        typical_norm = float(np.median(norms[norms > 0]))
        cooccurrence = train_cooccurrence(kept, blend.cooccurrence).scorer

        def cooccurrence_input(weights: sp.csr_matrix, cooccurrence=cooccurrence) -> np.ndarray:
            out = np.zeros(weights.shape, dtype=np.float32)
            out[:, cooccurrence.active_items] = (
                weights[:, cooccurrence.active_items].astype(np.float32) @ cooccurrence.weights
            ).toarray()
            return out

        pop = kept.item_user_counts.astype(np.float64)
        unit = lightfm.item_embeddings / np.linalg.norm(lightfm.item_embeddings, axis=1, keepdims=True)
        raw = {
            "lightfm": lightfm.score(users, named),
            "als": train_als(kept, blend.als).scorer.score(users, named),
            "cooccurrence": cooccurrence.raw_score(users, named),
            "ease": train_ease(kept, blend.ease).scorer.raw_score(users, named),
            "popularity": np.broadcast_to(np.log1p(pop).astype(np.float32), (len(users), kept.n_items)),
            "tags": _tag_similarity(kept, named),
            "softmax fold-in": replace(lightfm, fold_in="softmax", fold_in_l2=1.0).score(users, named),
            "softmax fold-in l2 0.3": replace(lightfm, fold_in="softmax", fold_in_l2=0.3).score(users, named),
            "lightfm cosine": np.asarray(named @ unit) @ unit.T,
            "naive bayes": _naive_bayes(kept, named, 50.0, 0.6),
            "ease 1000": _ease_scores(kept, named, 1000.0),
        }
        for label, order in (("order", ranks), ("shuffled", shuffled)):
            for power in (0.5, 1.0):
                weights = order.copy()
                weights.data = weights.data**-power
                raw[f"lightfm {label}^-{power}"] = _mean_fold_in(lightfm, weights, typical_norm)
                raw[f"cooccurrence {label}^-{power}"] = cooccurrence_input(weights)
        z = {name: _standardise_rows(np.array(scores)) for name, scores in raw.items()}
        for name in ("lightfm", "als", "cooccurrence", "ease"):
            z[f"{name} damped"] = _standardise_rows(z[name] - 0.1 * z["popularity"])
        log_pop = np.log1p(pop)
        seed_pop = np.asarray(named @ ((log_pop - log_pop.mean()) / log_pop.std())).ravel() / 5
        splits.append((z, named, rest, seed_pop))
        print(f"coldthree: seed {seed} fitted ({named.shape[0]} new listeners)", flush=True)
    mean_seed_pop = float(np.mean(np.concatenate([s[3] for s in splits])))

    def precision(weights: dict[str, float], adaptive: float = 0.0) -> np.ndarray:
        values = []
        for z, named, rest, seed_pop in splits:
            total = sum(w * z[name] for name, w in weights.items() if w)
            if adaptive:
                total = total + adaptive * (seed_pop - mean_seed_pop)[:, None] * z["popularity"]
            items, _ = top_k(np.ascontiguousarray(total, dtype=np.float32), 10, exclude=named)
            values.append(ranking_metrics(items, rest, 10)["precision"])
        return np.concatenate(values)

    served = {"lightfm": 0.8, "als": 0.1, "cooccurrence": 0.1}
    reference = precision(served)
    sizes = [s[1].shape[0] for s in splits]

    def report(label: str, weights: dict[str, float], adaptive: float = 0.0, quiet: bool = False) -> dict:
        got = precision(weights, adaptive)
        diff = got - reference
        per_seed = [float(np.nanmean(part)) for part in np.split(diff, np.cumsum(sizes)[:-1])]
        values = {"precision@10": float(np.nanmean(got)), "ndcg@10": float("nan"), "fit_seconds": 0.0}
        config = {
            "seeds": seeds,
            "mix": label,
            "per_user_se": round(float(np.nanstd(got, ddof=1) / np.sqrt(len(got))), 4),
            "paired_diff": round(float(np.nanmean(diff)), 4),
            "paired_se": round(float(np.nanstd(diff, ddof=1) / np.sqrt(len(diff))), 4),
            "paired_per_seed": [round(x, 4) for x in per_seed],
        }
        if quiet:
            rows.append({"stage": "coldthree", "config": config, **values})
        else:
            score([values], "coldthree", config, rows)
        return config

    report("served: lightfm 0.8 als 0.1 cooccurrence 0.1", served)
    report("popularity", {"popularity": 1.0})
    for label in ("order", "shuffled"):
        for power in (0.5, 1.0):
            report(
                f"named artists weighted by naming {label} rank^-{power}: lightfm and co-occurrence",
                {
                    **served,
                    "lightfm": 0,
                    "cooccurrence": 0,
                    f"lightfm {label}^-{power}": 0.8,
                    f"cooccurrence {label}^-{power}": 0.1,
                },
            )
    report("softmax fold-in (l2 1) instead of the mean fold-in", {**served, "lightfm": 0, "softmax fold-in": 0.8})
    report(
        "softmax fold-in (l2 0.3) instead of the mean fold-in", {**served, "lightfm": 0, "softmax fold-in l2 0.3": 0.8}
    )
    report("softmax fold-in (l2 0.3) alone", {"softmax fold-in l2 0.3": 1.0})
    report("LightFM alone, mean fold-in", {"lightfm": 1.0})
    report("LightFM alone, softmax fold-in (l2 1)", {"softmax fold-in": 1.0})
    report("lightfm item cosine 0.1 from lightfm", {**served, "lightfm": 0.7, "lightfm cosine": 0.1})
    report("lightfm item cosine instead of lightfm", {**served, "lightfm": 0, "lightfm cosine": 0.8})
    for name in ("lightfm", "als", "cooccurrence"):
        report(f"{name} damped by 0.1 z(log popularity)", {**served, name: 0, f"{name} damped": served[name]})
    report("ease damped by 0.1 z(log popularity), 0.05 added", {**served, "ease damped": 0.05})
    report(
        "naive bayes (smoothing 50, prior power 0.6) 0.2 from lightfm", {**served, "lightfm": 0.6, "naive bayes": 0.2}
    )
    report("naive bayes alone", {"naive bayes": 1.0})
    report("EASE λ 1000 0.1 from lightfm", {**served, "lightfm": 0.7, "ease 1000": 0.1})
    report("EASE λ 1000 alone", {"ease 1000": 1.0})
    for adaptive in (0.05, 0.1, -0.05):
        report(f"popularity prior {adaptive} × (named artists' popularity − mean)", served, adaptive=adaptive)
    report(
        "the round's candidate: " + ", ".join(f"{n} {w}" for n, w in COLDTHREE_CANDIDATE.items()), COLDTHREE_CANDIDATE
    )
    if not set(seeds) <= set(COLDTHREE_TUNING_SEEDS):
        return  # other seeds confirm the pre-declared candidate: nothing is selected on them
    current, best = dict(served), 0.0
    options = {
        "ease damped": (0.05, 0.1),
        "lightfm cosine": (0.05, 0.1),
        "naive bayes": (0.1, 0.2),
        "tags": (0.05, 0.1),
        "popularity": (-0.05, -0.1),
        "als": (0.05, 0.15),
        "cooccurrence": (0.05, 0.15),
    }
    for step in range(4):
        trials = []
        for name, values in options.items():
            for value in values:
                for base in ("lightfm", "softmax fold-in"):
                    weights = {**current, name: value}
                    if base == "softmax fold-in" and "lightfm" in weights:
                        weights["softmax fold-in"] = weights.pop("lightfm")
                    trials.append((report(f"greedy step {step}: {weights}", weights, quiet=True), weights))
        config, weights = max(trials, key=lambda t: t[0]["paired_diff"])
        print(
            f"coldthree: greedy step {step}: {weights} paired {config['paired_diff']:+.4f} ± {config['paired_se']:.4f}"
        )
        if config["paired_diff"] <= best + 0.0005:
            break
        current, best = weights, config["paired_diff"]


def _gauss_rank(scores: np.ndarray) -> np.ndarray:
    """Each row's ranks mapped to standard normal quantiles (a rank-based normalisation)."""
    from scipy.special import ndtri

    order = np.argsort(-scores, axis=1, kind="stable")
    ranks = np.empty_like(order)
    ranks[np.arange(len(scores))[:, None], order] = np.arange(scores.shape[1])[None, :]
    return (-ndtri((ranks + 0.5) / scores.shape[1])).astype(np.float32)


def _standardise_top(scores: np.ndarray, n: int) -> np.ndarray:
    """z-scores with the mean and spread of each row's ``n`` best items (the head that is ranked)."""
    head = -np.partition(-scores, n - 1, axis=1)[:, :n]
    spread = head.std(axis=1, keepdims=True)
    return ((scores - head.mean(axis=1, keepdims=True)) / np.where(spread > 0, spread, 1.0)).astype(np.float32)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--seeds", default="101,102", help="outer split seeds (keep them apart from 7,8,9)")
    parser.add_argument(
        "--stage",
        default="all",
        choices=[
            "all",
            "ease",
            "als",
            "lightfm",
            "blend",
            "grid",
            "fusion",
            "cold",
            "coldnew",
            "coldmix",
            "coldthree",
            "prior",
        ],
    )
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    if set(seeds) & {7, 8, 9, 11, 12, 13}:
        print("seeds 7, 8, 9 and 11, 12, 13 are reporting seeds; tune on others", file=sys.stderr)
        return 2
    rows: list[dict] = []
    started = time.perf_counter()
    stages = ["ease", "als", "lightfm", "blend"] if args.stage == "all" else [args.stage]
    for stage in stages:
        stage_functions = {
            "ease": tune_ease,
            "als": tune_als,
            "lightfm": tune_lightfm,
            "blend": tune_blend,
            "grid": tune_blend_grid,
            "fusion": tune_fusion,
            "cold": tune_cold,
            "coldnew": tune_cold_models,
            "coldmix": tune_cold_mix,
            "coldthree": tune_cold_three,
            "prior": tune_prior,
        }
        stage_functions[stage](args.data_dir, seeds, rows)
    print(f"total {time.perf_counter() - started:.0f}s")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
