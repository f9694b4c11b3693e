"""The one cold-start rule (recommender.cold_start.cold_start_answer): model → catalogue → popularity."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest

from music_platform.recommender.cold_start import (
    POPULAR_REASON,
    STRATEGY_CATALOGUE,
    STRATEGY_MODEL,
    catalogue_suggestions,
    cold_start_answer,
)

# Names in several scripts: the rule works on positions, the reasons carry the names.
ARTISTS = ["Björk", "Кино", "坂本龍一", "!!!"]


@dataclass
class FakeCatalogue:
    """Six tracks: 0-1 by Björk, 2-3 by Кино, 4 by 坂本龍一, 5 by !!! (most listened)."""

    track_ids: list[str] = field(default_factory=lambda: [f"t{i}" for i in range(6)])
    track_artist: np.ndarray = field(default_factory=lambda: np.array([0, 0, 1, 1, 2, 3], dtype=np.int32))
    track_listens: np.ndarray = field(default_factory=lambda: np.array([50, 40, 30, 20, 10, 90]))
    track_genres: list[tuple[str, ...]] = field(
        default_factory=lambda: [("electronic",), ("electronic",), ("рок",), ("рок",), ("ambient",), ("punk",)]
    )
    artist_ids: list[str] = field(default_factory=lambda: ["a0", "a1", "a2", "a3"])
    artist_names: list[str | None] = field(default_factory=lambda: list(ARTISTS))
    artist_genres: list[tuple[str, ...]] = field(
        default_factory=lambda: [("electronic",), ("рок",), ("ambient",), ("punk",)]
    )
    popular: np.ndarray = field(default_factory=lambda: np.array([5, 0, 1, 2, 3, 4], dtype=np.int32))

    def __post_init__(self) -> None:
        self.track_index = {t: i for i, t in enumerate(self.track_ids)}
        self.track_popularity = np.log1p(self.track_listens) / np.log1p(self.track_listens.max())
        self.tracks_by_artist = {a: np.flatnonzero(self.track_artist == a).astype(np.int32) for a in range(4)}
        self.tracks_by_genre: dict[str, np.ndarray] = {}
        for track, genres in enumerate(self.track_genres):
            for genre in genres:
                self.tracks_by_genre.setdefault(genre, np.zeros(0, np.int32))
                self.tracks_by_genre[genre] = np.append(self.tracks_by_genre[genre], track).astype(np.int32)

    def track_label(self, track: int) -> str:
        return f"{self.track_ids[track]} by {self.artist_names[self.track_artist[track]]}"


def no_neighbours(track: int, k: int):
    return [], [], True


def neighbours_of_zero(track: int, k: int):
    return ([4, 2], [0.9, 0.3], False) if track == 0 else ([], [], True)


def test_catalogue_rule_uses_neighbours_named_artists_and_genres_never_a_named_track():
    cat = FakeCatalogue()
    answer = cold_start_answer(cat, neighbours_of_zero, artists=[1], tracks=[0], k=4)
    assert answer.strategy == STRATEGY_CATALOGUE and not answer.fallback
    tracks = [s.track for s in answer.suggestions]
    assert 0 not in tracks and len(tracks) == len(set(tracks)) <= 4
    assert tracks[0] == 2  # a neighbour of the named track *and* by the named artist Кино
    reasons = {s.track: s.reason for s in answer.suggestions}
    assert reasons[4] == "similar to t0 by Björk"
    assert "Кино" in reasons[3]
    scores = [s.score for s in answer.suggestions]
    assert scores == sorted(scores, reverse=True)


def test_nothing_found_gives_the_popularity_list_flagged_as_fallback():
    cat = FakeCatalogue()
    cat.artist_genres = [(), (), (), ()]
    cat.tracks_by_artist = {}
    answer = cold_start_answer(cat, no_neighbours, artists=[3], tracks=[5], k=3)
    assert answer.fallback and answer.strategy == STRATEGY_CATALOGUE
    assert [s.track for s in answer.suggestions] == [0, 1, 2]  # the most popular, the named track skipped
    assert {s.reason for s in answer.suggestions} == {POPULAR_REASON}


class BrokenModel:
    kind = "blend"


def test_a_failing_model_degrades_to_the_catalogue(caplog):
    answer = cold_start_answer(FakeCatalogue(), neighbours_of_zero, artists=[], tracks=[0], k=3, model=BrokenModel())
    assert answer.strategy == STRATEGY_CATALOGUE and answer.suggestions
    assert "using the catalogue" in caplog.text


def test_the_trained_model_answers_first_in_catalogue_positions(models_for_rule):
    model, cat = models_for_rule
    answer = cold_start_answer(cat, no_neighbours, artists=[0], tracks=[], k=3, model=model)
    assert answer.strategy == STRATEGY_MODEL and not answer.fallback
    assert 0 < len(answer.suggestions) <= 3
    assert not {0, 1} & {s.track for s in answer.suggestions}  # the named artist's own tracks are the history
    # A model that knows none of the named items hands over to the catalogue.
    unknown = FakeCatalogue()
    unknown.artist_ids = ["zz0", "zz1", "zz2", "zz3"]
    unknown.track_ids = [f"zz{i}" for i in range(6)]
    unknown.__post_init__()
    answer = cold_start_answer(unknown, no_neighbours, artists=[0], tracks=[], k=3, model=model)
    assert answer.strategy == STRATEGY_CATALOGUE


def test_k_must_be_positive():
    with pytest.raises(ValueError, match="k must be"):
        cold_start_answer(FakeCatalogue(), no_neighbours, artists=[0], tracks=[], k=0)
    assert catalogue_suggestions(FakeCatalogue(), no_neighbours, [], [], 5) == []


@pytest.fixture(scope="module")
def models_for_rule():
    """A popularity model whose catalogue is the fake one (ids t0..t5, artists a0..a3)."""
    import pandas as pd

    from music_platform.recommender import build_dataset, train_popularity

    cat = FakeCatalogue()
    interactions = pd.DataFrame(
        {
            "user_id": ["u1", "u1", "u2", "u2", "u3", "u3", "u3"],
            "track_id": ["t0", "t2", "t1", "t5", "t5", "t3", "t4"],
            "play_count": [3, 1, 2, 5, 1, 1, 2],
        }
    )
    tracks = pd.DataFrame(
        {
            "track_id": cat.track_ids,
            "track_name": [f"song {i}" for i in range(6)],
            "artist_id": [cat.artist_ids[a] for a in cat.track_artist],
            "artist_name": [ARTISTS[a] for a in cat.track_artist],
        }
    )
    return train_popularity(build_dataset(interactions, tracks)), cat
