"""The code location loads, and every asset carries what operators rely on in the UI."""

from pathlib import Path

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


# A fresh interpreter with no platform variable set: it imports the code location, then builds it
# for each target from explicit settings, and checks nothing was read or written behind its back.
_THREE_TARGETS = r"""
import json, os, sys
PLATFORM = ("MUSIC_PLATFORM_", "SNOWFLAKE_", "LASTFM_", "SPOTIFY_", "DBT_", "DAGSTER_", "PATH")
platform_env = lambda: {k: v for k, v in os.environ.items() if k.startswith(PLATFORM)}
before = platform_env()
import music_platform.definitions as root
from music_platform.config import Settings
from music_platform.definitions import build_defs
assert platform_env() == before, "importing the code location changed the environment"
envs = {
    "duckdb": {"MUSIC_PLATFORM_TARGET": "duckdb", "MUSIC_PLATFORM_DATA_DIR": sys.argv[1]},
    "postgres": {"MUSIC_PLATFORM_TARGET": "postgres",
                 "MUSIC_PLATFORM_POSTGRES_URL": "postgresql://u:p%40ss@db.example:6543/wh_edge"},
    "snowflake": {"MUSIC_PLATFORM_TARGET": "snowflake", "SNOWFLAKE_ACCOUNT": "acct", "SNOWFLAKE_USER": "u",
                  "SNOWFLAKE_PASSWORD": "s3cret", "SNOWFLAKE_PORT": "8123", "SNOWFLAKE_PROTOCOL": "http",
                  "MUSIC_PLATFORM_PARTITIONS_START": "2026-01-05"},
}
out = {}
for target, env in envs.items():
    defs = build_defs(Settings.from_env(env))
    graph = defs.resolve_asset_graph()
    scrobbles = graph.get(__import__("dagster").AssetKey(["raw", "lastfm_scrobbles"]))
    dbt = defs.resources["dbt"]
    profile = json.loads((__import__("pathlib").Path(dbt.profiles_dir) / "profiles.yml").read_text())
    out[target] = {
        "keys": sorted(k.to_user_string() for k in graph.get_all_asset_keys()),
        "warehouse": defs.resources["warehouse"].target,
        "dbt_target": dbt.target,
        "profile": profile["music_platform"]["outputs"][target],
        "first_partition": scrobbles.partitions_def.get_first_partition_key(),
        "kinds": sorted(graph.get(__import__("dagster").AssetKey(["marts", "fct_listens"])).kinds),
    }
assert platform_env() == before, "building the definitions changed the environment"
print(json.dumps(out))
"""


