"""Recommendations for a new listener who names a few artists or tracks.

The named artists/tracks are resolved against the model's catalogue (ids or names, case- and
whitespace-insensitive; an artist stands for its ``tracks_per_artist`` most-listened tracks).
They form a one-row history that the model's scorer folds in: LightFM averages the named
items' representations — built from their *features*, so a track nobody has played yet still
counts — and refines that vector by a few softmax-likelihood steps, ALS solves for the user's
factors, EASE multiplies the history by its item weights; a blend mixes its components (with
the top-artist co-occurrence and tag similarity) by its cold-start weights.
Names that match nothing are reported back, never an error; if nothing matches, the answer is
the popularity list flagged as a fallback.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import pandas as pd
import scipy.sparse as sp

from music_platform.identity import name_key_or_blank, track_lookup_keys, track_query_keys
from music_platform.recommender.dataset import RecDataset
from music_platform.recommender.evaluation import ranking_metrics
from music_platform.recommender.models import TrainedModel
from music_platform.recommender.scoring import (
    display_names,
    popularity_recommendations,
    reasons_for,
    score_users,
    top_k,
)
from music_platform.recommender.splits import split_users

log = logging.getLogger(__name__)

COLD_START_COLUMNS = ["rank", "track_id", "score", "reason", "artist_name", "track_name"]


@dataclass
class CatalogLookup:
    """Name → item positions, most-listened first."""

    artists: dict[str, np.ndarray]
    tracks: dict[str, np.ndarray]
    names: np.ndarray  # display name per item, for reasons

    @classmethod
    def build(cls, model: TrainedModel) -> CatalogLookup:
        catalog = model.catalog.assign(position=np.arange(model.n_items), popularity=model.item_popularity)
        catalog = catalog.sort_values(["popularity", "position"], ascending=[False, True])
        artist_keys = pd.concat(
            [
                catalog[["artist_id", "position"]]
                .dropna()
                .assign(key=lambda f: f["artist_id"].astype(str).str.strip()),
                catalog[["artist_name", "position"]]
                .dropna()
                .assign(key=lambda f: f["artist_name"].map(name_key_or_blank)),
            ]
        )
        # A track is found by its id, its title, or its artist with its title (one rule for
        # names: music_platform.identity); ids are matched as given.
        by_name = [
            (key, position)
            for artist, title, position in zip(
                catalog["artist_name"], catalog["track_name"], catalog["position"], strict=True
            )
            for key in track_lookup_keys(artist, title)
        ]
        track_keys = pd.concat(
            [
                pd.DataFrame({"key": catalog["track_id"].astype(str).str.strip(), "position": catalog["position"]}),
                pd.DataFrame(by_name, columns=["key", "position"]),
            ]
        )
        # A key reached twice for one position (e.g. track_id == track name) must not repeat it.
        track_keys = track_keys[track_keys["key"] != ""].drop_duplicates(["key", "position"])
        artist_keys = artist_keys[artist_keys["key"] != ""].drop_duplicates(["key", "position"])
        return cls(
            artists={key: group["position"].to_numpy() for key, group in artist_keys.groupby("key", sort=False)},
            tracks={key: group["position"].to_numpy() for key, group in track_keys.groupby("key", sort=False)},
            names=display_names(model.catalog),
        )


def catalog_lookup(model: TrainedModel) -> CatalogLookup:
    lookup = model.__dict__.get("_catalog_lookup")
    if lookup is None:
        lookup = CatalogLookup.build(model)
        model.__dict__["_catalog_lookup"] = lookup
    return lookup


@dataclass
class ColdStartResult:
    recommendations: pd.DataFrame  # COLD_START_COLUMNS
    matched_artists: list[str] = field(default_factory=list)
    matched_tracks: list[str] = field(default_factory=list)
    unknown_artists: list[str] = field(default_factory=list)
    unknown_tracks: list[str] = field(default_factory=list)
    fallback: bool = False  # nothing matched: popularity list

    def to_records(self) -> list[dict[str, Any]]:
        return self.recommendations.to_dict("records")


def _seed_positions(
    model: TrainedModel, artists: Sequence[str], tracks: Sequence[str], tracks_per_artist: int
) -> tuple[np.ndarray, list[str], list[str], list[str], list[str]]:
    lookup = catalog_lookup(model)
    positions: list[np.ndarray] = []
    matched_artists, unknown_artists, matched_tracks, unknown_tracks = [], [], [], []
    for name in artists:
        found = lookup.artists.get(name.strip()) if isinstance(name, str) else None
        if found is None:
            found = lookup.artists.get(name_key_or_blank(name))
        if found is None:
            unknown_artists.append(name)
        else:
            matched_artists.append(name)
            positions.append(found[:tracks_per_artist])
    for name in tracks:
        keys = [name.strip(), *track_query_keys(name)] if isinstance(name, str) else []
        found = next((lookup.tracks[key] for key in keys if key in lookup.tracks), None)
        if found is None:
            unknown_tracks.append(name)
        else:
            matched_tracks.append(name)
            positions.append(found[:1])  # an ambiguous title means its most-listened track
    seeds = np.unique(np.concatenate(positions)) if positions else np.array([], dtype=np.int64)
    return seeds, matched_artists, unknown_artists, matched_tracks, unknown_tracks


def recommend_cold_start(
    model: TrainedModel,
    artists: Sequence[str] = (),
    tracks: Sequence[str] = (),
    k: int = 10,
    tracks_per_artist: int = 10,
) -> ColdStartResult:
    """Top-``k`` items for a listener who names ``artists`` and/or ``tracks`` (ids or names).

    Named items themselves are excluded. Each row carries a reason ("because you like X").
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    seeds, matched_a, unknown_a, matched_t, unknown_t = _seed_positions(model, artists, tracks, tracks_per_artist)
    if len(seeds) == 0:
        fallback = popularity_recommendations(model, k)
        positions = pd.Index(model.item_ids).get_indexer(fallback["track_id"])
        fallback["artist_name"] = model.catalog["artist_name"].to_numpy(dtype=object)[positions]
        fallback["track_name"] = model.catalog["track_name"].to_numpy(dtype=object)[positions]
        return ColdStartResult(fallback[COLD_START_COLUMNS], matched_a, matched_t, unknown_a, unknown_t, fallback=True)
    history = sp.csr_matrix(
        (np.ones(len(seeds), dtype=np.float32), seeds, np.array([0, len(seeds)])), shape=(1, model.n_items)
    )
    scores = score_users(model, np.array([-1]), history)
    items, values = top_k(scores, k, exclude=history, num_threads=1)
    reasons = reasons_for(model, history, items, catalog_lookup(model).names, prefix="because you like")
    valid = items[0] >= 0
    chosen = items[0][valid]
    frame = pd.DataFrame(
        {
            "rank": np.arange(1, len(chosen) + 1, dtype=np.int32),
            "track_id": model.item_ids[chosen],
            "score": values[0][valid].astype(np.float64),
            "reason": reasons[0][valid],
            "artist_name": model.catalog["artist_name"].to_numpy(dtype=object)[chosen],
            "track_name": model.catalog["track_name"].to_numpy(dtype=object)[chosen],
        },
        columns=COLD_START_COLUMNS,
    )
    return ColdStartResult(frame, matched_a, matched_t, unknown_a, unknown_t)


