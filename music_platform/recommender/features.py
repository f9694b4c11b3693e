"""Item and user feature matrices for the LightFM hybrid.

An item's row holds its own id feature plus metadata features, grouped:

- ``artist:<artist_id>`` — tracks of one artist share it (skipped when items *are* artists);
- ``genre:<genre>`` — every genre of the ';'-joined ``genres`` (or the primary ``genre``);
- ``tag:<tag>`` — the artist's top tags from ``marts.artist_tags``, weighted by ``tag_weight``;
- ``audio:<feature>:<bucket>`` — audio features cut into equal-width buckets, tempo and loudness
  into musically meaningful bands; nulls give no feature rather than a fake value.

Within a group weights are shared out so the group sums to its configured weight, then the row is
L1-normalised (as LightFM's own ``Dataset`` does), so ``identity_weight`` versus the group weights
sets how much an item's representation comes from its own id versus its metadata.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from music_platform.audio_features import AUDIO_UNIT_FEATURES

AUDIO_UNIT_COLUMNS = AUDIO_UNIT_FEATURES
TEMPO_BANDS = (0.0, 90.0, 110.0, 130.0, 150.0, np.inf)
LOUDNESS_BANDS = (-np.inf, -15.0, -10.0, -6.0, np.inf)


@dataclass(frozen=True)
class FeatureConfig:
    """Weights of the item feature groups.

    Defaults chosen on HetRec validation splits inside the training data (see
    ``benchmarks/recommender_tuning.py`` and docs/recommender.md): tags at half the weight of the
    item's own id beat 0.25 and 1.0, and an artist's top 10 tags did as well as its top 20 at
    half the training time. Genre, artist and audio groups cannot be tuned on HetRec (it has
    none of them): genre and artist get the tag group's weight, audio half of it, as priors.
    """

    identity_weight: float = 1.0
    artist_weight: float = 0.5
    genre_weight: float = 0.5
    tag_weight: float = 0.5
    audio_weight: float = 0.25
    max_tags: int = 10
    min_tag_weight: float = 0.0
    # A metadata feature carried by fewer items than this only duplicates those items' id features.
    min_feature_items: int = 2
    audio_buckets: int = 4


def _split_genres(row_genres: object, row_genre: object) -> list[str]:
    values: list[str] = []
    if isinstance(row_genres, str) and row_genres.strip():
        values = [g.strip() for g in row_genres.split(";") if g.strip()]
    if not values and isinstance(row_genre, str) and row_genre.strip():
        values = [row_genre.strip()]
    return list(dict.fromkeys(v.casefold() for v in values))


def _group(frame: pd.DataFrame, weight: float) -> pd.DataFrame:
    """Scale raw weights so each item's features of one group sum to ``weight``."""
    if frame.empty or weight <= 0:
        return frame.iloc[0:0]
    total = frame.groupby("item")["raw"].transform("sum")
    return frame.assign(weight=frame["raw"] / total.where(total > 0, 1.0) * weight)[["item", "feature", "weight"]]


def _audio_triples(meta: pd.DataFrame, n_buckets: int) -> pd.DataFrame:
    parts = []
    for column in AUDIO_UNIT_COLUMNS:
        if column not in meta.columns:
            continue
        values = pd.to_numeric(meta[column], errors="coerce")
        ok = values.between(0.0, 1.0)
        bucket = np.minimum((values[ok] * n_buckets).astype(int), n_buckets - 1)
        parts.append(pd.DataFrame({"item": meta.loc[ok, "item"], "feature": f"audio:{column}:" + bucket.astype(str)}))
    for column, bands in (("tempo", TEMPO_BANDS), ("loudness", LOUDNESS_BANDS)):
        if column not in meta.columns:
            continue
        values = pd.to_numeric(meta[column], errors="coerce")
        ok = values.notna() & (values > 0 if column == "tempo" else values.notna())
        band = np.digitize(values[ok].to_numpy(), bands[1:-1])
        parts.append(pd.DataFrame({"item": meta.loc[ok, "item"], "feature": [f"audio:{column}:{b}" for b in band]}))
    if not parts:
        return pd.DataFrame(columns=["item", "feature", "raw"])
    return pd.concat(parts, ignore_index=True).assign(raw=1.0)


