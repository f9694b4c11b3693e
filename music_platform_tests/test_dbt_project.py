"""The dbt project as a reference (issue 17 §1, §2): read from its manifest, no warehouse needed.

- every model and seed states its grain in its description;
- every mart and intermediate column is described; every mart has an enforced contract with a
  data_type per column (the contracts themselves are enforced by every `dbt build`, on each
  target: the pipeline tests build the marts on DuckDB, PostgreSQL and fakesnow);
- the recommendation service and the ML assets are exposures of the marts they read;
- every source declares its columns, a loaded_at_field and a freshness.
"""

from __future__ import annotations

import json

import pytest

from music_platform.config import Settings
from music_platform.transformation.project import get_dbt_project


@pytest.fixture(scope="module")
def manifest() -> dict:
    return json.loads(get_dbt_project(Settings.from_env({})).manifest_path.read_text())


def _models(manifest: dict, *layers: str) -> list[dict]:
    return [
        n for n in manifest["nodes"].values()
        if n["resource_type"] == "model" and (not layers or n["fqn"][1] in layers)
    ]  # fmt: skip


def test_every_model_and_seed_states_its_grain(manifest):
    nodes = [n for n in manifest["nodes"].values() if n["resource_type"] in ("model", "seed")]
    assert len(nodes) > 25
    missing = sorted(n["name"] for n in nodes if "grain:" not in n["description"].replace("\n", " "))
    assert not missing, missing


def test_every_mart_and_intermediate_column_is_described(manifest):
    models = _models(manifest, "marts", "intermediate")
    assert {m["name"] for m in models} >= {"fct_listens", "dim_tracks", "int_tracks_resolved"}
    undescribed = [
        f"{m['name']}.{c}" for m in models for c, column in m["columns"].items() if not column["description"].strip()
    ]
    assert not undescribed, undescribed


def test_every_mart_has_an_enforced_contract_with_typed_columns(manifest):
    for mart in _models(manifest, "marts"):
        assert mart["config"]["contract"]["enforced"], mart["name"]
        untyped = [c for c, column in mart["columns"].items() if not column.get("data_type")]
        assert not untyped, (mart["name"], untyped)


def test_the_service_and_the_ml_assets_are_exposures_of_the_marts_they_read(manifest):
    exposures = {e["name"]: e for e in manifest["exposures"].values()}
    assert {"recommendation_service", "recommender_training"} <= set(exposures)
    training = {n.split(".")[-1] for n in exposures["recommender_training"]["depends_on"]["nodes"]}
    assert {"user_track_interactions", "dim_tracks", "artist_tags"} <= training


def test_every_source_declares_its_columns_loaded_at_field_and_freshness(manifest):
    sources = list(manifest["sources"].values())
    assert len(sources) == 9
    for source in sources:
        name = f"{source['source_name']}.{source['name']}"
        assert source["loaded_at_field"] == "ingested_at", name
        freshness = source["freshness"] or {}
        assert (freshness.get("warn_after") or {}).get("count"), name
        assert "ingested_at" in source["columns"] and len(source["columns"]) >= 7, name
        assert all(column["description"] for column in source["columns"].values()), name
    scrobbles = manifest["sources"]["source.music_platform.lastfm.lastfm_scrobbles"]["freshness"]
    assert scrobbles["warn_after"] == {"count": 6, "period": "hour"}
    assert scrobbles["error_after"] == {"count": 26, "period": "hour"}


def test_a_schema_prefix_gives_a_run_schemas_of_its_own(tmp_path, monkeypatch):
    """Issue 17 §6: development and CI runs get prefixed schemas; production keeps plain names."""
    from music_platform.config import Settings
    from music_platform_tests.dbt_runner import run_dbt

    settings = Settings.from_env({"MUSIC_PLATFORM_DATA_DIR": str(tmp_path)})
    monkeypatch.setenv("MUSIC_PLATFORM_SCHEMA_PREFIX", "ci_42_")
    listed = run_dbt(
        ["ls", "--resource-type", "model", "seed", "--output", "json", "--output-keys", "name schema"],
        settings, tmp_path,
    ).stdout  # fmt: skip
    rows = [json.loads(line) for line in listed.splitlines() if line.startswith("{")]
    schemas = {row["schema"] for row in rows}
    assert schemas == {"ci_42_staging", "ci_42_intermediate", "ci_42_marts", "ci_42_audit", "ci_42_reference"}
    plain = {n["schema"] for n in manifest_without_prefix()["nodes"].values() if n["resource_type"] == "model"}
    assert plain == {"staging", "intermediate", "marts", "audit"}


def manifest_without_prefix() -> dict:
    return json.loads(get_dbt_project(Settings.from_env({})).manifest_path.read_text())
