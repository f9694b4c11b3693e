"""HetRec 2011 Last.fm 2K loader, producing the same table shapes as the warehouse marts.

Items are artists: ``track_id`` = ``artist_id`` = the HetRec artist id. ``user_artists.dat``
becomes ``user_track_interactions`` (play counts, no timestamps); ``user_taggedartists.dat``
becomes ``artist_tags`` with ``tag_weight`` = assignments of that tag to the artist divided by
the artist's most-used tag's assignments (the 0..1 scale of Last.fm's own tag counts); the
artist's most-used tag doubles as its genre (used in "popular in <genre>" reasons).

``artists.dat`` is UTF-8 while ``tags.dat`` is Latin-1; both are read as such.

Tags are assigned by users to artists, so they are interaction data too: a user who tagged an
artist also listened to it. An evaluation that builds tag features from every assignment lets
the held-out (user, artist) pairs' tags into training. The dataset therefore keeps the raw
assignments (``RecDataset.tag_assignments``) and :func:`leak_free_side_features` rebuilds the
tag features (and the top-tag genre) of a training split without any assignment of a held-out
(user, artist) pair or held-out user.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from music_platform.recommender.dataset import RecDataset, build_dataset
from music_platform.recommender.features import FeatureConfig, build_item_features

DATASET_NAME = "hetrec-lastfm-2k"
REQUIRED_FILES = ("user_artists.dat", "artists.dat", "user_taggedartists.dat", "tags.dat")


class MissingDatasetError(FileNotFoundError):
    """The dataset folder lacks a file; the message names it."""


def check_files(data_dir: Path) -> None:
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise MissingDatasetError(f"dataset folder not found: {data_dir}")
    for name in REQUIRED_FILES:
        if not (data_dir / name).is_file():
            raise MissingDatasetError(
                f"missing file {data_dir / name} (HetRec 2011 Last.fm 2K needs {', '.join(REQUIRED_FILES)})"
            )


def _read(path: Path, encoding: str = "utf-8") -> pd.DataFrame:
    return pd.read_csv(path, sep="\t", encoding=encoding, dtype=str, quoting=3, keep_default_na=False)


def load_tag_assignments(data_dir: Path) -> pd.DataFrame:
    """Every tag assignment: user_id, artist_id, tag_name (one row per user, artist and tag)."""
    data_dir = Path(data_dir)
    check_files(data_dir)
    tags = _read(data_dir / "tags.dat", encoding="latin-1")
    tagged = _read(data_dir / "user_taggedartists.dat")
    joined = tagged.merge(tags, on="tagID", how="inner")
    return pd.DataFrame({"user_id": joined["userID"], "artist_id": joined["artistID"], "tag_name": joined["tagValue"]})


def artist_tags_from_assignments(assignments: pd.DataFrame) -> pd.DataFrame:
    """artist_id, tag_name, tag_weight (count / the artist's top tag count), tag_rank."""
    counts = assignments.groupby(["artist_id", "tag_name"], as_index=False).size().rename(columns={"size": "count"})
    counts["tag_weight"] = counts["count"] / counts.groupby("artist_id")["count"].transform("max")
    counts = counts.sort_values(["artist_id", "count", "tag_name"], ascending=[True, False, True])
    counts["tag_rank"] = counts.groupby("artist_id").cumcount() + 1
    return counts[["artist_id", "tag_name", "tag_weight", "tag_rank"]].reset_index(drop=True)


def _tracks(artists: pd.DataFrame, artist_tags: pd.DataFrame) -> pd.DataFrame:
    top_tag = artist_tags[artist_tags["tag_rank"] == 1].set_index("artist_id")["tag_name"]
    return pd.DataFrame(
        {
            "track_id": artists["id"],
            "artist_id": artists["id"],
            "artist_name": artists["name"],
            "track_name": None,
            "genre": artists["id"].map(top_tag),
        }
    )


def load_hetrec_tables(data_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(interactions, tracks, artist_tags) in the marts' column names, tags from every assignment."""
    data_dir = Path(data_dir)
    check_files(data_dir)
    plays = _read(data_dir / "user_artists.dat")
    interactions = pd.DataFrame(
        {"user_id": plays["userID"], "track_id": plays["artistID"], "play_count": pd.to_numeric(plays["weight"])}
    )
    artists = _read(data_dir / "artists.dat")
    artist_tags = artist_tags_from_assignments(load_tag_assignments(data_dir))
    return interactions, _tracks(artists, artist_tags), artist_tags


def load_hetrec_lastfm(data_dir: Path, feature_config: FeatureConfig | None = None) -> RecDataset:
    interactions, tracks, artist_tags = load_hetrec_tables(data_dir)
    dataset = build_dataset(interactions, tracks, artist_tags, feature_config=feature_config)
    return replace(dataset, tag_assignments=load_tag_assignments(data_dir))


def leak_free_side_features(train: RecDataset, held_out: RecDataset) -> RecDataset:
    """``train`` with item features (tags, top-tag genre) rebuilt without the tag assignments of
    held-out data: those of every (user, artist) pair in ``held_out`` and every assignment of a
    user with no training interaction (a listener held out whole). Unchanged when the dataset
    carries no per-user assignments.

    Assignments of pairs that are not listening interactions at all (a user tagged an artist
    outside their top 50) are training-time side information and stay. Apply this to the training
    part of every split, so a held-out pair contributes nothing the model can see.
    """
    assignments = train.tag_assignments
    if assignments is None:
        return train

    def pair_keys(users: np.ndarray, items: np.ndarray) -> pd.MultiIndex:
        return pd.MultiIndex.from_arrays([np.asarray(users).astype(str), np.asarray(items).astype(str)])

    held_pairs = pair_keys(held_out.user_ids[held_out.user_idx], held_out.item_ids[held_out.item_idx])
    training_users = pd.Index(np.unique(train.user_ids[train.user_idx]).astype(str))
    keys = pair_keys(assignments["user_id"], assignments["artist_id"])
    keep = ~np.asarray(keys.isin(held_pairs)) & np.asarray(assignments["user_id"].astype(str).isin(training_users))
    kept = assignments[keep]
    artist_tags = artist_tags_from_assignments(kept)
    catalog = train.catalog.copy()
    top_tag = artist_tags[artist_tags["tag_rank"] == 1].set_index("artist_id")["tag_name"]
    catalog["genre"] = catalog["artist_id"].astype(str).map(top_tag)
    catalog = catalog.astype(object).where(catalog.notna(), None)
    tracks = catalog[["track_id", "artist_id", "genre"]]
    features, names = build_item_features(catalog, tracks, artist_tags, train.feature_config)
    return replace(train, catalog=catalog, item_features=features, item_feature_names=names, tag_assignments=kept)
