"""The recommendation service: every route against a small sample warehouse (issue 7)."""

from __future__ import annotations

import math
import socket
import warnings
from pathlib import Path

import orjson
import pandas as pd
import pytest

from music_platform.config import ConfigError, Settings
from music_platform.identity import name_key
from music_platform.serving.app import create_app
from music_platform.serving.limits import MAX_K
from music_platform.serving.sample_data import registry_row, write_sample_warehouse
from music_platform.serving.service import ServingConfig
from music_platform.serving.snapshot import latest_published_version, load_snapshot
from music_platform.warehouse.duckdb_warehouse import DuckDBWarehouse

# The display snapshot of the sample publication (copied with the tables a test serves).
PUBLISHED_DISPLAY = (("ml", "published_tracks"), ("ml", "published_artists"))

with warnings.catch_warnings():  # starlette suggests httpx2, which is not a dependency here
    warnings.simplefilter("ignore", UserWarning)
    from starlette.testclient import TestClient

pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`:UserWarning")

USERS = 300


def make_settings(root: Path) -> Settings:
    return Settings(target="duckdb", data_dir=root, duckdb_path=root / "warehouse.duckdb")


def make_client(settings: Settings, **config) -> TestClient:
    config.setdefault("access_log", "off")
    return TestClient(create_app(settings, ServingConfig(reload_seconds=0, **config)))


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> tuple[Settings, DuckDBWarehouse]:
    root = tmp_path_factory.mktemp("serving")
    settings = make_settings(root)
    warehouse = DuckDBWarehouse(settings.resolved_duckdb_path)
    write_sample_warehouse(warehouse, users=USERS, artists=150, tracks=1500, model_version="v1")
    return settings, warehouse


@pytest.fixture(scope="module")
def client(world):
    settings, _ = world
    with make_client(settings) as test_client:
        yield test_client


def expected_recommendations(warehouse: DuckDBWarehouse, user_id: str, version: str = "v1") -> pd.DataFrame:
    return warehouse.query_df(
        "select r.rank, r.track_id, r.score, r.reason, t.track_name, t.artist_name, t.artist_id "
        "from ml.user_recommendations r left join marts.dim_tracks t using (track_id) "
        f"where r.user_id = '{user_id}' and r.model_version = '{version}' order by r.rank limit 10"
    )


def test_health_reports_the_loaded_version(client):
    answer = client.get("/health")
    assert answer.status_code == 200
    health = answer.json()
    assert health["status"] == "ok"
    assert health["model_version"] == "v1"
    assert health["users"] == USERS
    assert health["recommendations"] == USERS * MAX_K
    assert health["tracks"] == 1500
    assert health["cold_start"] == "catalogue"


def test_user_recommendations_are_the_warehouse_rows_with_names(client, world):
    _, warehouse = world
    expected = expected_recommendations(warehouse, "user_0000007")
    answer = client.get("/users/user_0000007/recommendations")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/json"
    body = answer.json()
    assert body["user_id"] == "user_0000007"
    assert body["model_version"] == "v1"
    assert body["fallback"] is False
    assert body["k"] == 10
    items = body["recommendations"]
    assert [i["rank"] for i in items] == list(range(1, 11))
    assert [i["track_id"] for i in items] == expected["track_id"].tolist()
    assert [i["track_name"] for i in items] == expected["track_name"].tolist()
    assert [i["artist_name"] for i in items] == expected["artist_name"].tolist()
    assert [i["reason"] for i in items] == expected["reason"].tolist()
    for item, score in zip(items, expected["score"], strict=True):
        assert math.isclose(item["score"], score, rel_tol=1e-5)


def test_k_cuts_the_list_and_never_invents_items(client):
    top3 = client.get("/users/user_0000007/recommendations?k=3").json()
    top10 = client.get("/users/user_0000007/recommendations?k=10").json()
    assert top3["k"] == 3
    assert top3["recommendations"] == top10["recommendations"][:3]
    everything = client.get(f"/users/user_0000007/recommendations?k={MAX_K}").json()
    assert everything["k"] == MAX_K and len(everything["recommendations"]) == MAX_K  # as many as asked
    assert everything["recommendations"][:10] == top10["recommendations"]
    similar = client.get(f"/tracks/{top3['recommendations'][0]['track_id']}/similar?k={MAX_K}").json()
    assert similar["k"] == MAX_K and len(similar["similar"]) == MAX_K


@pytest.mark.parametrize("route", ["/users/user_0000007/recommendations", "/tracks/anything/similar"])
def test_k_above_the_maximum_is_a_422_that_names_it(client, route):
    answer = client.get(f"{route}?k={MAX_K + 1}")
    assert answer.status_code == 422
    assert f"between 1 and {MAX_K}" in answer.json()["message"]
    assert answer.json()["status"] == 422


def test_unknown_user_gets_the_popularity_list_flagged_as_fallback(client, world):
    _, warehouse = world
    answer = client.get("/users/someone_new/recommendations?k=5")
    assert answer.status_code == 200
    body = answer.json()
    assert body["fallback"] is True
    assert body["user_id"] == "someone_new"
    most_listened = warehouse.query_df(
        "select track_id from marts.dim_tracks order by listen_count desc, track_id limit 5"
    )["track_id"].tolist()
    assert [i["track_id"] for i in body["recommendations"]] == most_listened
    assert all(i["reason"] == "popular with all listeners" for i in body["recommendations"])


def test_similar_tracks_follow_ml_similar_tracks(client, world):
    _, warehouse = world
    track_id = warehouse.query_df(
        "select track_id from ml.similar_tracks group by track_id having count(*) >= 5 order by track_id limit 1"
    )["track_id"].iloc[0]
    expected = warehouse.query_df(
        f"select similar_track_id from ml.similar_tracks where track_id = '{track_id}' order by rank limit 5"
    )["similar_track_id"].tolist()
    answer = client.get(f"/tracks/{track_id}/similar?k=5")
    assert answer.status_code == 200
    body = answer.json()
    assert body["track"]["track_id"] == track_id
    assert body["fallback"] is False
    assert [i["track_id"] for i in body["similar"]] == expected
    assert all(i["track_name"] for i in body["similar"])


def test_unknown_track_is_404_with_a_message(client):
    answer = client.get("/tracks/0123456789abcdef0123456789abcdef/similar")
    assert answer.status_code == 404
    assert "not in the catalogue" in answer.json()["message"]


def test_track_without_neighbours_gets_popular_tracks_of_its_genre(world, tmp_path):
    settings, warehouse = world
    # A copy of the world whose similar_tracks table lacks one track.
    own = make_settings(tmp_path)
    own_warehouse = DuckDBWarehouse(own.resolved_duckdb_path)
    for schema, table in (
        ("marts", "dim_tracks"),
        ("marts", "dim_artists"),
        ("ml", "user_recommendations"),
        ("ml", "model_registry"),
        *PUBLISHED_DISPLAY,
    ):
        own_warehouse.replace_table(schema, table, warehouse.read_table(schema, table))
    lonely = warehouse.query_df("select track_id, genre from marts.dim_tracks order by listen_count desc limit 1").iloc[
        0
    ]
    similar = warehouse.read_table("ml", "similar_tracks")
    own_warehouse.replace_table("ml", "similar_tracks", similar[similar["track_id"] != lonely["track_id"]])
    with make_client(own) as own_client:
        body = own_client.get(f"/tracks/{lonely['track_id']}/similar?k=5").json()
    assert body["fallback"] is True
    assert lonely["track_id"] not in [i["track_id"] for i in body["similar"]]
    genres = warehouse.query_df(
        "select track_id, genres from marts.dim_tracks where track_id in ("
        + ", ".join(f"'{i['track_id']}'" for i in body["similar"])
        + ")"
    )
    assert all(lonely["genre"] in g.split(";") for g in genres["genres"])


def test_cold_start_matches_names_without_case_or_accents(client):
    answer = client.post("/recommendations?k=10", json={"artists": ["bjork", "SIGUR ROS", "Motorhead", "Nobody Known"]})
    assert answer.status_code == 200
    body = answer.json()
    assert [a["artist_name"] for a in body["matched"]["artists"]] == ["Björk", "Sigur Rós", "Motörhead"]
    assert body["unmatched"] == {"artists": ["Nobody Known"], "tracks": []}
    assert body["fallback"] is False
    assert body["strategy"] == "catalogue"
    assert len(body["recommendations"]) == 10
    assert [i["rank"] for i in body["recommendations"]] == list(range(1, 11))
    scores = [i["score"] for i in body["recommendations"]]
    assert scores == sorted(scores, reverse=True)
    assert all(i["reason"] for i in body["recommendations"])


def test_cold_start_with_a_track_recommends_its_neighbours_not_itself(client, world):
    _, warehouse = world
    seed = warehouse.query_df(
        "select t.track_id, t.track_name, t.artist_name from marts.dim_tracks t "
        "join ml.similar_tracks s using (track_id) group by all order by count(*) desc, t.track_id limit 1"
    ).iloc[0]
    neighbours = set(
        warehouse.query_df(f"select similar_track_id from ml.similar_tracks where track_id = '{seed['track_id']}'")[
            "similar_track_id"
        ]
    )
    answer = client.post("/recommendations", json={"tracks": [f"{seed['artist_name'].upper()} - {seed['track_name']}"]})
    assert answer.status_code == 200
    body = answer.json()
    assert body["matched"]["tracks"][0]["track_id"] == seed["track_id"]
    recommended = [i["track_id"] for i in body["recommendations"]]
    assert seed["track_id"] not in recommended
    assert recommended[0] in neighbours
    assert body["recommendations"][0]["reason"].startswith("similar to ")


def test_cold_start_accepts_track_ids(client, world):
    _, warehouse = world
    track_id = warehouse.query_df("select track_id from marts.dim_tracks order by track_id limit 1")["track_id"].iloc[0]
    body = client.post("/recommendations?k=3", json={"tracks": [track_id]}).json()
    assert body["matched"]["tracks"][0]["track_id"] == track_id
    assert len(body["recommendations"]) == 3


@pytest.mark.parametrize(
    "payload",
    [{}, {"artists": []}, {"artists": [], "tracks": []}, {"artists": None, "tracks": None}],
)
def test_cold_start_with_nothing_named_is_422(client, payload):
    answer = client.post("/recommendations", json=payload)
    assert answer.status_code == 422
    assert answer.json()["message"] == "name at least one artist or track"


def test_cold_start_with_only_unknown_names_is_422_listing_them(client):
    answer = client.post("/recommendations", json={"artists": ["Zzyzx Nobody"], "tracks": ["No Such - Song"]})
    assert answer.status_code == 422
    body = answer.json()
    assert "none of the named" in body["message"]
    assert body["unmatched"] == {"artists": ["Zzyzx Nobody"], "tracks": ["No Such - Song"]}


def test_artist_search_is_accent_insensitive(client):
    body = client.get("/artists?q=royks").json()
    assert [a["artist_name"] for a in body["artists"]] == ["Røyksopp"]
    assert client.get("/artists?limit=3").json()["artists"].__len__() == 3


def test_sample_users_have_recommendations(client):
    users = client.get("/users?limit=3").json()["users"]
    assert users == ["user_0000001", "user_0000002", "user_0000003"]
    for user in users:
        assert client.get(f"/users/{user}/recommendations").json()["fallback"] is False


def test_metrics_count_requests_and_time_them(client):
    client.get("/users/user_0000001/recommendations")
    client.get("/users/user_0000001/recommendations?k=0")
    client.post("/recommendations", content=b"{")
    text = client.get("/metrics").text
    assert (
        'music_platform_http_requests_total{method="GET",route="/users/{user_id}/recommendations",status="200"}' in text
    )
    assert (
        'music_platform_http_requests_total{method="GET",route="/users/{user_id}/recommendations",status="422"}' in text
    )
    assert 'music_platform_http_requests_total{method="POST",route="/recommendations",status="400"}' in text
    assert (
        'music_platform_http_request_duration_seconds_bucket{le="0.001",route="/users/{user_id}/recommendations"}'
        in text
    )
    assert 'music_platform_model_version_info{model_version="v1"} 1.0' in text


def test_openapi_documents_every_route_and_docs_render(client):
    schema = client.get("/openapi.json").json()
    paths = schema["paths"]
    assert {
        "/health",
        "/ping",
        "/users/{user_id}/recommendations",
        "/tracks/{track_id}/similar",
        "/recommendations",
        "/artists",
        "/users",
        "/admin/reload",
        "/metrics",
    } <= set(paths)
    assert "requestBody" in paths["/recommendations"]["post"]
    assert "head" in paths["/health"] and "get" in paths["/health"]
    operations = [op for methods in paths.values() for op in methods.values()]
    operation_ids = [op["operationId"] for op in operations]
    assert len(set(operation_ids)) == len(operation_ids) and "user_recommendations" in operation_ids
    # Errors are documented as the body the service really sends, never FastAPI's default.
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    for op in operations:
        assert "4XX" in op["responses"], op["operationId"]
        assert op["responses"]["4XX"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorBody")
    assert paths["/users/{user_id}/recommendations"]["get"]["parameters"][1]["schema"]["maximum"] == MAX_K
    for page, asset in (("/docs", "swagger-ui-bundle.js"), ("/redoc", "redoc.standalone.js")):
        html = client.get(page)
        assert html.status_code == 200 and f"/docs/assets/{asset}" in html.text
        assert "cdn." not in html.text and "fonts.googleapis" not in html.text  # nothing from the internet
        script = client.get(f"/docs/assets/{asset}")
        assert script.status_code == 200 and len(script.content) > 100_000


def test_web_page_is_served(client):
    page = client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert 'id="user-form"' in page.text and 'id="coldstart-form"' in page.text


def test_fast_path_and_fastapi_routes_answer_alike(world):
    settings, _ = world
    app = create_app(settings, ServingConfig(reload_seconds=0, access_log="off"))
    with TestClient(app) as fast, TestClient(app.api) as routed:
        for path in (
            "/users/user_0000003/recommendations?k=4",
            "/users/nobody/recommendations?k=2",
            "/tracks/" + app.service.snapshot.catalogue.track_ids[10] + "/similar?k=3",
            "/ping",
        ):
            assert fast.get(path).content == routed.get(path).content, path


def test_preserialised_and_per_request_answers_are_identical(world):
    _, warehouse = world
    formatted = load_snapshot(warehouse, "v1", preserialise_budget_bytes=0)
    preserialised = load_snapshot(warehouse, "v1", preserialise_budget_bytes=2**30)
    assert not formatted.preserialised and preserialised.preserialised
    for user in ["user_0000001", "user_0000150", "user_0000300", "not_a_user"]:
        for k in (1, 2, 9, 10, 11, MAX_K):
            assert formatted.user_recommendations_json(user, k) == preserialised.user_recommendations_json(user, k)
    orjson.loads(preserialised.user_recommendations_json("user_0000150", 7))


def test_without_registry_nothing_is_served(world, tmp_path):
    """Recommendations that were written but never published are not served (issue 14)."""
    _, warehouse = world
    own = make_settings(tmp_path)
    own_warehouse = DuckDBWarehouse(own.resolved_duckdb_path)
    for schema, table in (("marts", "dim_tracks"), ("marts", "dim_artists"), ("ml", "user_recommendations")):
        own_warehouse.replace_table(schema, table, warehouse.read_table(schema, table))
    assert latest_published_version(own_warehouse) is None
    with make_client(own) as own_client:
        health = own_client.get("/health")
        answer = own_client.get("/users/user_0000001/recommendations")
    assert health.status_code == 503 and health.json()["status"] == "unavailable"
    assert "no model version is published yet" in health.json()["reason"]
    assert answer.status_code == 503


def test_registry_without_a_published_version_serves_nothing(world, tmp_path):
    """A first build killed before publication: the candidate's rows exist, nothing is served."""
    _, warehouse = world
    own = make_settings(tmp_path)
    own_warehouse = DuckDBWarehouse(own.resolved_duckdb_path)
    for schema, table in (
        ("marts", "dim_tracks"),
        ("marts", "dim_artists"),
        ("ml", "user_recommendations"),
        *PUBLISHED_DISPLAY,
    ):
        own_warehouse.replace_table(schema, table, warehouse.read_table(schema, table))
    own_warehouse.replace_table("ml", "model_registry", registry_row("v1", status="candidate"))
    with make_client(own) as own_client:
        health = own_client.get("/health")
        answer = own_client.get("/users/user_0000001/recommendations")
        similar = own_client.get("/tracks/" + warehouse.read_table("marts", "dim_tracks")["track_id"][0] + "/similar")
    assert health.status_code == 503 and health.json()["status"] == "unavailable"
    assert health.json()["model_version"] is None and "no model version is published" in health.json()["reason"]
    assert answer.status_code == 503 and similar.status_code == 404


def test_latest_published_means_latest_published_at(world, tmp_path):
    own_warehouse = DuckDBWarehouse(tmp_path / "w.duckdb")
    rows = pd.concat(
        [
            registry_row("v9", published_at=pd.Timestamp("2026-01-01", tz="UTC")),
            registry_row("v3", published_at=pd.Timestamp("2026-03-01", tz="UTC")),
            registry_row("v10", status="rejected"),
        ]
    )
    own_warehouse.replace_table("ml", "model_registry", rows)
    assert latest_published_version(own_warehouse) == "v3"


def test_empty_warehouse_is_unavailable_and_the_file_is_not_created(tmp_path):
    settings = make_settings(tmp_path)
    with make_client(settings) as empty:
        health = empty.get("/health")
        assert health.status_code == 503
        assert health.json()["status"] == "unavailable"
        answer = empty.get("/users/anyone/recommendations")
        assert answer.status_code == 503
        assert "run the pipeline" in answer.json()["message"]
        assert empty.post("/recommendations", json={"artists": ["Björk"]}).status_code == 503
    assert not settings.resolved_duckdb_path.exists()


def test_admin_reload_needs_the_token_when_one_is_set(world):
    settings, _ = world
    with make_client(settings, admin_token="s3cret") as guarded:
        assert guarded.post("/admin/reload").status_code == 401
        assert guarded.post("/admin/reload", headers={"Authorization": "Bearer wrong"}).status_code == 401
        answer = guarded.post("/admin/reload?force=true", headers={"Authorization": "Bearer s3cret"})
        assert answer.status_code == 200
        assert answer.json()["reloaded"] is True and answer.json()["model_version"] == "v1"
        unchanged = guarded.post("/admin/reload", headers={"Authorization": "Bearer s3cret"}).json()
        assert unchanged["reloaded"] is False


def test_a_published_version_without_rows_is_not_swapped_in(world, tmp_path):
    _, warehouse = world
    own = make_settings(tmp_path)
    own_warehouse = DuckDBWarehouse(own.resolved_duckdb_path)
    for schema, table in (
        ("marts", "dim_tracks"),
        ("marts", "dim_artists"),
        ("ml", "user_recommendations"),
        ("ml", "model_registry"),
        *PUBLISHED_DISPLAY,
    ):
        own_warehouse.replace_table(schema, table, warehouse.read_table(schema, table))
    with make_client(own) as own_client:
        own_warehouse.append("ml", "model_registry", registry_row("v2"))
        answer = own_client.post("/admin/reload")
        assert answer.status_code == 503
        assert "no rows" in answer.json()["error"]
        assert own_client.get("/users/user_0000001/recommendations").json()["model_version"] == "v1"
        health = own_client.get("/health").json()
        assert health["status"] == "ok" and "no rows" in health["last_reload_error"]


def test_serving_config_reads_and_checks_the_environment():
    config = ServingConfig.from_env(
        {
            "MUSIC_PLATFORM_RELOAD_SECONDS": "2.5",
            "MUSIC_PLATFORM_PRESERIALISE_MB": "0",
            "MUSIC_PLATFORM_ADMIN_TOKEN": "t",
        }
    )
    assert (config.reload_seconds, config.preserialise_mb, config.admin_token) == (2.5, 0, "t")
    defaults = ServingConfig.from_env({})
    assert defaults.reload_seconds == 5.0
    assert (defaults.header_timeout_seconds, defaults.body_timeout_seconds) == (10.0, 10.0)
    assert (defaults.access_log, defaults.cors_origins) == ("stdout", ())  # access log on, CORS off
    tuned = ServingConfig.from_env(
        {
            "MUSIC_PLATFORM_HEADER_TIMEOUT_SECONDS": "2",
            "MUSIC_PLATFORM_BODY_TIMEOUT_SECONDS": "3.5",
            "MUSIC_PLATFORM_ACCESS_LOG": "off",
            "MUSIC_PLATFORM_CORS_ORIGINS": "https://app.example.com, http://localhost:3000",
        }
    )
    assert (tuned.header_timeout_seconds, tuned.body_timeout_seconds, tuned.access_log) == (2.0, 3.5, "off")
    assert tuned.cors_origins == ("https://app.example.com", "http://localhost:3000")
    with pytest.raises(ConfigError, match="MUSIC_PLATFORM_HEADER_TIMEOUT_SECONDS"):
        ServingConfig.from_env({"MUSIC_PLATFORM_HEADER_TIMEOUT_SECONDS": "120"})
    with pytest.raises(ConfigError, match="MUSIC_PLATFORM_CORS_ORIGINS"):
        ServingConfig.from_env({"MUSIC_PLATFORM_CORS_ORIGINS": "app.example.com"})
    with pytest.raises(ConfigError, match="MUSIC_PLATFORM_RELOAD_SECONDS"):
        ServingConfig.from_env({"MUSIC_PLATFORM_RELOAD_SECONDS": "soon"})
    with pytest.raises(ConfigError, match="MUSIC_PLATFORM_PRESERIALISE_MB"):
        ServingConfig.from_env({"MUSIC_PLATFORM_PRESERIALISE_MB": "-1"})


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ("Sigur Rós", "sigur ros"),
        ("  MOTÖRHEAD ", "motorhead"),
        ("Røyksopp", "royksopp"),
        ("Beyoncé\tKnowles", "beyonce knowles"),
        ("Straße", "strasse"),
        ("AC/DC", "ac dc"),
    ],
)
def test_names_match_without_case_accents_or_extra_spaces(raw, key):
    assert name_key(raw) == key


def test_cold_start_mixes_artists_instead_of_one_catalogue(client):
    body = client.post("/recommendations?k=10", json={"artists": ["Björk"]}).json()
    artists = [i["artist_name"] for i in body["recommendations"]]
    assert len(artists) == 10
    assert max(artists.count(a) for a in set(artists)) <= 2
    assert "Björk" in artists
    assert any(i["reason"].startswith("popular in ") for i in body["recommendations"])


def test_server_refuses_a_port_in_use():
    from music_platform.serving.server import check_port_free, event_loop

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(8)
        port = taken.getsockname()[1]
        with pytest.raises(OSError, match="cannot serve on 127.0.0.1"):
            check_port_free("127.0.0.1", port)
    check_port_free("127.0.0.1", port)
    assert event_loop({}) == "asyncio"


def test_server_event_loop_setting_is_checked(monkeypatch):
    from music_platform.serving.server import event_loop

    monkeypatch.setenv("MUSIC_PLATFORM_SERVE_LOOP", "uvloop")
    assert event_loop() == "uvloop"
    monkeypatch.setenv("MUSIC_PLATFORM_SERVE_LOOP", "tokio")
    with pytest.raises(ValueError, match="MUSIC_PLATFORM_SERVE_LOOP"):
        event_loop()


def test_a_known_id_is_served_even_with_unusual_characters(world, tmp_path):
    _, warehouse = world
    own = make_settings(tmp_path)
    own_warehouse = DuckDBWarehouse(own.resolved_duckdb_path)
    for schema, table in (
        ("marts", "dim_tracks"),
        ("marts", "dim_artists"),
        ("ml", "model_registry"),
        *PUBLISHED_DISPLAY,
    ):
        own_warehouse.replace_table(schema, table, warehouse.read_table(schema, table))
    recs = warehouse.read_table("ml", "user_recommendations")
    recs.loc[recs["user_id"] == "user_0000001", "user_id"] = "Jöhn Doe/1"
    own_warehouse.replace_table("ml", "user_recommendations", recs)
    with make_client(own) as own_client:
        known = own_client.get("/users/J%C3%B6hn%20Doe%2F1/recommendations")
        unknown = own_client.get("/users/Jane%20Doe/recommendations")
    assert known.status_code == 200 and known.json()["user_id"] == "Jöhn Doe/1"
    assert known.json()["fallback"] is False
    assert unknown.status_code == 422


def test_middleware_sees_every_request_hot_cold_and_refused(world, tmp_path):
    """The access log (a middleware) gets one line per request, however it was answered."""
    settings, _ = world
    log_path = tmp_path / "access.log"
    with make_client(settings, access_log=str(log_path)) as client:
        client.get("/users/user_0000001/recommendations?k=2", headers={"user-agent": 'quoted "agent" \\ x'})
        client.head("/health")
        client.get("/artists?q=bj")
        client.post("/recommendations", content=b"x" * 70_000)
        client.get("/" + "a" * 9000)
        client.get("/nowhere")
    lines = [orjson.loads(line) for line in log_path.read_bytes().splitlines()]
    assert [(line["method"], line["route"], line["status"]) for line in lines] == [
        ("GET", "/users/{user_id}/recommendations", 200),
        ("HEAD", "/health", 200),
        ("GET", "/artists", 200),
        ("POST", "/recommendations", 413),
        ("GET", "other", 414),
        ("GET", "other", 404),
    ]
    assert lines[0]["user_agent"] == 'quoted "agent" \\ x' and lines[0]["query"] == "k=2"
    assert all(line["ts"].endswith("Z") and line["duration_ms"] >= 0 for line in lines)


def test_cors_is_off_by_default_and_allows_only_configured_origins(world):
    settings, _ = world
    preflight = {"origin": "https://app.example.com", "access-control-request-method": "GET"}
    with make_client(settings) as client:
        plain = client.get("/health", headers={"origin": "https://app.example.com"})
        assert "access-control-allow-origin" not in plain.headers
        assert client.options("/health", headers=preflight).status_code == 405
    with make_client(settings, cors_origins=("https://app.example.com",)) as client:
        allowed = client.get("/users/user_0000001/recommendations", headers={"origin": "https://app.example.com"})
        assert allowed.headers["access-control-allow-origin"] == "https://app.example.com"
        answer = client.options("/users/user_0000001/recommendations", headers=preflight)
        assert answer.status_code == 204 and "GET" in answer.headers["access-control-allow-methods"]
        other = client.get("/health", headers={"origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers
        refused = client.options("/health", headers={**preflight, "origin": "https://evil.example"})
        assert refused.status_code == 403 and refused.json()["status"] == 403