# ---------------------------------------------------------------------------------------
# Evaluation protocol
# ---------------------------------------------------------------------------------------
def cold_start_split(
    dataset: RecDataset, fraction: float = 0.1, n_named: int = 5, seed: int = 0
) -> tuple[RecDataset, sp.csr_matrix, sp.csr_matrix]:
    """(training data of the kept users, named items of the held-out users, their remaining items).

    A held-out listener "names" their ``n_named`` most-played items — what one answers when asked
    for favourite artists; the rest of their items are the test set. Listeners with fewer than
    ``n_named + 1`` items are skipped (nothing left to test).
    """
    kept, held = split_users(dataset, fraction=fraction, seed=seed)
    counts = held.play_counts
    named_rows, named_cols, rest_rows, rest_cols = [], [], [], []
    row = 0
    for user in np.flatnonzero(np.diff(counts.indptr) > n_named):
        lo, hi = counts.indptr[user], counts.indptr[user + 1]
        items, plays = counts.indices[lo:hi], counts.data[lo:hi]
        order = np.lexsort((items, -plays))  # most played first, ties by item index
        named_rows += [row] * n_named
        named_cols += list(items[order[:n_named]])
        rest_rows += [row] * (hi - lo - n_named)
        rest_cols += list(items[order[n_named:]])
        row += 1
    shape = (row, dataset.n_items)
    named = sp.csr_matrix((np.ones(len(named_cols), np.float32), (named_rows, named_cols)), shape=shape)
    rest = sp.csr_matrix((np.ones(len(rest_cols), np.float32), (rest_rows, rest_cols)), shape=shape)
    return kept, named, rest


