"""Every listen kept and accounted for, end to end through the project's own dbt models.

Raw scrobbles in many scripts (a third of the artists named in other scripts or in symbols
only), with deliberately malformed rows mixed in, are built into ``marts.fct_listens``: every
valid scrobble becomes exactly one listen with the artist id Python's identity rule gives it,
every malformed one is set aside in ``audit.listens_set_aside`` with its reason, and
``audit.listen_ledger`` balances. Then a silent loss is injected into the mart's SQL (a copy of
the dbt project): the conservation test fails, dbt does not build
``user_track_interactions``, the Dagster run fails and nothing downstream is materialised.
"""

import shutil
import subprocess
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
from dagster_dbt import DbtCliResource, DbtProject, dbt_assets

from music_platform.config import Settings
from music_platform.defs.transform.dbt import DAILY_MODELS_SELECTION, DailyDbtConfig, _build, daily_build_args
from music_platform.identity import artist_id
from music_platform.partitions import daily_partitions
from music_platform.quality.ledger import listen_ledgers
from music_platform.resources import WarehouseResource
from music_platform.sources.landing import collect_scrobbles
from music_platform.sources.lastfm.client import LastfmClient
from music_platform.sources.schemas import LASTFM_SCROBBLES
from music_platform.transformation.project import DBT_PROJECT_DIR
from music_platform.transformation.translator import MusicPlatformDbtTranslator
from music_platform.warehouse import connect_warehouse
from music_platform_tests.dbt_runner import DBT, run_dbt
from music_platform_tests.fakes.lastfm_server import ARTISTS_IN_EVERY_SCRIPT, TRACKS_IN_EVERY_SCRIPT, FakeLastfmServer

DAYS = [date(2025, 3, 3), date(2025, 3, 4)]
END = int(datetime.combine(DAYS[-1] + timedelta(days=1), datetime.min.time(), tzinfo=UTC).timestamp())
DAILY = [
    "name_key_characters",
    "stg_lastfm__scrobbles",
    "fct_listens",
    "listens_set_aside",
    "listen_ledger",
    "user_track_interactions",
]
# What each malformed row breaks, and the reason it must be set aside with.
MALFORMED = {
    "missing_artist_name": {"artist_name": "   "},
    "missing_track_name": {"track_name": None},
    "missing_user": {"user_name": ""},
    "listen_date_mismatch": {"scrobble_date": DAYS[1]},  # a scrobble of day 0 filed under day 1
}


def _scrobbles() -> pd.DataFrame:
    """Two days of scrobbles from the fake Last.fm API, through the same client and parser."""
    with FakeLastfmServer(
        users=6, days=2, seed=11, end_uts=END, artist_names=ARTISTS_IN_EVERY_SCRIPT, track_names=TRACKS_IN_EVERY_SCRIPT
    ) as server:
        client = LastfmClient(server.api_key, server.url)
        batch = collect_scrobbles(client, server.user_names, DAYS)
    frame = batch.frame(source="lastfm", ingested_at=datetime(2025, 3, 5))
    assert len(frame) > 200
    return frame


