"""The code location loads, and every asset carries what operators rely on in the UI."""

import dagster as dg
import pytest

from music_platform.definitions import defs as load_defs

EXPECTED_ASSETS = {
    "raw/lastfm_scrobbles",
    "raw/lastfm_users",
    "raw/lastfm_artist_tags",
    "raw/lastfm_tag_top_tracks",
    "raw/lastfm_chart_top_tracks",
    "raw/kaggle_tracks",
    "marts/dim_users",
    "marts/dim_artists",
    "marts/dim_tracks",
    "marts/fct_listens",
    "marts/user_track_interactions",
    "marts/genre_summary",
    "ml/lightfm_model",
    "ml/model_evaluation",
    "ml/user_recommendations",
    "ml/similar_tracks",
}


@pytest.fixture(scope="module")
def definitions():
    defs = load_defs()
    dg.Definitions.validate_loadable(defs)
    return defs


@pytest.fixture(scope="module")
def graph(definitions):
    return definitions.resolve_asset_graph()


def _materializable(graph):
    return [graph.get(k) for k in graph.get_all_asset_keys() if graph.get(k).is_materializable]


def test_every_product_asset_is_defined(graph):
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert EXPECTED_ASSETS <= keys, EXPECTED_ASSETS - keys


def test_every_asset_has_freshness_group_owner_kind_and_description(graph):
    for node in _materializable(graph):
        name = node.key.to_user_string()
        assert node.freshness_policy is not None, name
        assert node.group_name in {"ingestion", "transform", "ml"}, name
        assert node.owners, name
        assert node.kinds, name
        assert node.description, name


def test_every_raw_mart_and_ml_asset_has_a_blocking_completeness_check(graph):
    checks = {}
    for check_key in graph.asset_check_keys:
        checks.setdefault(check_key.asset_key.to_user_string(), set()).add(check_key.name)
    for name in EXPECTED_ASSETS - {"ml/lightfm_model", "ml/model_evaluation"}:
        assert "completeness" in checks.get(name, set()), name


def test_every_asset_has_at_least_one_check(graph):
    with_checks = {k.asset_key for k in graph.asset_check_keys}
    missing = [n.key.to_user_string() for n in _materializable(graph) if n.key not in with_checks]
    assert not missing, missing


def test_model_gate_is_blocking(definitions):
    specs = [
        spec
        for checks_def in definitions.resolve_asset_graph().assets_defs
        for spec in checks_def.check_specs
        if spec.name == "beats_popularity_baseline"
    ]
    assert specs and all(s.blocking for s in specs)


def test_freshness_windows_follow_the_product_spec(graph):
    def window(key, which="fail_window"):
        policy = graph.get(dg.AssetKey(key)).freshness_policy
        return getattr(policy, which).to_timedelta().total_seconds()

    assert window(["raw", "lastfm_scrobbles"], "warn_window") == 6 * 3600
    assert window(["raw", "lastfm_scrobbles"]) == 26 * 3600
    assert window(["marts", "dim_tracks"]) == 26 * 3600
    assert window(["ml", "lightfm_model"]) == 8 * 86400
    assert window(["ml", "user_recommendations"]) == 26 * 3600


def test_dbt_sources_map_to_the_raw_assets(graph):
    stg = graph.get(dg.AssetKey(["staging", "stg_lastfm__scrobbles"]))
    assert dg.AssetKey(["raw", "lastfm_scrobbles"]) in stg.parent_keys


def test_schedules_and_sensors_exist(definitions):
    schedules = {s.name for s in definitions.schedules}
    sensors = {s.name for s in definitions.sensors}
    assert schedules == {"daily_ingestion_schedule"}  # the weekly retrain is the model's on_cron condition
    assert {"automation_sensor", "kaggle_drop_folder_sensor", "run_failure_alert_sensor"} <= sensors


def test_every_dbt_model_has_a_uniqueness_check_on_its_grain(graph):
    """Issue 13 §3: `unique` on a one-column grain, `unique_combination_of_columns` on a wider one."""
    dbt_keys = [n.key for n in _materializable(graph) if "dbt" in n.kinds]
    assert len(dbt_keys) > 20
    grain_checks = {
        check.asset_key
        for check in graph.asset_check_keys
        if check.name.startswith(("unique_", "unique_combination_of_columns_"))
    }
    missing = sorted(k.to_user_string() for k in dbt_keys if k not in grain_checks)
    assert not missing, missing


def test_relationships_from_daily_models_are_judged_on_the_dimensions(graph):
    """A daily model runs before the dimensions it references are rebuilt: the relationship
    checks belong to the dimensions, which the unpartitioned dbt run builds."""
    names = {(c.asset_key.to_user_string(), c.name) for c in graph.asset_check_keys}
    for dimension, column in (("dim_users", "user_id"), ("dim_tracks", "track_id")):
        check = f"relationships_user_track_interactions_{column}__{column}__ref_{dimension}_"
        assert (f"marts/{dimension}", check) in names, check
    assert ("marts/dim_artists", "relationships_fct_listens_artist_id__artist_id__ref_dim_artists_") in names
    assert ("marts/user_track_interactions", "not_null_user_track_interactions_user_id") in names

