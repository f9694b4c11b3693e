"""Recommendations for a new listener who names a few artists and tracks.

The service resolves the names against the snapshot's catalogue (case- and
accent-insensitive) and hands catalogue indices to a ``ColdStartRecommender``. Two
implementations: ``CatalogueColdStartRecommender`` needs only the warehouse tables already in
the snapshot; ``ModelColdStartRecommender`` (``model_coldstart.py``) asks the trained model
through the recommender package and is preferred when the version's artifact exists.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from music_platform.serving.snapshot import Snapshot

# Weights of the three signals; a neighbour of a named track counts most.
SIMILAR_WEIGHT = 1.0
NAMED_ARTIST_WEIGHT = 0.6
GENRE_WEIGHT = 0.5
POPULARITY_TIEBREAK = 0.05
TRACKS_PER_NAMED_ARTIST = 20
TRACKS_PER_GENRE = 200
SIMILAR_PER_NAMED_TRACK = 50


@dataclass(frozen=True)
class Suggestion:
    track: int  # index into the snapshot's catalogue
    score: float
    reason: str


@runtime_checkable
class ColdStartRecommender(Protocol):
    """Ranks catalogue tracks for a listener described by artists and tracks they like."""

    strategy: str

    def recommend(self, snapshot: Snapshot, artists: Sequence[int], tracks: Sequence[int], k: int) -> list[Suggestion]:
        """Up to ``k`` suggestions, best first, never one of ``tracks`` itself."""
        ...


class CatalogueColdStartRecommender:
    """Warehouse-only cold start: similar tracks of the named tracks, the named artists' own
    most-listened tracks, and popular tracks of their genres and tags."""

    strategy = "catalogue"

    def recommend(self, snapshot: Snapshot, artists: Sequence[int], tracks: Sequence[int], k: int) -> list[Suggestion]:
        cat = snapshot.catalogue
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
            neighbours, similarity, _ = snapshot.similar_track_indices(named, SIMILAR_PER_NAMED_TRACK)
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
                add(
                    track, NAMED_ARTIST_WEIGHT * (0.5 + 0.5 * cat.track_popularity[track]), f"by {name}, whom you named"
                )

        genre_weights = self._genre_weights(snapshot, artists, tracks)
        for genre, weight in genre_weights.items():
            for track in cat.tracks_by_genre.get(genre, np.zeros(0, np.int32))[:TRACKS_PER_GENRE].tolist():
                add(track, GENRE_WEIGHT * weight * cat.track_popularity[track], f"popular in {genre}")

        final = {t: scores[t] + POPULARITY_TIEBREAK * float(cat.track_popularity[t]) for t in scores}
        ranked = sorted(final, key=lambda t: (-final[t], -cat.track_listens[t], t))
        return [Suggestion(track=t, score=final[t], reason=best_part[t][1]) for t in self._diversified(cat, ranked, k)]

    @staticmethod
    def _diversified(cat, ranked: list[int], k: int) -> list[int]:
        """At most a few tracks per artist near the top, so the list is not one artist's
        catalogue; the overflow only fills what is left."""
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

    @staticmethod
    def _genre_weights(snapshot: Snapshot, artists: Sequence[int], tracks: Sequence[int]) -> dict[str, float]:
        """Genres of the named artists (best tag first) and named tracks, summing to 1."""
        cat = snapshot.catalogue
        weights: dict[str, float] = {}
        for artist in artists:
            for rank, genre in enumerate(cat.artist_genres[artist]):
                weights[genre] = weights.get(genre, 0.0) + 1.0 / (rank + 1)
        for track in tracks:
            for rank, genre in enumerate(cat.track_genres[track][:3]):
                weights[genre] = weights.get(genre, 0.0) + 0.5 / (rank + 1)
        total = sum(weights.values())
        return {g: w / total for g, w in weights.items()} if total else {}