def _with_malformed_rows(frame: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for position, (reason, change) in enumerate(MALFORMED.items()):
        row = frame[frame["scrobble_date"] == DAYS[0]].iloc[[position]].copy()
        row["played_at_uts"] += 1  # a scrobble of its own, not a duplicate of the row it came from
        row["played_at"] = pd.to_datetime(row["played_at_uts"], unit="s")
        for column, value in change.items():
            row[column] = value
        row["album_name"] = reason  # to find it again
        rows.append(row)
    return pd.concat([frame, *rows], ignore_index=True)


def _load(settings: Settings, frame: pd.DataFrame) -> None:
    warehouse = connect_warehouse(settings)
    for day in DAYS:
        warehouse.replace_partition(
            "raw", LASTFM_SCROBBLES.name, frame[frame["scrobble_date"] == day], "scrobble_date", [day]
        )


@pytest.fixture(scope="module")
def scrobbles() -> pd.DataFrame:
    return _with_malformed_rows(_scrobbles())


@pytest.mark.slow
def test_every_scrobble_becomes_one_listen_or_is_set_aside_with_its_reason(tmp_path, scrobbles):
    settings = Settings.from_env({"MUSIC_PLATFORM_DATA_DIR": str(tmp_path / "data")})
    _load(settings, scrobbles)
    run_dbt(["build", "--select", *DAILY, "--indirect-selection", "cautious"], settings, tmp_path)

    warehouse = connect_warehouse(settings)
    set_aside = warehouse.query_df("select album_name, reason from audit.listens_set_aside order by reason")
    assert dict(zip(set_aside["album_name"], set_aside["reason"], strict=True)) == {r: r for r in MALFORMED}

    valid = scrobbles[~scrobbles["album_name"].isin(list(MALFORMED))]
    listens = warehouse.query_df(
        "select f.listen_id, f.artist_id, s.artist_name from marts.fct_listens as f "
        "join staging.stg_lastfm__scrobbles as s on f.listen_id = s.listen_id"
    )
    assert len(listens) == len(valid) and listens["listen_id"].is_unique  # exactly once
    # names in every script keep an artist of their own, with the id Python's rule gives them
    assert set(valid["artist_name"]) & set(ARTISTS_IN_EVERY_SCRIPT)
    ids = dict(zip(listens["artist_name"], listens["artist_id"], strict=False))
    assert ids == {name: artist_id(name) for name in valid["artist_name"].unique()}
    assert len(set(ids.values())) == valid["artist_name"].nunique()

    ledgers = listen_ledgers(warehouse)
    assert all(verdict.passed for verdict in ledgers.verdicts().values())
    day0, day1 = ledgers.end_to_end
    assert day0.set_aside == {"duplicate": 0, "missing_artist_name": 1, "missing_track_name": 1, "missing_user": 1}
    assert day1.set_aside == {"duplicate": 0, "listen_date_mismatch": 1}  # filed under the day it claims
    assert day0.lost == day1.lost == 0 and day0.accounted_share == day1.accounted_share == 1.0
    interactions = warehouse.query_df("select sum(play_count) as plays from marts.user_track_interactions")
    assert int(interactions["plays"].iloc[0]) == len(valid)


def _project_losing_rows(tmp_path: Path) -> Path:
    """A copy of the dbt project whose fct_listens silently drops a sixteenth of the listens."""
    copy = tmp_path / "dbt_losing_rows"
    shutil.copytree(DBT_PROJECT_DIR, copy, ignore=shutil.ignore_patterns("target", "logs"))
    model = copy / "models" / "marts" / "fct_listens.sql"
    sql = model.read_text()
    assert sql.rstrip().endswith("inner join listen_name_keys as t on s.track_name = t.name")
    model.write_text(sql.rstrip() + "\nwhere s.listen_id not like '0%'\n")
    return copy


def _daily_dbt_assets_of(project_dir: Path):
    """The day-partitioned dbt asset of ``music_platform.defs.transform.dbt``, over another project."""
    subprocess.run(
        [DBT, "parse", "--project-dir", str(project_dir), "--profiles-dir", str(project_dir)],
        check=True, capture_output=True, cwd=project_dir,
    )  # fmt: skip
    project = DbtProject(project_dir=project_dir, profiles_dir=project_dir, target="duckdb")

    @dbt_assets(
        manifest=project.manifest_path,
        project=project,
        dagster_dbt_translator=MusicPlatformDbtTranslator(),
        select=DAILY_MODELS_SELECTION,
        partitions_def=daily_partitions(Settings.from_env({"MUSIC_PLATFORM_PARTITIONS_START": "2025-01-01"})),
    )
    def daily_models(
        context: dg.AssetExecutionContext, config: DailyDbtConfig, dbt: DbtCliResource, warehouse: WarehouseResource
    ):
        window = context.partition_time_window
        yield from _build(context, dbt, warehouse, daily_build_args(window.start, window.end, config.full_refresh))

    return daily_models, DbtCliResource(project_dir=project, target="duckdb", dbt_executable=DBT)


@pytest.mark.slow
def test_a_silent_loss_fails_the_conservation_check_and_blocks_everything_downstream(tmp_path, scrobbles, monkeypatch):
    duckdb_path = tmp_path / "data" / "warehouse.duckdb"
    # dbt, run by Dagster, finds the warehouse through the environment (dbt/profiles.yml)
    monkeypatch.setenv("MUSIC_PLATFORM_DUCKDB_PATH", str(duckdb_path))
    settings = Settings.from_env({"MUSIC_PLATFORM_DATA_DIR": str(tmp_path / "data")})
    _load(settings, scrobbles)
    run_dbt(["build", "--select", "stg_lastfm__scrobbles", "name_key_characters"], settings, tmp_path)

    @dg.asset(deps=[dg.AssetKey(["marts", "fct_listens"])])
    def downstream_of_the_listens() -> None:
        raise AssertionError("built from a mart that lost rows")

    daily_models, dbt = _daily_dbt_assets_of(_project_losing_rows(tmp_path))
    result = dg.materialize(
        [daily_models, downstream_of_the_listens],
        partition_key=DAYS[0].isoformat(),
        resources={"dbt": dbt, "warehouse": WarehouseResource(target="duckdb", duckdb_path=str(duckdb_path))},
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )
    assert not result.success
    checks = {(e.asset_key.to_user_string(), e.check_name): e for e in result.get_asset_check_evaluations()}
    conservation = checks[("audit/listen_ledger", "listens_accounted_for_listen_ledger_0_95")]
    assert not conservation.passed
    materialised = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert "marts/user_track_interactions" not in materialised  # dbt skipped it
    assert "downstream_of_the_listens" not in materialised  # Dagster never ran it

    # the ledger says where the rows went missing, and how many
    ledgers = listen_ledgers(connect_warehouse(settings), DAYS[0], DAYS[0])
    mart = ledgers.mart[0]
    assert mart.lost > 0 and not ledgers.verdicts()["staging -> marts.fct_listens"].passed
    assert ledgers.staging[0].lost == 0  # staging kept everything
