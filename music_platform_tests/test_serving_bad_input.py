"""Bad client input gets a 4xx JSON error with a message, never a 500 (issue 7).

A fixed corpus of known-bad requests, then hypothesis fuzzing of every operation the OpenAPI
schema publishes (random path and query values, random JSON and random bytes as bodies).
"""

from __future__ import annotations

import string
import warnings
from urllib.parse import quote

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from music_platform.config import Settings
from music_platform.serving.app import create_app
from music_platform.serving.sample_data import write_sample_warehouse
from music_platform.serving.service import ServingConfig
from music_platform.warehouse.duckdb_warehouse import DuckDBWarehouse

with warnings.catch_warnings():  # starlette suggests httpx2, which is not a dependency here
    warnings.simplefilter("ignore", UserWarning)
    from starlette.testclient import TestClient

pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`:UserWarning")


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    root = tmp_path_factory.mktemp("serving-bad-input")
    settings = Settings(target="duckdb", data_dir=root, duckdb_path=root / "warehouse.duckdb")
    write_sample_warehouse(DuckDBWarehouse(settings.resolved_duckdb_path), users=50, artists=60, tracks=400)
    with TestClient(
        create_app(settings, ServingConfig(reload_seconds=0, access_log="off")), raise_server_exceptions=False
    ) as test_client:
        yield test_client


def assert_json_error(answer, status: int | None = None) -> dict:
    assert 400 <= answer.status_code < 500, (answer.status_code, answer.text)
    if status is not None:
        assert answer.status_code == status, answer.text
    body = answer.json()
    assert body["status"] == answer.status_code
    assert isinstance(body["message"], str) and body["message"]
    return body


LONG = "x" * 129
BAD_GETS = [
    # k out of range or not an integer
    ("/users/user_0000001/recommendations?k=0", 422),
    ("/users/user_0000001/recommendations?k=-1", 422),
    ("/users/user_0000001/recommendations?k=101", 422),
    ("/users/user_0000001/recommendations?k=abc", 422),
    ("/users/user_0000001/recommendations?k=", 422),
    ("/users/user_0000001/recommendations?k=%20", 422),
    ("/users/user_0000001/recommendations?k=10.5", 422),
    ("/users/user_0000001/recommendations?k=1e2", 422),
    ("/users/user_0000001/recommendations?k=99999999999999999999999", 422),
    ("/users/user_0000001/recommendations?k=%FF", 422),
    ("/users/user_0000001/recommendations?k=%ZZ", 422),
    ("/users/user_0000001/recommendations?k=1&k=2", 422),
    ("/users/user_0000001/recommendations?k=%EF%BC%95", 422),  # fullwidth digit five
    # malformed user ids
    ("/users//recommendations", 422),
    ("/users/%00/recommendations", 422),
    ("/users/a%20b/recommendations", 422),
    ("/users/a%2Fb/recommendations", 422),
    ("/users/%27%3B%20drop%20table%20x%3B--/recommendations", 422),
    ("/users/%F0%9F%8E%B5/recommendations", 422),
    (f"/users/{LONG}/recommendations", 422),
    ("/users/%3Cscript%3E/recommendations", 422),
    # tracks
    ("/tracks/0123456789abcdef0123456789abcdef/similar?k=0", 422),
    ("/tracks/a%20b/similar", 422),
    (f"/tracks/{LONG}/similar", 422),
    ("/tracks/%2E%2E/similar", 404),
    ("/tracks/nope/similar?k=5", 404),
    # catalogue helpers
    ("/artists?q=" + "a" * 101, 422),
    ("/artists?limit=0", 422),
    ("/artists?limit=many", 422),
    ("/users?limit=999", 422),
    # unknown routes and methods
    ("/nope", 404),
    ("/users/user_0000001", 404),
    ("/admin/reload", 405),
]


@pytest.mark.parametrize(("path", "status"), BAD_GETS)
def test_bad_get_requests_get_json_errors(client, path, status):
    assert_json_error(client.get(path), status)


def test_wrong_methods_get_json_405(client):
    assert_json_error(client.delete("/users/user_0000001/recommendations"), 405)
    assert_json_error(client.put("/recommendations", json={"artists": ["Björk"]}), 405)
    assert_json_error(client.get("/recommendations"), 405)


BAD_BODIES = [
    (b"", 400),
    (b"{", 400),
    (b"{'artists': ['Bj\xc3\xb6rk']}", 400),  # single quotes are not JSON
    (b'{"artists": ["\xff"]}', 400),  # not UTF-8
    (b'{"artists": NaN}', 400),
    (b"[" * 5000 + b"]" * 5000, 400),  # deeper than any parser should follow
    (b"\xef\xbb\xbf{}", 400),  # byte order mark
    (b"null", 422),
    (b"[]", 422),
    (b'"Bjork"', 422),
    (b"42", 422),
    (b"{}", 422),
    (b'{"artists": "Bjork"}', 422),
    (b'{"artists": {"name": "Bjork"}}', 422),
    (b'{"artists": [null]}', 422),
    (b'{"artists": [""]}', 422),
    (b'{"artists": ["   "]}', 422),
    (b'{"artists": [["Bjork"]]}', 422),
    (b'{"artists": [1.5]}', 422),
    (b'{"tracks": [true]}', 422),
    (b'{"artists": ["' + b"a" * 201 + b'"]}', 422),
    (orjson.dumps({"artists": ["Bjork"] * 51}), 422),
    (b'{"artists": ["Bjork"], "mood": "happy"}', 422),
    (b'{"artists": ["Zzyzx Nobody"]}', 422),
    (b'{"artists": [], "tracks": ["No Such - Song"]}', 422),
    (b'{"artists": ["Bjork"], "tracks": "x"}', 422),
]


@pytest.mark.parametrize(("body", "status"), BAD_BODIES)
def test_bad_cold_start_bodies_get_json_errors(client, body, status):
    answer = client.post("/recommendations", content=body, headers={"content-type": "application/json"})
    assert_json_error(answer, status)


def test_cold_start_with_bad_k_is_422(client):
    assert_json_error(client.post("/recommendations?k=0", json={"artists": ["Björk"]}), 422)
    assert_json_error(client.post("/recommendations?k=x", json={"artists": ["Björk"]}), 422)


def test_too_large_body_is_413(client):
    body = orjson.dumps({"artists": ["a" * 150] * 500})
    assert len(body) > 64 * 1024
    assert_json_error(client.post("/recommendations", content=body), 413)


def test_admin_reload_with_a_bad_flag_is_422(client):
    assert_json_error(client.post("/admin/reload?force=perhaps"), 422)


def test_good_requests_still_work_after_the_corpus(client):
    assert client.get("/users/user_0000001/recommendations?k=3").status_code == 200
    assert client.post("/recommendations", json={"artists": ["Bjork"]}).status_code == 200


# -- fuzzing every operation of the OpenAPI schema ----------------------------------------------
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=6) | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=25,
)
cold_start_like = st.fixed_dictionaries(
    {},
    optional={
        "artists": st.one_of(st.lists(st.text(max_size=40), max_size=8), json_values),
        "tracks": st.one_of(st.lists(st.text(max_size=40), max_size=8), json_values),
    },
)
parameter_values = st.one_of(
    st.text(max_size=40),
    st.integers(-1000, 1000).map(str),
    st.sampled_from(["", "0", "1", "10", "100", "101", "true", "false", "user_0000001", "%", "..", "a/b"]),
    st.text(alphabet=string.printable, max_size=200),
)


def schema_operations(client: TestClient) -> list[tuple[str, str, dict]]:
    spec = client.get("/openapi.json").json()
    operations = []
    for path, methods in spec["paths"].items():
        for method, operation in methods.items():
            if path == "/admin/reload":
                continue  # a valid call reloads the warehouse: covered by the reload tests
            operations.append((method.upper(), path, operation))
    return operations


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzzing_the_openapi_operations_never_gives_a_server_error(client, data):
    method, path, operation = data.draw(st.sampled_from(schema_operations(client)), label="operation")
    query = {}
    for parameter in operation.get("parameters", []):
        value = data.draw(parameter_values, label=parameter["name"])
        if parameter["in"] == "path":
            path = path.replace("{" + parameter["name"] + "}", quote(value, safe=""))
        elif parameter["in"] == "query" and data.draw(st.booleans(), label=f"send {parameter['name']}"):
            query[parameter["name"]] = value
    body = None
    if "requestBody" in operation:
        body = data.draw(
            st.one_of(cold_start_like.map(orjson.dumps), json_values.map(orjson.dumps), st.binary(max_size=300)),
            label="body",
        )
    answer = client.request(method, path, params=query, content=body)
    assert answer.status_code < 500, (method, path, query, body, answer.status_code, answer.text)
    # The schema declares what the server really answers: the status, or its class (4XX).
    declared = operation["responses"]
    assert str(answer.status_code) in declared or f"{answer.status_code // 100}XX" in declared, answer.status_code
    if method == "HEAD":
        assert answer.content == b""
    elif answer.status_code >= 400:
        error = assert_json_error(answer)
        assert set(error) <= {"error", "status", "message", "unmatched"}  # the ErrorBody schema
    elif answer.headers["content-type"].startswith("application/json"):
        answer.json()
