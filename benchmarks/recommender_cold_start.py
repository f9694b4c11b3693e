"""Cold-start quality on HetRec Last.fm 2K: new listeners who name five artists.

Protocol per seed: 10% of users are held out entirely; models train on the other 90%. Each
held-out listener "names" their five most-played artists (``cold_start_split``); the model folds
those in (LightFM: mean of the named items' feature-based representations; EASE: named items ×
item weights; ALS: least-squares user factors) and ranks all other artists; the listener's
remaining artists are the relevant set; a blend mixes them with its cold-start weights
(``BlendParams.cold_start_weights``), exactly as ``recommend_cold_start`` serves a new listener.
``production`` is what the pipeline publishes by default
(``training.train_production``: its candidates selected on the stable hold-out of the kept users'
data, the winner refitted on all of it). Tag features never include the new listeners' tag
assignments. Reported: P@10 / NDCG@10 (mean ± std over seeds), the per-user standard error, the
ratio to popularity (targets: ≥ 1.5×; the production model ≥ 2.5×) and the paired per-listener
difference to popularity. ``production-previous-mix`` is the same served model with the cold-start
path it had before round three (LightFM's mean fold-in; LightFM 0.8 + ALS 0.1 + top-artist
co-occurrence 0.1, no tag similarity); with both, each seed also prints their paired difference.
``--models`` measures a subset (popularity always).

    .venv/bin/python benchmarks/recommender_cold_start.py \
        --data-dir /work/shared/data/hetrec2011-lastfm-2k --seeds 11,12,13 \
        [--models popularity,production,production-previous-mix]
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from music_platform.recommender.cold_start import cold_start_split, evaluate_cold_start
from music_platform.recommender.hetrec import leak_free_side_features, load_hetrec_lastfm
from music_platform.recommender.lightfm_model import train_lightfm
from music_platform.recommender.models import (
    TrainedModel,
    train_als,
    train_cooccurrence,
    train_ease,
    train_popularity,
    train_tag_similarity,
)
from music_platform.recommender.training import (
    PRODUCTION,
    BlendParams,
    blend_models,
    train_production,
    with_cold_start_weights,
)

MODELS = ("popularity", "als", "ease", "lightfm", "blend", "production", "production-previous-mix")
# The cold-start path before round three (2026-12-08): measured on the production model's own
# fitted components, so the paired difference isolates the fold-in and the mix.
PREVIOUS_COLD_MIX = {"lightfm": 0.8, "als": 0.1, "cooccurrence": 0.1}


def previous_cold_start(served: TrainedModel) -> TrainedModel:
    """``served`` with round two's cold start: the previous mix, LightFM folding in by the mean."""
    variant = with_cold_start_weights(served, PREVIOUS_COLD_MIX)
    scorer = variant.scorer
    components = [
        replace(c, fold_in="mean") if name == "lightfm" else c
        for name, c in zip(scorer.names, scorer.components, strict=True)
    ]
    variant.scorer = replace(scorer, components=components)
    return variant


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--seeds", default="7,8,9")
    parser.add_argument("--fraction", type=float, default=0.1, help="share of users held out entirely")
    parser.add_argument("--named", type=int, default=5, help="artists each new listener names")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument(
        "--models",
        default=",".join(MODELS),
        help=f"comma-separated subset of {','.join(MODELS)} (popularity is always measured: it is the reference)",
    )
    args = parser.parse_args(argv)
    chosen = ["popularity", *(m.strip() for m in args.models.split(",") if m.strip() and m.strip() != "popularity")]
    unknown = sorted(set(chosen) - set(MODELS))
    if unknown:
        parser.error(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(MODELS)}")
    dataset = load_hetrec_lastfm(args.data_dir)
    blend = BlendParams()
    results: dict[str, list[dict]] = {}
    started = time.perf_counter()
    for seed in (int(s) for s in args.seeds.split(",")):
        kept, named, rest = cold_start_split(dataset, fraction=args.fraction, n_named=args.named, seed=seed)
        # The new listeners' tag assignments are never seen (their users have no training pairs).
        kept = leak_free_side_features(kept, kept.with_interactions(np.zeros(kept.n_interactions, dtype=bool)))
        trainers = {
            "popularity": lambda data=kept: train_popularity(data),
            "als": lambda data=kept: train_als(data, blend.als),
            "ease": lambda data=kept: train_ease(data, blend.ease),
            "lightfm": lambda data=kept: train_lightfm(data, blend.lightfm),
            "cooccurrence": lambda data=kept: train_cooccurrence(data, blend.cooccurrence),
            "tags": lambda data=kept: train_tag_similarity(data, blend.tags),
        }
        fitted = {name: trainers[name]() for name in chosen if name in trainers}
        if "blend" in chosen:  # the blend's components at its own params, reusing fits where they agree
            blend_parts = {n: fitted.get(n) or trainers[n]() for n in blend.components()}
            fitted["blend"] = blend_models(blend_parts, blend.weights, blend.cold_start_weights)
        if {"production", "production-previous-mix"} & set(chosen):
            selection, _, served = train_production(kept, PRODUCTION)
            print(f"seed {seed}: production selected {selection.winner}", flush=True)
            if "production" in chosen:
                fitted["production"] = served
            if "production-previous-mix" in chosen and served.kind == "blend":
                fitted["production-previous-mix"] = previous_cold_start(served)
        seed_precision: dict[str, np.ndarray] = {}
        for name, model in fitted.items():
            per_user: dict[str, np.ndarray] = {}
            results.setdefault(name, []).append(evaluate_cold_start(model, named, rest, k=args.k, per_user=per_user))
            precision = seed_precision[name] = per_user[f"precision@{args.k}"]
            results[name][-1]["stderr"] = float(np.nanstd(precision, ddof=1) / np.sqrt(len(precision)))
        # Paired per-listener difference to popularity (the same new listeners): the ratio's uncertainty.
        for name, precision in seed_precision.items():
            diff = precision - seed_precision["popularity"]
            results[name][-1]["paired"] = float(np.nanmean(diff))
            results[name][-1]["paired_se"] = float(np.nanstd(diff, ddof=1) / np.sqrt(np.sum(~np.isnan(diff))))
        if {"production", "production-previous-mix"} <= set(seed_precision):
            diff = seed_precision["production"] - seed_precision["production-previous-mix"]
            se = float(np.nanstd(diff, ddof=1) / np.sqrt(np.sum(~np.isnan(diff))))
            print(f"seed {seed}: production − previous cold-start mix, paired ΔP {np.nanmean(diff):+.4f} ± {se:.4f}")
        print(f"seed {seed}: {named.shape[0]} new listeners, each naming {args.named} artists", flush=True)
    key_p, key_n = f"precision@{args.k}", f"ndcg@{args.k}"
    base = np.mean([r[key_p] for r in results["popularity"]])
    print(
        f"{'model':12s} {key_p:>17s} {'P per-user SE':>13s} {key_n:>17s} {'× popularity':>13s}"
        f" {'ΔP vs popularity (paired SE)':>29s}"
    )
    for name, values in results.items():
        p = np.array([r[key_p] for r in values])
        n = np.array([r[key_n] for r in values])
        stderr = float(np.mean([r["stderr"] for r in values]))
        print(
            f"{name:12s} {p.mean():.4f} ± {p.std(ddof=1) if len(p) > 1 else 0:.4f}  {stderr:13.4f} "
            f"{n.mean():.4f} ± {n.std(ddof=1) if len(n) > 1 else 0:.4f}  {p.mean() / base:12.2f}×"
            f" {np.mean([r['paired'] for r in values]):+20.4f} ± {np.mean([r['paired_se'] for r in values]):.4f}"
        )
    print(f"total {time.perf_counter() - started:.0f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