def test_the_three_targets_build_in_one_process_with_no_environment_set(tmp_path):
    import json
    import os
    import subprocess
    import sys

    platform = ("MUSIC_PLATFORM_", "SNOWFLAKE_", "LASTFM_", "SPOTIFY_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(platform)}
    result = subprocess.run(
        [sys.executable, "-c", _THREE_TARGETS, str(tmp_path / "data")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    built = json.loads(result.stdout.strip().splitlines()[-1])
    assert built["duckdb"]["keys"] == built["postgres"]["keys"] == built["snowflake"]["keys"]
    assert EXPECTED_ASSETS <= set(built["duckdb"]["keys"])
    for target, seen in built.items():
        assert seen["warehouse"] == seen["dbt_target"] == target
        assert target in seen["kinds"]
    # each target's dbt profile carries its own connection, from the settings alone
    assert built["duckdb"]["profile"]["path"] == str((tmp_path / "data" / "warehouse.duckdb").resolve())
    postgres = built["postgres"]["profile"]
    assert (postgres["host"], postgres["port"], postgres["user"], postgres["password"], postgres["dbname"]) == (
        "db.example",
        6543,
        "u",
        "p@ss",
        "wh_edge",
    )
    snowflake = built["snowflake"]["profile"]
    assert (snowflake["account"], snowflake["port"], snowflake["protocol"]) == ("acct", 8123, "http")
    # the partitions follow each target's settings: the default, or the configured first day
    assert built["duckdb"]["first_partition"] == "2025-01-01"
    assert built["snowflake"]["first_partition"] == "2026-01-05"


def test_a_bad_setting_names_the_variable_and_the_expected_form():
    from music_platform.config import ConfigError, Settings

    with pytest.raises(ConfigError, match=r"SNOWFLAKE_PORT must be an integer, got 'abc'"):
        Settings.from_env({"SNOWFLAKE_PORT": "abc"})
    with pytest.raises(ConfigError, match=r"MUSIC_PLATFORM_PARTITIONS_START must be a date \(YYYY-MM-DD\)"):
        Settings.from_env({"MUSIC_PLATFORM_PARTITIONS_START": "01/02/2026"})
    with pytest.raises(ConfigError, match=r"MUSIC_PLATFORM_TARGET must be 'duckdb', 'postgres' or 'snowflake'"):
        Settings.from_env({"MUSIC_PLATFORM_TARGET": "oracle"})


def test_the_partitions_start_where_the_data_dir_says_unless_configured(tmp_path):
    from datetime import date

    from music_platform.config import Settings, record_partitions_start

    data = tmp_path / "data"
    assert Settings.from_env({"MUSIC_PLATFORM_DATA_DIR": str(data)}).partitions_start_date == "2025-01-01"
    assert record_partitions_start(data, date(2026, 11, 7)) == "2026-11-07"
    assert record_partitions_start(data, date(2026, 11, 20)) == "2026-11-07"  # an earlier load stays visible
    assert Settings.from_env({"MUSIC_PLATFORM_DATA_DIR": str(data)}).partitions_start_date == "2026-11-07"
    configured = {"MUSIC_PLATFORM_DATA_DIR": str(data), "MUSIC_PLATFORM_PARTITIONS_START": "2026-01-01"}
    assert Settings.from_env(configured).partitions_start_date == "2026-01-01"
    (data / "partitions.json").write_text("not json", encoding="utf-8")  # unreadable: the default applies
    assert Settings.from_env({"MUSIC_PLATFORM_DATA_DIR": str(data)}).partitions_start_date == "2025-01-01"


def test_the_defs_folder_alone_has_everything_load_from_defs_folder_builds(definitions):
    """``build_defs`` builds the defs folder through ``ComponentTree.build_defs`` (no catalogue of
    installed component libraries, see the next test): every asset, check, job, schedule, sensor
    and resource that ``load_from_defs_folder`` would give is there."""
    import music_platform.definitions as root
    from music_platform.config import Settings, building_definitions
    from music_platform.definitions import build_defs
    from music_platform.resources import build_resources

    def summary(d: dg.Definitions):
        graph = d.resolve_asset_graph()
        return (
            sorted(k.to_user_string() for k in graph.get_all_asset_keys()),
            sorted(str(k) for k in graph.asset_check_keys),
            sorted(j.name for j in d.resolve_all_job_defs()),
            sorted(s.name for s in d.schedules or ()),
            sorted(s.name for s in d.sensors or ()),
            sorted(d.resources or {}),
        )

    settings = Settings.from_env()
    with building_definitions(settings):
        folder = dg.load_from_defs_folder(path_within_project=Path(root.__file__).parent)
    full = dg.Definitions.merge(folder, dg.Definitions(resources=build_resources(settings)))
    built = build_defs(settings)
    dg.Definitions.validate_loadable(built)
    assert summary(built) == summary(full)
    assert summary(built) == summary(definitions)


def test_loading_the_code_location_on_duckdb_imports_no_snowflake_library():
    """Every run loads the code location before it starts (a real-time load waits for it): the
    defs folder alone, not the catalogue of installed component libraries, which imported
    dagster_snowflake's components and the Snowflake SDK (7 CPU-seconds of 12) even on DuckDB."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from music_platform.config import Settings\n"
        "from music_platform.definitions import build_defs\n"
        "defs = build_defs(Settings.from_env({'MUSIC_PLATFORM_TARGET': 'duckdb'}))\n"
        "assert defs.resolve_asset_graph().get_all_asset_keys()\n"
        "print(sorted(m for m in sys.modules if m.startswith(('dagster_snowflake', 'snowflake.'))))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300)
    assert done.stdout.strip().splitlines()[-1] == "[]"
