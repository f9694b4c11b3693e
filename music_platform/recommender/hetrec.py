"""HetRec 2011 Last.fm 2K loader, producing the same table shapes as the warehouse marts.

Items are artists: ``track_id`` = ``artist_id`` = the HetRec artist id. ``user_artists.dat``
becomes ``user_track_interactions`` (play counts, no timestamps); ``user_taggedartists.dat``
becomes ``artist_tags`` with ``tag_weight`` = assignments of that tag to the artist divided by
the artist's most-used tag's assignments (the 0..1 scale of Last.fm's own tag counts); the
artist's most-used tag doubles as its genre (used in "popular in <genre>" reasons).

``artists.dat`` is UTF-8 while ``tags.dat`` is Latin-1; both are read as such.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from music_platform.recommender.dataset import RecDataset, build_dataset
from music_platform.recommender.features import FeatureConfig

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


def load_hetrec_tables(data_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(interactions, tracks, artist_tags) in the marts' column names."""
    data_dir = Path(data_dir)
    check_files(data_dir)
    plays = _read(data_dir / "user_artists.dat")
    interactions = pd.DataFrame(
        {"user_id": plays["userID"], "track_id": plays["artistID"], "play_count": pd.to_numeric(plays["weight"])}
    )
    artists = _read(data_dir / "artists.dat")
    tags = _read(data_dir / "tags.dat", encoding="latin-1")
    tagged = _read(data_dir / "user_taggedartists.dat")
    counts = (
        tagged.merge(tags, on="tagID", how="inner")
        .groupby(["artistID", "tagValue"], as_index=False)
        .size()
        .rename(columns={"artistID": "artist_id", "tagValue": "tag_name", "size": "count"})
    )
    counts["tag_weight"] = counts["count"] / counts.groupby("artist_id")["count"].transform("max")
    counts = counts.sort_values(["artist_id", "count", "tag_name"], ascending=[True, False, True])
    counts["tag_rank"] = counts.groupby("artist_id").cumcount() + 1
    artist_tags = counts[["artist_id", "tag_name", "tag_weight", "tag_rank"]].reset_index(drop=True)
    top_tag = artist_tags[artist_tags["tag_rank"] == 1].set_index("artist_id")["tag_name"]
    tracks = pd.DataFrame(
        {
            "track_id": artists["id"],
            "artist_id": artists["id"],
            "artist_name": artists["name"],
            "track_name": None,
            "genre": artists["id"].map(top_tag),
        }
    )
    return interactions, tracks, artist_tags


def load_hetrec_lastfm(data_dir: Path, feature_config: FeatureConfig | None = None) -> RecDataset:
    interactions, tracks, artist_tags = load_hetrec_tables(data_dir)
    return build_dataset(interactions, tracks, artist_tags, feature_config=feature_config)