def build_item_features(
    catalog: pd.DataFrame,
    tracks: pd.DataFrame | None,
    artist_tags: pd.DataFrame | None,
    config: FeatureConfig,
) -> tuple[sp.csr_matrix, np.ndarray]:
    """Items × features CSR (float32, rows L1-normalised) and the feature names.

    Column ``i < n_items`` is item ``i``'s own id feature when ``identity_weight > 0``.
    """
    n_items = len(catalog)
    item_pos = pd.Series(np.arange(n_items), index=catalog["track_id"].astype(str))
    groups: list[pd.DataFrame] = []

    artists = catalog[["artist_id"]].assign(item=np.arange(n_items)).dropna(subset=["artist_id"])
    items_per_artist = artists.groupby("artist_id")["item"].transform("size")
    if (items_per_artist > 1).any():  # when every item is its own artist this only repeats the id feature
        groups.append(
            _group(artists.assign(feature="artist:" + artists["artist_id"].astype(str), raw=1.0), config.artist_weight)
        )

    if tracks is not None and not tracks.empty:
        meta = tracks.drop_duplicates("track_id").copy()
        meta["item"] = item_pos.reindex(meta["track_id"].astype(str)).to_numpy()
        meta = meta.dropna(subset=["item"]).astype({"item": np.int64})
        genres_col = meta["genres"] if "genres" in meta.columns else pd.Series(None, index=meta.index)
        genre_col = meta["genre"] if "genre" in meta.columns else pd.Series(None, index=meta.index)
        genre_rows = [
            (item, "genre:" + g)
            for item, gs, g1 in zip(meta["item"], genres_col, genre_col, strict=True)
            for g in _split_genres(gs, g1)
        ]
        if genre_rows:
            genre_frame = pd.DataFrame(genre_rows, columns=["item", "feature"]).assign(raw=1.0)
            groups.append(_group(genre_frame, config.genre_weight))
        groups.append(_group(_audio_triples(meta, config.audio_buckets), config.audio_weight))

    if artist_tags is not None and not artist_tags.empty and config.max_tags > 0:
        tags = artist_tags.dropna(subset=["artist_id", "tag_name"]).copy()
        tags["tag_weight"] = pd.to_numeric(tags["tag_weight"], errors="coerce").fillna(0.0)
        tags = tags[tags["tag_weight"] > config.min_tag_weight]
        tags["tag_name"] = tags["tag_name"].astype(str).str.strip().str.casefold()
        tags = tags.groupby(["artist_id", "tag_name"], as_index=False)["tag_weight"].max()
        tags = tags.sort_values(["artist_id", "tag_weight"], ascending=[True, False])
        tags = tags.groupby("artist_id").head(config.max_tags)
        joined = artists.merge(tags, on="artist_id", how="inner")
        groups.append(
            _group(
                pd.DataFrame(
                    {"item": joined["item"], "feature": "tag:" + joined["tag_name"], "raw": joined["tag_weight"]}
                ),
                config.tag_weight,
            )
        )

    meta_triples = pd.concat([g for g in groups if not g.empty], ignore_index=True) if groups else pd.DataFrame()
    if not meta_triples.empty:
        carriers = meta_triples.groupby("feature")["item"].transform("nunique")
        meta_triples = meta_triples[carriers >= config.min_feature_items]
        meta_triples = meta_triples.groupby(["item", "feature"], as_index=False)["weight"].sum()

    names: list[str] = []
    rows: list[np.ndarray] = []
    cols: list[np.ndarray] = []
    vals: list[np.ndarray] = []
    offset = 0
    if config.identity_weight > 0:
        names.extend("item:" + catalog["track_id"].astype(str))
        rows.append(np.arange(n_items))
        cols.append(np.arange(n_items))
        vals.append(np.full(n_items, config.identity_weight))
        offset = n_items
    if not meta_triples.empty:
        codes, uniques = pd.factorize(meta_triples["feature"], sort=True)
        names.extend(uniques)
        rows.append(meta_triples["item"].to_numpy())
        cols.append(codes + offset)
        vals.append(meta_triples["weight"].to_numpy())
    if not rows:
        raise ValueError("no item features: identity_weight is 0 and the items carry no metadata")
    matrix = sp.csr_matrix(
        (np.concatenate(vals).astype(np.float32), (np.concatenate(rows), np.concatenate(cols))),
        shape=(n_items, len(names)),
    )
    return _l1_normalise(matrix), np.asarray(names, dtype=object)


def _l1_normalise(matrix: sp.csr_matrix) -> sp.csr_matrix:
    sums = np.asarray(matrix.sum(axis=1)).ravel()
    sums[sums == 0] = 1.0
    return (sp.diags((1.0 / sums).astype(np.float32)) @ matrix).tocsr().astype(np.float32)


def _age_band(age: object) -> str | None:
    value = pd.to_numeric(pd.Series([age]), errors="coerce").iloc[0]
    if pd.isna(value) or value <= 0:
        return None
    for upper, label in ((18, "<18"), (25, "18-24"), (35, "25-34"), (45, "35-44"), (55, "45-54")):
        if value < upper:
            return label
    return "55+"


def build_user_features(user_ids: np.ndarray, users: pd.DataFrame) -> tuple[sp.csr_matrix, np.ndarray]:
    """Users × features: own id plus country, gender and age band from ``marts.dim_users`` when present."""
    position = {str(u): i for i, u in enumerate(user_ids)}
    triples: list[tuple[int, str]] = []
    for record in users.to_dict("records"):
        row = position.get(str(record.get("user_id")))
        if row is None:
            continue
        for column in ("country", "gender"):
            value = record.get(column)
            if isinstance(value, str) and value.strip():
                triples.append((row, f"{column}:{value.strip().casefold()}"))
        band = _age_band(record.get("age"))
        if band:
            triples.append((row, f"age:{band}"))
    n_users = len(user_ids)
    names = ["user:" + str(u) for u in user_ids]
    rows, cols = list(range(n_users)), list(range(n_users))
    if triples:
        frame = pd.DataFrame(triples, columns=["user", "feature"])
        codes, uniques = pd.factorize(frame["feature"], sort=True)
        names.extend(uniques)
        rows.extend(frame["user"].tolist())
        cols.extend((codes + n_users).tolist())
    matrix = sp.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(n_users, len(names)))
    return _l1_normalise(matrix), np.asarray(names, dtype=object)
