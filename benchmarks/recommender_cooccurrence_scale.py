"""Training cost of the top-artist co-occurrence (the blend's cold-start component) at the 10 M scale.

The pipeline's 10 M run (docs/scaling.md) has 5,000 listeners and 2.45 M (listener, track) rows.
This builds a random matrix of that shape (``--users``, ``--rows``; track popularity Zipf with
exponent ``--zipf`` over ``--items`` tracks: the smaller the catalogue, the more rows fall inside
the 8,000 covered items and the dearer the counts) and times exactly what ``train_cooccurrence``
does after choosing its items: each listener's top 10, then the blocked co-listening counts and
the kept weights. Prints wall and CPU seconds, the weights' size and the peak RSS.

    .venv/bin/python benchmarks/recommender_cooccurrence_scale.py --items 60000
    .venv/bin/python benchmarks/recommender_cooccurrence_scale.py --items 8000   # every row covered
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np
import scipy.sparse as sp

from music_platform.recommender.models import CooccurrenceParams, cooccurrence_weights, top_items_per_user


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=5_000)
    parser.add_argument("--rows", type=int, default=2_450_000)
    parser.add_argument("--items", type=int, default=60_000)
    parser.add_argument("--zipf", type=float, default=0.8)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    weights = 1.0 / np.arange(1, args.items + 1) ** args.zipf
    draws = int(args.rows * 1.15)  # duplicates (same listener, same track) are merged below
    users = rng.integers(0, args.users, size=draws)
    tracks = rng.choice(args.items, size=draws, p=weights / weights.sum())
    plays = rng.integers(1, 50, size=draws).astype(np.float32)
    counts = sp.csr_matrix((plays, (users, tracks)), shape=(args.users, args.items))
    counts.sum_duplicates()
    params = CooccurrenceParams()
    wall, cpu = time.perf_counter(), time.process_time()
    listeners = np.asarray((counts > 0).sum(axis=0)).ravel()
    covered = np.sort(np.argsort(-listeners, kind="stable")[: params.max_items])
    favourites = top_items_per_user(counts, params.top_k)[:, covered]
    library = counts[:, covered]
    matrix = cooccurrence_weights(library, favourites, params)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    size = (matrix.data.nbytes + matrix.indices.nbytes + matrix.indptr.nbytes) / 1e6
    print(
        f"{args.users} listeners, {counts.nnz} rows ({library.nnz} in the {len(covered)} covered items): "
        f"{wall:.1f} s wall, {cpu:.1f} CPU s; weights {matrix.nnz} ({size:.0f} MB); "
        f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6:.2f} GB"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
