"""Recent listens in the service (issue 19): a track played since the published snapshot is never
recommended back, and answers lean on the newest listens through the model's similar tracks.

The sample warehouse stands in for a published model; ``marts.recent_listens`` (the dbt view the
pipeline builds) is written here as a table with its columns. The refresh is called directly
(the server runs it in the background every MUSIC_PLATFORM_RECENT_LISTENS_SECONDS).
"""

from __future__ import annotations

import warnings
from datetime import datetime, timedelta

import orjson
import pandas as pd
import pytest

from music_platform.serving.limits import MAX_K
from music_platform.serving.recent import load_recent_listens
from music_platform.serving.sample_data import publish_version, write_sample_warehouse
from music_platform.serving.service import ServingConfig
from music_platform.warehouse.duckdb_warehouse import DuckDBWarehouse
from music_platform_tests.test_serving import make_settings

with warnings.catch_warnings():
    warnings.simplefilter("ignore", UserWarning)
    from starlette.testclient import TestClient

pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`:UserWarning")

NOW = datetime(2025, 3, 8, 12, 0)


@pytest.fixture
def world(tmp_path):
    settings = make_settings(tmp_path)
    warehouse = DuckDBWarehouse(settings.resolved_duckdb_path)
    write_sample_warehouse(warehouse, users=60, artists=40, tracks=300, model_version="v1")
    return settings, warehouse


def _app(settings):
    from music_platform.serving.app import create_app

    return create_app(settings, ServingConfig(reload_seconds=0, recent_listens_seconds=0, access_log="off"))


def _write_recent(warehouse: DuckDBWarehouse, plays: dict[str, list[str]]) -> None:
    rows = [
        {"user_id": user, "track_id": track, "play_count": 1,
         "last_played_at": NOW - timedelta(minutes=rank), "recency_rank": rank}
        for user, tracks in plays.items()
        for rank, track in enumerate(tracks, 1)
    ]  # fmt: skip
    frame = pd.DataFrame(rows, columns=["user_id", "track_id", "play_count", "last_played_at", "recency_rank"])
    warehouse.replace_table("marts", "recent_listens", frame.astype({"play_count": "int64", "recency_rank": "int64"}))


def _recs(warehouse, user: str) -> list[str]:
    frame = warehouse.query_df(
        f"select track_id from ml.user_recommendations where user_id = '{user}' and model_version = 'v1' order by rank"
    )
    return list(frame["track_id"])


def _seed_with_a_neighbour_in(warehouse, recs: list[str]) -> tuple[str, str]:
    """A track outside ``recs`` whose model neighbours include one of ``recs``."""
    pairs = warehouse.query_df(
        "select track_id, similar_track_id from ml.similar_tracks where model_version = 'v1' order by track_id, rank"
    )
    for track, neighbour in zip(pairs["track_id"], pairs["similar_track_id"], strict=True):
        if track not in recs and neighbour in recs[2:]:
            return track, neighbour
    pytest.skip("the sample world has no such pair")


def _answer(client, user: str, k: int = MAX_K) -> dict:
    response = client.get(f"/users/{user}/recommendations?k={k}")
    assert response.status_code == 200, response.text
    return orjson.loads(response.content)


def test_a_just_played_track_is_never_recommended_and_the_answer_leans_on_it(world):
    settings, warehouse = world
    user = "user_0000003"
    recs = _recs(warehouse, user)
    seed, neighbour = _seed_with_a_neighbour_in(warehouse, recs)
    with TestClient(_app(settings)) as client:
        service = client.app.service
        before = _answer(client, user)
        assert [i["track_id"] for i in before["recommendations"]] == recs[:MAX_K]

        # The listener plays the seed (newest) and their top recommendation.
        _write_recent(warehouse, {user: [seed, recs[0]]})
        assert service.recent_refresher.refresh()
        after = _answer(client, user)
        ids = [i["track_id"] for i in after["recommendations"]]
        assert recs[0] not in ids and seed not in ids
        assert after["fallback"] is False and after["model_version"] == "v1"
        # The recommendation the model finds close to the seed comes first, saying why.
        first = after["recommendations"][0]
        assert first["track_id"] == neighbour and first["rank"] == 1
        assert first["reason"].startswith("because you just played ")
        assert [i["rank"] for i in after["recommendations"]] == list(range(1, len(ids) + 1))
        assert set(ids) <= set(recs)  # nothing outside the published answer (it excludes what was heard)
        assert len(_answer(client, user, k=3)["recommendations"]) == 3

        # Another user's answer is untouched (the snapshot's fast path).
        other = "user_0000004"
        assert [i["track_id"] for i in _answer(client, other)["recommendations"]] == _recs(warehouse, other)[:MAX_K]
        health = orjson.loads(client.get("/health").content)["recent_listens"]
        assert health["users"] == 1 and health["rows"] == 2 and health["last_error"] is None


def test_an_unknown_listener_gets_the_popular_list_without_what_they_played(world):
    settings, warehouse = world
    user = "새로운_listener"
    with TestClient(_app(settings)) as client:
        popular = [i["track_id"] for i in _answer(client, user)["recommendations"]]
        _write_recent(warehouse, {user: [popular[0], popular[3]]})
        client.app.service.recent_refresher.refresh()
        answer = _answer(client, user)
        ids = [i["track_id"] for i in answer["recommendations"]]
        assert answer["fallback"] is True
        assert popular[0] not in ids and popular[3] not in ids
        assert len(ids) == MAX_K and len(set(ids)) == len(ids)


def test_a_new_publication_is_still_filtered_before_the_next_refresh(world):
    settings, warehouse = world
    user = "user_0000007"
    with TestClient(_app(settings)) as client:
        service = client.app.service
        recs = _recs(warehouse, user)
        _write_recent(warehouse, {user: [recs[1]]})
        service.recent_refresher.refresh()
        publish_version(warehouse, "v2", users=60, seed=5)
        assert service.reload().reloaded
        assert service.recent.snapshot is not service.snapshot  # the overlay is older than the snapshot
        v2 = warehouse.query_df(
            f"select track_id from ml.user_recommendations where user_id = '{user}' and model_version = 'v2'"
        )
        _write_recent(warehouse, {user: [recs[1], *list(v2["track_id"])[:2]]})  # not refreshed yet
        answer = _answer(client, user)
        assert answer["model_version"] == "v2"
        assert recs[1] not in [i["track_id"] for i in answer["recommendations"]]


def test_a_failed_refresh_keeps_the_previous_listens(world):
    settings, warehouse = world
    user = "user_0000002"
    with TestClient(_app(settings)) as client:
        service = client.app.service
        assert not service.recent_refresher.refresh()  # no relation yet: nothing to apply, said so
        assert "does not exist" in service.recent_refresher.health()["last_error"]
        recs = _recs(warehouse, user)
        _write_recent(warehouse, {user: [recs[0]]})
        assert service.recent_refresher.refresh()
        with warehouse.connect() as conn:
            conn.execute("drop table marts.recent_listens")
            conn.execute("create view marts.recent_listens as select 1 / 0 as user_id")  # broken relation
        assert not service.recent_refresher.refresh()
        assert service.recent_refresher.health()["last_error"]
        assert recs[0] not in [i["track_id"] for i in _answer(client, user)["recommendations"]]


def test_loading_is_bounded_and_keeps_the_most_recent_plays(world):
    _settings, warehouse = world
    _write_recent(warehouse, {"a": ["t1", "t2", "t3"], "ü": ["t9"]})
    listens = load_recent_listens(warehouse, max_rows=3)
    assert listens.truncated and listens.rows == 3
    assert listens.by_user == {"a": ("t1", "t2"), "ü": ("t9",)}
