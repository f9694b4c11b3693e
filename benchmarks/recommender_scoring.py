"""Batch scoring throughput: users per second for top-k over 20,000 items (target ≥ 10,000/s on 2 cores).

A LightFM-shaped model (64-dimensional embeddings plus item biases) over ``--items`` items scores
``--users`` listeners who each heard ``--heard`` items (excluded from their lists). The timed
part is exactly what the ``ml/user_recommendations`` asset runs: ``recommend_top_k`` in user
batches (GEMM, heard items masked from the CSR history, argpartition top-k in two threads),
without and with the "because you play X" reasons; then ``similar_items`` for every item.

    .venv/bin/python benchmarks/recommender_scoring.py --users 20000 --items 20000
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import pandas as pd
import scipy.sparse as sp

from music_platform.recommender.dataset import RecDataset
from music_platform.recommender.features import FeatureConfig
from music_platform.recommender.models import FactorScorer, TrainedModel
from music_platform.recommender.scoring import recommend_top_k, similar_items


def synthetic_model_and_history(
    n_users: int, n_items: int, dim: int, heard: int, seed: int = 0
) -> tuple[TrainedModel, RecDataset]:
    rng = np.random.default_rng(seed)
    item_ids = np.array([f"t{i:06d}" for i in range(n_items)], dtype=object)
    user_ids = np.array([f"u{u:06d}" for u in range(n_users)], dtype=object)
    catalog = pd.DataFrame(
        {
            "track_id": item_ids,
            "artist_id": [f"a{i // 10}" for i in range(n_items)],
            "artist_name": [f"Artist {i // 10}" for i in range(n_items)],
            "track_name": [f"Track {i}" for i in range(n_items)],
            "genre": rng.choice(["rock", "jazz", "techno", "folk", None], n_items),
        }
    )
    popularity = rng.zipf(1.3, n_items).astype(np.float32)
    scorer = FactorScorer(
        user_vectors=rng.standard_normal((n_users, dim)).astype(np.float32),
        item_embeddings=rng.standard_normal((n_items, dim)).astype(np.float32),
        item_bias=rng.standard_normal(n_items).astype(np.float32) * 0.1,
    )
    model = TrainedModel("lightfm", scorer, user_ids, item_ids, catalog, popularity, {}, 0.0)
    # Heard items drawn with a popularity skew, de-duplicated per user.
    p = popularity / popularity.sum()
    cols = rng.choice(n_items, size=(n_users, heard), p=p)
    matrix = sp.csr_matrix(
        (np.ones(cols.size, np.float32), (np.repeat(np.arange(n_users), heard), cols.ravel())), shape=(n_users, n_items)
    )
    matrix.sum_duplicates()
    coo = matrix.tocoo()
    dataset = RecDataset(
        user_ids=user_ids,
        item_ids=item_ids,
        user_idx=coo.row.astype(np.int32),
        item_idx=coo.col.astype(np.int32),
        play_count=rng.integers(1, 100, coo.nnz).astype(np.float32),
        first_played_at=None,
        last_played_at=None,
        catalog=catalog,
        item_features=sp.identity(n_items, format="csr", dtype=np.float32),
        item_feature_names=np.array(["item:" + i for i in item_ids], dtype=object),
        feature_config=FeatureConfig(),
    )
    return model, dataset


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--heard", type=int, default=50)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=2048)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    model, dataset = synthetic_model_and_history(args.users, args.items, args.dim, args.heard)
    print(
        f"{args.users} users × {args.items} items, {args.dim} factors, ~{args.heard} heard items per user, k={args.k}"
    )
    recommend_top_k(model, dataset, k=args.k, users=list(dataset.user_ids[:256]))  # warm-up
    print(f"load average before: {os.getloadavg()[0]:.1f} (2 cores; other jobs slow the wall-clock figures)")
    print("cores-equivalent = work / (CPU seconds / cores): the rate on dedicated cores")

    def measure(label: str, count: int, unit: str, run) -> None:
        wall, cpu = time.perf_counter(), time.process_time()
        rows = len(run())
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        print(
            f"{label:30s} wall {wall:6.2f}s {count / wall:9,.0f} {unit}/s | CPU {cpu:6.2f}s "
            f"→ {count / (cpu / args.threads):9,.0f} {unit}/s on {args.threads} dedicated cores ({rows:,} rows)"
        )

    for with_reasons in (False, True):
        measure(
            "recommend_top_k " + ("with reasons" if with_reasons else "scores only"),
            args.users,
            "users",
            lambda with_reasons=with_reasons: recommend_top_k(
                model,
                dataset,
                k=args.k,
                batch_size=args.batch_size,
                with_reasons=with_reasons,
                num_threads=args.threads,
            ),
        )
    measure("similar_items (k=10)", args.items, "items", lambda: similar_items(model, k=10, num_threads=args.threads))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
