"""The recommender's view of the warehouse: id mappings, interaction matrices, item features.

``build_dataset`` turns the marts (``user_track_interactions``, ``dim_tracks``, ``artist_tags``,
optionally ``dim_users``) into a :class:`RecDataset`. Interactions are kept as canonical arrays
sorted by (user, item), so every CSR matrix derived from them shares one order and the split
functions can select interactions with a boolean mask while train and test keep the same ids.

Rows that cannot be used (missing ids, play counts below 1) are quarantined in
``RecDataset.rejected`` with a reason, never dropped silently.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from functools import cached_property

import numpy as np
import pandas as pd
import scipy.sparse as sp

from music_platform.recommender.features import FeatureConfig, build_item_features, build_user_features

INTERACTION_COLUMNS = ("user_id", "track_id", "play_count")
CATALOG_COLUMNS = ("track_id", "artist_id", "artist_name", "track_name", "genre")


class DatasetError(ValueError):
    """The input tables cannot be turned into a dataset; the message says which column or value."""


@dataclass(frozen=True, eq=False)
class RecDataset:
    """Users × items interactions with their id mappings and feature matrices.

    Index ``i`` of ``user_ids``/``item_ids`` is row/column ``i`` of every matrix. ``catalog`` is
    a DataFrame aligned with ``item_ids`` (columns ``CATALOG_COLUMNS``). Items that were never
    played are allowed: they have features and can be scored by feature-aware models.
    """

    user_ids: np.ndarray
    item_ids: np.ndarray
    user_idx: np.ndarray  # int32, one per interaction, sorted by (user, item)
    item_idx: np.ndarray  # int32
    play_count: np.ndarray  # float32 >= 1
    first_played_at: np.ndarray | None  # datetime64[ns] per interaction, NaT when unknown
    last_played_at: np.ndarray | None
    catalog: pd.DataFrame
    item_features: sp.csr_matrix
    item_feature_names: np.ndarray
    user_features: sp.csr_matrix | None = None
    user_feature_names: np.ndarray | None = None
    rejected: pd.DataFrame = field(default_factory=pd.DataFrame)
    feature_config: FeatureConfig = field(default_factory=FeatureConfig)
    # Per-user tag assignments (user_id, artist_id, tag_name) when the source has them (HetRec);
    # lets an evaluation rebuild tag features from training pairs only (hetrec.leak_free_side_features).
    tag_assignments: pd.DataFrame | None = None

    # -- shape ------------------------------------------------------------------------
    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def n_interactions(self) -> int:
        return len(self.user_idx)

    @cached_property
    def user_index(self) -> dict[str, int]:
        return {str(u): i for i, u in enumerate(self.user_ids)}

    @cached_property
    def item_index(self) -> dict[str, int]:
        return {str(t): i for i, t in enumerate(self.item_ids)}

    # -- matrices ---------------------------------------------------------------------
    def _csr(self, values: np.ndarray) -> sp.csr_matrix:
        # Interactions are sorted by (user, item) without duplicates, so data order == array order.
        indptr = np.zeros(self.n_users + 1, dtype=np.int64)
        np.cumsum(np.bincount(self.user_idx, minlength=self.n_users), out=indptr[1:])
        matrix = sp.csr_matrix(
            (values.astype(np.float32, copy=False), self.item_idx.astype(np.int32, copy=False), indptr),
            shape=(self.n_users, self.n_items),
        )
        matrix.has_sorted_indices = True
        return matrix

    @cached_property
    def interactions(self) -> sp.csr_matrix:
        """Binary users × items matrix (1 where the user played the item)."""
        return self._csr(np.ones(self.n_interactions, dtype=np.float32))

    @cached_property
    def play_counts(self) -> sp.csr_matrix:
        return self._csr(self.play_count)

    def confidence(self, alpha: float = 1.0) -> sp.csr_matrix:
        """Confidence weights ``1 + alpha * log1p(play_count)`` (Hu, Koren & Volinsky 2008, log form).

        The log keeps a user's 10,000th play of one artist from drowning everything else.
        """
        return self._csr(1.0 + alpha * np.log1p(self.play_count))

    @cached_property
    def item_user_counts(self) -> np.ndarray:
        """Distinct listeners per item (the popularity baseline's score)."""
        return np.bincount(self.item_idx, minlength=self.n_items).astype(np.float32)

    # -- derived datasets -------------------------------------------------------------
    def with_interactions(self, mask: np.ndarray) -> RecDataset:
        """The same users, items and features with only the interactions where ``mask`` is true."""
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != (self.n_interactions,):
            raise DatasetError(f"mask has shape {mask.shape}, expected ({self.n_interactions},)")
        return replace(
            self,
            user_idx=self.user_idx[mask],
            item_idx=self.item_idx[mask],
            play_count=self.play_count[mask],
            first_played_at=None if self.first_played_at is None else self.first_played_at[mask],
            last_played_at=None if self.last_played_at is None else self.last_played_at[mask],
        )

    def snapshot_id(self) -> str:
        """Content hash of ids and interactions: the same data gives the same id."""
        digest = hashlib.sha256()
        for ids in (self.user_ids, self.item_ids):
            digest.update("\x1f".join(map(str, ids)).encode("utf-8"))
            digest.update(b"\x1e")
        for array in (self.user_idx, self.item_idx, self.play_count):
            digest.update(np.ascontiguousarray(array).tobytes())
        return digest.hexdigest()[:16]

    def interactions_frame(self) -> pd.DataFrame:
        """The interactions back as a DataFrame (user_id, track_id, play_count)."""
        return pd.DataFrame(
            {
                "user_id": self.user_ids[self.user_idx],
                "track_id": self.item_ids[self.item_idx],
                "play_count": self.play_count.astype(np.int64),
            }
        )


def _quarantine(frame: pd.DataFrame, bad: pd.Series, reason: str, sink: list[pd.DataFrame]) -> pd.DataFrame:
    if bad.any():
        sink.append(frame.loc[bad].assign(reason=reason))
    return frame.loc[~bad]


def _blank(series: pd.Series) -> pd.Series:
    return series.isna() | (series.astype("string").str.strip() == "")


def _clean_interactions(interactions: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    missing = [c for c in INTERACTION_COLUMNS if c not in interactions.columns]
    if missing:
        raise DatasetError(
            f"interactions lack column(s) {', '.join(missing)}; expected {', '.join(INTERACTION_COLUMNS)}"
        )
    frame = interactions.copy()
    rejected: list[pd.DataFrame] = []
    frame = _quarantine(frame, _blank(frame["user_id"]), "missing user_id", rejected)
    frame = _quarantine(frame, _blank(frame["track_id"]), "missing track_id", rejected)
    counts = pd.to_numeric(frame["play_count"], errors="coerce")
    frame = _quarantine(frame, counts.isna() | (counts < 1), "play_count missing or below 1", rejected)
    frame = frame.assign(
        user_id=frame["user_id"].astype(str),
        track_id=frame["track_id"].astype(str),
        play_count=pd.to_numeric(frame["play_count"]).astype(np.float64),
    )
    for column in ("first_played_at", "last_played_at"):
        if column in frame.columns:
            frame[column] = pd.to_datetime(frame[column], utc=True, errors="coerce")
    rejected_frame = (
        pd.concat(rejected, ignore_index=True) if rejected else pd.DataFrame(columns=[*frame.columns, "reason"])
    )
    return frame, rejected_frame


def _catalog(tracks: pd.DataFrame | None, item_ids: np.ndarray) -> pd.DataFrame:
    base = pd.DataFrame({"track_id": item_ids})
    if tracks is None or tracks.empty:
        for column in CATALOG_COLUMNS[1:]:
            base[column] = None
        return base
    meta = tracks.drop_duplicates("track_id").copy()
    meta["track_id"] = meta["track_id"].astype(str)
    keep = [c for c in CATALOG_COLUMNS if c in meta.columns]
    catalog = base.merge(meta[keep], on="track_id", how="left")
    for column in CATALOG_COLUMNS[1:]:
        if column not in catalog.columns:
            catalog[column] = None
    catalog = catalog[list(CATALOG_COLUMNS)].astype(object)
    return catalog.where(catalog.notna(), None)


def build_dataset(
    interactions: pd.DataFrame,
    tracks: pd.DataFrame | None = None,
    artist_tags: pd.DataFrame | None = None,
    users: pd.DataFrame | None = None,
    feature_config: FeatureConfig | None = None,
) -> RecDataset:
    """Build the recommender dataset from warehouse tables.

    - ``interactions``: ``marts.user_track_interactions`` (user_id, track_id, play_count and optionally
      first_played_at, last_played_at). Duplicate (user, track) rows are merged (counts summed).
    - ``tracks``: ``marts.dim_tracks``; every track becomes an item, played or not. Tracks only seen in
      ``interactions`` become items without metadata (counted in ``stats``).
    - ``artist_tags``: ``marts.artist_tags`` (artist_id, tag_name, tag_weight) → weighted tag features.
    - ``users``: ``marts.dim_users`` → optional user features (country, age band, gender).
    """
    config = feature_config or FeatureConfig()
    frame, rejected = _clean_interactions(interactions)
    if frame.empty:
        raise DatasetError("no usable interactions (every row was quarantined or the table is empty)")

    agg: dict[str, tuple[str, str]] = {"play_count": ("play_count", "sum")}
    if "first_played_at" in frame.columns:
        agg["first_played_at"] = ("first_played_at", "min")
    if "last_played_at" in frame.columns:
        agg["last_played_at"] = ("last_played_at", "max")
    grouped = frame.groupby(["user_id", "track_id"], sort=False).agg(**agg).reset_index()

    track_ids_meta = pd.Index(tracks["track_id"].dropna().astype(str).unique()) if tracks is not None else pd.Index([])
    item_ids = np.asarray(sorted(set(track_ids_meta) | set(grouped["track_id"].unique())), dtype=object)
    user_ids = np.asarray(sorted(grouped["user_id"].unique()), dtype=object)

    user_codes = pd.Index(user_ids).get_indexer(grouped["user_id"]).astype(np.int32)
    item_codes = pd.Index(item_ids).get_indexer(grouped["track_id"]).astype(np.int32)
    order = np.lexsort((item_codes, user_codes))

    def timestamps(column: str) -> np.ndarray | None:
        if column not in grouped.columns:
            return None
        values = grouped[column].dt.tz_convert("UTC").dt.tz_localize(None).to_numpy(dtype="datetime64[ns]")
        return values[order]

    catalog = _catalog(tracks, item_ids)
    item_features, item_feature_names = build_item_features(catalog, tracks, artist_tags, config)
    user_features = user_feature_names = None
    if users is not None and not users.empty:
        user_features, user_feature_names = build_user_features(user_ids, users)

    dataset = RecDataset(
        user_ids=user_ids,
        item_ids=item_ids,
        user_idx=user_codes[order],
        item_idx=item_codes[order],
        play_count=grouped["play_count"].to_numpy(dtype=np.float32)[order],
        first_played_at=timestamps("first_played_at"),
        last_played_at=timestamps("last_played_at"),
        catalog=catalog,
        item_features=item_features,
        item_feature_names=item_feature_names,
        user_features=user_features,
        user_feature_names=user_feature_names,
        rejected=rejected,
        feature_config=config,
    )
    return dataset


def dataset_stats(dataset: RecDataset) -> dict[str, float | int]:
    """Figures worth logging as asset metadata."""
    played = dataset.item_user_counts > 0
    no_meta = dataset.catalog["artist_id"].isna().sum() if len(dataset.catalog) else 0
    return {
        "users": dataset.n_users,
        "items": dataset.n_items,
        "items_played": int(played.sum()),
        "items_without_metadata": int(no_meta),
        "interactions": dataset.n_interactions,
        "density": dataset.n_interactions / max(1, dataset.n_users * dataset.n_items),
        "item_features": int(dataset.item_features.shape[1]),
        "user_features": 0 if dataset.user_features is None else int(dataset.user_features.shape[1]),
        "rejected_rows": len(dataset.rejected),
    }