def evaluate_cold_start(
    model: TrainedModel,
    named: sp.csr_matrix,
    rest: sp.csr_matrix,
    k: int = 10,
    per_user: dict[str, np.ndarray] | None = None,
) -> dict[str, float]:
    """Mean precision/recall/NDCG/MAP@k of ``model`` for listeners known only by ``named`` items
    (``per_user`` receives each metric per listener, for standard errors and paired tests)."""
    sums: dict[str, float] = {}
    parts: dict[str, list[np.ndarray]] = {}
    for begin in range(0, named.shape[0], 1024):
        rows = slice(begin, min(begin + 1024, named.shape[0]))
        history = named[rows]
        scores = score_users(model, np.full(history.shape[0], -1), history)
        items, _ = top_k(scores, k, exclude=history)
        for metric, values in ranking_metrics(items, rest[rows], k).items():
            sums[metric] = sums.get(metric, 0.0) + float(np.nansum(values))
            parts.setdefault(metric, []).append(values)
    users = max(named.shape[0], 1)
    result = {f"{metric}@{k}": value / users for metric, value in sums.items()}
    result["users"] = float(named.shape[0])
    if per_user is not None:
        per_user.update({f"{metric}@{k}": np.concatenate(values) for metric, values in parts.items()})
    return result


# ---------------------------------------------------------------------------------------
# The one cold-start rule the service applies (serving/coldstart.py only wires it)
# ---------------------------------------------------------------------------------------
# For a new listener who named catalogue artists and tracks, in this order:
# 1. "model": the trained model folds the named items in (``recommend_cold_start``) when the
#    served version has one and it knows at least one named item;
# 2. "catalogue": warehouse signals only — neighbours of the named tracks, the named artists'
#    own most-listened tracks, popular tracks of their genres;
# 3. the most-listened tracks, flagged ``fallback`` (strategy still "catalogue": the public API
#    names two strategies), when neither finds anything.
# A failing model degrades to step 2, never to an error.
STRATEGY_MODEL = "model"
STRATEGY_CATALOGUE = "catalogue"
POPULAR_REASON = "popular with all listeners"

# Weights of the catalogue signals; a neighbour of a named track counts most.
SIMILAR_WEIGHT = 1.0
NAMED_ARTIST_WEIGHT = 0.6
GENRE_WEIGHT = 0.5
POPULARITY_TIEBREAK = 0.05
TRACKS_PER_NAMED_ARTIST = 20
TRACKS_PER_GENRE = 200
SIMILAR_PER_NAMED_TRACK = 50


@dataclass(frozen=True)
class Suggestion:
    track: int  # position in the catalogue
    score: float
    reason: str


@dataclass(frozen=True)
class ColdStartAnswer:
    suggestions: list[Suggestion]
    strategy: str  # STRATEGY_MODEL or STRATEGY_CATALOGUE
    fallback: bool  # the popularity list: nothing the listener named helped


class ColdStartCatalogue(Protocol):
    """What cold start reads of a catalogue (the serving snapshot's ``Catalogue`` is one)."""

    track_ids: list[str]
    track_index: dict[str, int]
    track_artist: np.ndarray
    track_listens: np.ndarray
    track_popularity: np.ndarray
    track_genres: list[tuple[str, ...]]
    artist_ids: list[str]
    artist_names: list[str | None]
    artist_genres: list[tuple[str, ...]]
    tracks_by_genre: dict[str, np.ndarray]
    tracks_by_artist: dict[int, np.ndarray]
    popular: np.ndarray

    def track_label(self, track: int) -> str: ...


# (track, k) -> (neighbour positions, their scores, whether they are a fallback)
SimilarTracks = Callable[[int, int], tuple[Sequence[int], Sequence[float], bool]]


def model_suggestions(
    model: TrainedModel, cat: ColdStartCatalogue, artists: Sequence[int], tracks: Sequence[int], k: int
) -> list[Suggestion]:
    """The model's top ``k`` in catalogue positions; empty when it knows none of the named items."""
    result = recommend_cold_start(
        model, artists=[cat.artist_ids[a] for a in artists], tracks=[cat.track_ids[t] for t in tracks], k=k
    )
    if result.fallback:
        return []
    named = set(tracks)
    suggestions = []
    frame = result.recommendations
    for track_id, score, reason in zip(frame["track_id"], frame["score"], frame["reason"], strict=True):
        track = cat.track_index.get(str(track_id))
        if track is None or track in named:
            continue  # not in the served catalogue: nothing to name it with
        suggestions.append(Suggestion(track=track, score=float(score), reason=str(reason)))
    return suggestions[:k]


