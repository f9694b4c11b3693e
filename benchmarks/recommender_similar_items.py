"""Similar-items quality on HetRec Last.fm 2K, judged on listeners the models never saw.

Models train on 90% of the users (``split_users``). For each artist with at least
``--min-listeners`` training listeners, ``similar_items`` gives its top 10; a neighbour counts as
a *co-listen* when a held-out listener of the artist also plays the neighbour. Reported per
model: mean co-listen rate of the top 10 (the share of the artist's held-out listeners who play
the neighbour, averaged), and the share of neighbour pairs sharing one of their top-5 tags
(LightFM hybrid sees tags in training, so for it that figure is not independent). Baseline:
the 10 most popular artists as everybody's "neighbours". The co-listen rate rewards popular
neighbours, so the lift (co-listen rate ÷ the neighbour's share of all held-out listeners) is
printed too. Prints examples for known artists.

    .venv/bin/python benchmarks/recommender_similar_items.py --data-dir /work/shared/data/hetrec2011-lastfm-2k
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

from music_platform.recommender.hetrec import load_hetrec_lastfm, load_hetrec_tables
from music_platform.recommender.lightfm_model import ids_only, train_lightfm
from music_platform.recommender.models import train_als, train_ease
from music_platform.recommender.scoring import similar_items
from music_platform.recommender.splits import split_users
from music_platform.recommender.training import BlendParams

EXAMPLES = ("Radiohead", "Britney Spears", "Metallica", "Daft Punk")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--min-listeners", type=int, default=10)
    parser.add_argument("--k", type=int, default=10)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    dataset = load_hetrec_lastfm(args.data_dir)
    _, _, artist_tags = load_hetrec_tables(args.data_dir)
    kept, held = split_users(dataset, fraction=0.1, seed=args.seed)
    defaults = BlendParams()
    models = {
        "lightfm": train_lightfm(kept, defaults.lightfm),
        "lightfm-ids": train_lightfm(kept, ids_only(defaults.lightfm)),
        "ease": train_ease(kept, defaults.ease),
        "als": train_als(kept, defaults.als),
    }
    heard = held.interactions
    co_listens = (heard.T @ heard).tocsr()  # items × items counts among held-out listeners
    held_listeners = co_listens.diagonal()
    popular_enough = kept.item_user_counts >= args.min_listeners
    sources = np.flatnonzero(popular_enough & (held_listeners > 0))
    top_tags = artist_tags[artist_tags["tag_rank"] <= 5].groupby("artist_id")["tag_name"].apply(set)
    tags_of = top_tags.reindex(dataset.item_ids).to_numpy()

    n_held_users = int((np.diff(heard.indptr) > 0).sum())

    def judge(pairs: pd.DataFrame) -> tuple[float, float, float]:
        a = pd.Index(dataset.item_ids).get_indexer(pairs["track_id"])
        b = pd.Index(dataset.item_ids).get_indexer(pairs["similar_track_id"])
        rate = np.asarray(co_listens[a, b]).ravel() / held_listeners[a]
        # Lift: how much likelier the neighbour is among the artist's listeners than among all.
        base_rate = np.maximum(held_listeners[b], 1) / n_held_users
        shared = [
            isinstance(x, set) and isinstance(y, set) and bool(x & y)
            for x, y in zip(tags_of[a], tags_of[b], strict=True)
        ]
        return float(rate.mean()), float((rate / base_rate).mean()), float(np.mean(shared))

    popular = np.argsort(-kept.item_user_counts, kind="stable")[: args.k + 1]
    baseline = pd.DataFrame(
        [(dataset.item_ids[s], dataset.item_ids[p]) for s in sources for p in popular if p != s][
            : len(sources) * args.k
        ],
        columns=["track_id", "similar_track_id"],
    )
    print(
        f"{len(sources)} source artists (≥ {args.min_listeners} training listeners, "
        f"≥ 1 held-out listener), top {args.k}"
    )
    print(f"{'neighbours from':14s} {'co-listen rate':>15s} {'lift':>7s} {'shared top-5 tag':>17s}")
    rate, lift, shared = judge(baseline)
    print(f"{'popularity':14s} {rate:15.4f} {lift:7.2f} {shared:17.3f}")
    tables = {}
    for name, model in models.items():
        table = similar_items(model, k=args.k, items=list(dataset.item_ids[sources]), min_listeners=args.min_listeners)
        tables[name] = table
        rate, lift, shared = judge(table)
        print(f"{name:14s} {rate:15.4f} {lift:7.2f} {shared:17.3f}")
    names = dict(zip(dataset.catalog["track_id"], dataset.catalog["artist_name"], strict=True))
    by_name = {v: k for k, v in names.items()}
    for artist in EXAMPLES:
        if artist not in by_name:
            continue
        for model_name in ("lightfm", "ease"):
            rows = tables[model_name]
            neighbours = rows[rows["track_id"] == by_name[artist]]["similar_track_id"].map(names).tolist()
            print(f"{artist} ({model_name}): {', '.join(neighbours[:6])}")
    print(f"total {time.perf_counter() - started:.0f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
