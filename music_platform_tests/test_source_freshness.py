"""dbt source freshness as Dagster checks on the raw assets: same windows as dbt, fails when stale."""

from datetime import UTC, datetime, timedelta

import dagster as dg
import pandas as pd
import pytest

from music_platform.config import Settings
from music_platform.defs.quality.source_freshness import CHECK_NAME, freshness_check_for
from music_platform.quality.source_freshness import judge
from music_platform.resources import WarehouseResource

SCROBBLES = dg.AssetKey(["raw", "lastfm_scrobbles"])
TAGS = dg.AssetKey(["raw", "lastfm_artist_tags"])
# The checks as the code location builds them (from the dbt manifest of the default settings).
raw_source_freshness, source_rules = freshness_check_for(Settings.from_env({}))


def _rule(key: dg.AssetKey):
    return next(rule for rule in source_rules if rule.asset_key == tuple(key.path))


def test_every_dbt_source_is_a_freshness_check_with_the_dbt_windows():
    checked = {key.asset_key for key in raw_source_freshness.check_keys}
    assert len(checked) == len(source_rules) >= 9
    assert all(key.path[0] == "raw" for key in checked)
    scrobbles = _rule(SCROBBLES)
    assert (scrobbles.loaded_at_field, scrobbles.warn_after, scrobbles.error_after) == (
        "ingested_at",
        timedelta(hours=6),
        timedelta(hours=26),
    )
    assert _rule(dg.AssetKey(["raw", "kaggle_tracks"])).error_after is None  # static file: warns only


def test_the_verdict_follows_dbts_rule():
    rule, now = _rule(SCROBBLES), datetime(2026, 3, 2, 12, tzinfo=UTC)
    assert judge(rule, now - timedelta(hours=1), now).status == "pass"
    assert judge(rule, now - timedelta(hours=7), now).status == "warn"
    assert judge(rule, now - timedelta(hours=27), now).status == "error"
    assert judge(rule, None, now).status == "error"  # an empty table was never landed
    # Spotify without credentials lands nothing: a warn-only source may be empty, not stale.
    spotify = _rule(dg.AssetKey(["raw", "spotify_tracks"]))
    assert spotify.error_after is None and judge(spotify, None, now).status == "empty"
    assert judge(spotify, now - timedelta(days=9), now).status == "warn"


def _raw_table(wh, name: str, ingested_at: datetime) -> None:
    # Names in every script: the check reads only the loaded_at_field.
    frame = pd.DataFrame(
        {"artist_name": ["Анна", "!!!", "東京事変"], "ingested_at": [ingested_at.replace(tzinfo=None)] * 3}
    )
    wh.replace_table("raw", name, frame)


def test_the_check_fails_on_a_stale_table_and_passes_on_a_fresh_one(tmp_path):
    path = tmp_path / "warehouse.duckdb"
    resource = WarehouseResource(target="duckdb", duckdb_path=str(path))
    wh = resource.get_warehouse()
    now = datetime.now(UTC)
    _raw_table(wh, "lastfm_scrobbles", now - timedelta(hours=30))  # past the 26 h fail window
    _raw_table(wh, "lastfm_artist_tags", now - timedelta(hours=1))

    result = dg.materialize(
        [raw_source_freshness],
        resources={"warehouse": resource},
        selection=dg.AssetSelection.checks(dg.AssetCheckKey(SCROBBLES, CHECK_NAME), dg.AssetCheckKey(TAGS, CHECK_NAME)),
        raise_on_error=False,
    )
    evaluations = {e.asset_key: e for e in result.get_asset_check_evaluations()}
    assert set(evaluations) == {SCROBBLES, TAGS}
    stale, fresh = evaluations[SCROBBLES], evaluations[TAGS]
    assert not stale.passed and stale.severity == dg.AssetCheckSeverity.ERROR, stale.description
    assert "older than the fail window" in stale.description
    assert stale.metadata["age_hours"].value == pytest.approx(30, abs=0.1)
    assert fresh.passed, fresh.description