def catalogue_suggestions(
    cat: ColdStartCatalogue, similar: SimilarTracks, artists: Sequence[int], tracks: Sequence[int], k: int
) -> list[Suggestion]:
    """Warehouse-only cold start: similar tracks of the named tracks, the named artists' own
    most-listened tracks, and popular tracks of their genres and tags; never a named track."""
    excluded = set(tracks)
    scores: dict[int, float] = {}
    best_part: dict[int, tuple[float, str]] = {}

    def add(track: int, value: float, reason: str) -> None:
        if track in excluded or value <= 0:
            return
        scores[track] = scores.get(track, 0.0) + value
        if value > best_part.get(track, (0.0, ""))[0]:
            best_part[track] = (value, reason)

    for named in tracks:
        neighbours, similarity, _ = similar(named, SIMILAR_PER_NAMED_TRACK)
        top = max(similarity, default=0.0)
        label = cat.track_label(named)
        for position, (track, value) in enumerate(zip(neighbours, similarity, strict=True)):
            # Scores of different models are not comparable: use the share of the best one,
            # or rank order when scores are flat or missing.
            strength = value / top if top > 0 else 1.0 / (1 + position)
            add(track, SIMILAR_WEIGHT * strength, f"similar to {label}")

    for artist in artists:
        name = cat.artist_names[artist] or cat.artist_ids[artist]
        for track in cat.tracks_by_artist.get(artist, np.zeros(0, np.int32))[:TRACKS_PER_NAMED_ARTIST].tolist():
            add(track, NAMED_ARTIST_WEIGHT * (0.5 + 0.5 * cat.track_popularity[track]), f"by {name}, whom you named")

    for genre, weight in _genre_weights(cat, artists, tracks).items():
        for track in cat.tracks_by_genre.get(genre, np.zeros(0, np.int32))[:TRACKS_PER_GENRE].tolist():
            add(track, GENRE_WEIGHT * weight * cat.track_popularity[track], f"popular in {genre}")

    final = {t: scores[t] + POPULARITY_TIEBREAK * float(cat.track_popularity[t]) for t in scores}
    ranked = sorted(final, key=lambda t: (-final[t], -cat.track_listens[t], t))
    return [Suggestion(track=t, score=final[t], reason=best_part[t][1]) for t in _diversified(cat, ranked, k)]


def _diversified(cat: ColdStartCatalogue, ranked: list[int], k: int) -> list[int]:
    """At most a few tracks per artist near the top, so the list is not one artist's catalogue;
    the overflow only fills what is left."""
    per_artist = max(2, k // 4)
    counts: dict[int, int] = {}
    chosen: list[int] = []
    overflow: list[int] = []
    for track in ranked:
        artist = int(cat.track_artist[track])
        if artist >= 0 and counts.get(artist, 0) >= per_artist:
            overflow.append(track)
            continue
        counts[artist] = counts.get(artist, 0) + 1
        chosen.append(track)
        if len(chosen) == k:
            return chosen
    return chosen + overflow[: k - len(chosen)]


def _genre_weights(cat: ColdStartCatalogue, artists: Sequence[int], tracks: Sequence[int]) -> dict[str, float]:
    """Genres of the named artists (best tag first) and named tracks, summing to 1."""
    weights: dict[str, float] = {}
    for artist in artists:
        for rank, genre in enumerate(cat.artist_genres[artist]):
            weights[genre] = weights.get(genre, 0.0) + 1.0 / (rank + 1)
    for track in tracks:
        for rank, genre in enumerate(cat.track_genres[track][:3]):
            weights[genre] = weights.get(genre, 0.0) + 0.5 / (rank + 1)
    total = sum(weights.values())
    return {g: w / total for g, w in weights.items()} if total else {}


def popular_suggestions(cat: ColdStartCatalogue, tracks: Sequence[int], k: int) -> list[Suggestion]:
    named = set(tracks)
    popular = [t for t in cat.popular.tolist() if t not in named][:k]
    return [Suggestion(t, float(cat.track_popularity[t]), POPULAR_REASON) for t in popular]


def cold_start_answer(
    cat: ColdStartCatalogue,
    similar: SimilarTracks,
    artists: Sequence[int],
    tracks: Sequence[int],
    k: int,
    model: TrainedModel | None = None,
) -> ColdStartAnswer:
    """The cold-start rule (model → catalogue → popularity) for catalogue positions ``artists`` and
    ``tracks``; up to ``k`` suggestions, best first, never a named track."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if model is not None:
        try:
            suggestions = model_suggestions(model, cat, artists, tracks, k)
        except Exception as exc:  # a model failure degrades to the catalogue, never an error
            log.warning("cold start with the %s model failed (%s): using the catalogue", model.kind, exc)
            suggestions = []
        if suggestions:
            return ColdStartAnswer(suggestions, STRATEGY_MODEL, fallback=False)
    suggestions = catalogue_suggestions(cat, similar, artists, tracks, k)
    if suggestions:
        return ColdStartAnswer(suggestions, STRATEGY_CATALOGUE, fallback=False)
    return ColdStartAnswer(popular_suggestions(cat, tracks, k), STRATEGY_CATALOGUE, fallback=True)
