"""End-to-end recommender time at demo size: build → split → train → evaluate → refit → score.

A synthetic world shaped like the demo's marts (``--users`` listeners, ``--tracks`` tracks with
genres, tags and audio features, ``--per-user`` distinct tracks per listener) goes through
exactly the calls the ``ml`` assets make, each timed. The demo must do all of it in well under a
minute on 2 cores.

    .venv/bin/python benchmarks/recommender_training.py --users 2000 --tracks 10000 --per-user 60
"""

from __future__ import annotations

import argparse
import time

from music_platform.recommender import (
    LightFMParams,
    build_dataset,
    dataset_stats,
    evaluate_models,
    metrics_dict,
    recommend_top_k,
    should_publish,
    similar_items,
    split_holdout,
    train_lightfm,
    train_popularity,
)
from music_platform.recommender.lightfm_model import refit_params
from music_platform.recommender.synthetic import taste_clusters


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--tracks", type=int, default=10_000)
    parser.add_argument("--per-user", type=int, default=60)
    parser.add_argument("--clusters", type=int, default=20)
    parser.add_argument("--no-refit", action="store_true", help="keep the early-stopping snapshot (half the training)")
    args = parser.parse_args(argv)
    artists_per_cluster = 25
    tracks_per_artist = max(1, args.tracks // (args.clusters * artists_per_cluster))
    world = taste_clusters(
        n_users=args.users,
        n_clusters=args.clusters,
        artists_per_cluster=artists_per_cluster,
        tracks_per_artist=tracks_per_artist,
        tracks_per_user=args.per_user,
        seed=0,
    )
    params = LightFMParams(refit_on_full=not args.no_refit)
    timings: dict[str, float] = {}

    def timed(label: str, function):
        started = time.perf_counter()
        value = function()
        timings[label] = time.perf_counter() - started
        print(f"{label:28s} {timings[label]:6.1f}s", flush=True)
        return value

    dataset = timed("build_dataset", lambda: build_dataset(world.interactions, world.tracks, world.artist_tags))
    stats = dataset_stats(dataset)
    print(
        f"  {stats['users']} users, {stats['items']} tracks, {stats['interactions']} interactions, "
        f"{stats['item_features']} item features ({dataset.item_features.nnz / dataset.n_items:.1f} per track)"
    )
    train, test = timed("split_holdout", lambda: split_holdout(dataset, "random", 0.2, seed=0))
    candidate = timed("train_lightfm (train split)", lambda: train_lightfm(train, params))
    print(f"  early stopping: best epoch {candidate.training_info.get('best_epoch')}")
    popularity = timed("train_popularity", lambda: train_popularity(train))
    table = timed(
        "evaluate_models", lambda: evaluate_models({"lightfm": candidate, "popularity": popularity}, train, test)
    )
    decision = should_publish(metrics_dict(table, "lightfm"), metrics_dict(table, "popularity"), None)
    print(f"  {decision.reason}")
    final = timed("train_lightfm (all data)", lambda: train_lightfm(dataset, refit_params(params, candidate)))
    recs = timed("recommend_top_k (k=10)", lambda: recommend_top_k(final, dataset, k=10))
    similar = timed("similar_items (k=10)", lambda: similar_items(final, k=10))
    print(f"  {len(recs)} recommendations, {len(similar)} similar pairs")
    print(f"{'total':28s} {sum(timings.values()):6.1f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
