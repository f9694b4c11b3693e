"""The Spotify raw assets against the fake Spotify server, alone and inside the whole graph.

Fast tests materialise ``raw/spotify_tracks``, ``raw/spotify_artists`` and
``raw/spotify_audio_features`` on a warehouse holding a hand-made candidates table, in each app
mode (extended, dev_2024, dev_2026), unconfigured, with bad credentials and on a rate limit.

The slow test builds the whole graph (synthetic Last.fm and Kaggle, ``MUSIC_PLATFORM_SOURCE=
synthetic``, Spotify configured and pointing at a fake serving the synthetic catalogue): in
``dev_2026`` mode every matched track's audio features come from the Kaggle file and the missing
capabilities are in the metadata; switched to ``extended`` they come from Spotify; and a third
run asks Spotify for nothing it answered recently.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

import music_platform.definitions as root_definitions
from music_platform.config import Settings, building_definitions
from music_platform.defs.ingestion.spotify import (
    ARTISTS_KEY,
    AUDIO_FEATURES_KEY,
    CAPABILITIES_CHECK,
    COMPLETE_CHECK,
    TRACKS_KEY,
    spotify_metadata,
)
from music_platform.resources import ArtifactStoreResource, SpotifyResource, WarehouseResource, build_resources
from music_platform.sources.schemas import SPOTIFY_ARTISTS, SPOTIFY_AUDIO_FEATURES, SPOTIFY_TRACKS
from music_platform.warehouse.duckdb_warehouse import DuckDBWarehouse
from music_platform_tests.fakes.spotify_server import FakeCatalogue, FakeSpotifyServer, _features_for, fake_id

SPOTIFY_ASSETS = [spotify_metadata]
SPOTIFY_KEYS = [TRACKS_KEY, ARTISTS_KEY, AUDIO_FEATURES_KEY]
SPOTIFY_TRACKS_KEY, SPOTIFY_ARTISTS_KEY, SPOTIFY_AUDIO_FEATURES_KEY = SPOTIFY_KEYS
MATCHED = 120  # catalogue tracks given to the assets as Kaggle-matched ids
UNKNOWN_ID = fake_id("a track Spotify does not know")


# -- fast: the three assets on a hand-made candidates table ------------------------------------


def _candidates(catalogue: FakeCatalogue) -> pd.DataFrame:
    """What int_tracks_kaggle_matched would hold: matched ids, one unknown id, two unmatched tracks."""
    tracks = list(catalogue.tracks.values())
    rows = [
        {
            "track_id": f"lastfm-{i}",
            "artist_name": t["artists"][0]["name"],
            "track_name": t["name"],
            "spotify_track_id": t["id"],
        }
        for i, t in enumerate(tracks[:MATCHED])
    ]
    rows.append(
        {"track_id": "lastfm-unknown", "artist_name": "Nobody", "track_name": "Lost", "spotify_track_id": UNKNOWN_ID}
    )
    searchable = tracks[-1]  # in the catalogue, but not among the matched ids: search finds it
    rows.append(
        {
            "track_id": "lastfm-search-hit",
            "artist_name": searchable["artists"][0]["name"],
            "track_name": searchable["name"],
            "spotify_track_id": None,
        }
    )
    rows.append(
        {
            "track_id": "lastfm-search-miss",
            "artist_name": "No Such Band",
            "track_name": "No Such Song",
            "spotify_track_id": None,
        }
    )
    return pd.DataFrame(rows)


def _resources(tmp_path: Path, fake: FakeSpotifyServer | None, **spotify_options) -> dict[str, object]:
    spotify = SpotifyResource(
        **(
            {
                "client_id": fake.client_id,
                "client_secret": fake.client_secret,
                "api_root": fake.api_root,
                "accounts_root": fake.accounts_root,
            }
            if fake is not None
            else {}
        ),
        requests_per_second=1000.0,
        **spotify_options,
    )
    return {
        "warehouse": WarehouseResource(target="duckdb", duckdb_path=str(tmp_path / "warehouse.duckdb")),
        "artifacts": ArtifactStoreResource(data_dir=str(tmp_path / "data")),
        "spotify": spotify,
    }


def _warehouse_with_candidates(tmp_path: Path, catalogue: FakeCatalogue) -> DuckDBWarehouse:
    warehouse = DuckDBWarehouse(tmp_path / "warehouse.duckdb")
    warehouse.replace_table("intermediate", "int_tracks_kaggle_matched", _candidates(catalogue))
    return warehouse


def _metadata(result: dg.ExecuteInProcessResult, key: dg.AssetKey) -> dict[str, object]:
    [event] = [e for e in result.get_asset_materialization_events() if e.asset_key == key]
    return {name: value.value for name, value in event.materialization.metadata.items()}


def _checks(result: dg.ExecuteInProcessResult, key: dg.AssetKey) -> dict[str, dg.AssetCheckEvaluation]:
    return {e.check_name: e for e in result.get_asset_check_evaluations() if e.asset_key == key}


@pytest.mark.parametrize("mode", ["extended", "dev_2024", "dev_2026"])
def test_spotify_assets_in_each_app_mode(mode, tmp_path):
    with FakeSpotifyServer(mode) as fake:
        warehouse = _warehouse_with_candidates(tmp_path, fake.catalogue)
        result = dg.materialize(SPOTIFY_ASSETS, resources=_resources(tmp_path, fake, max_single_lookups=40))
        requests = fake.api_requests()
    assert result.success

    tracks = warehouse.read_table("raw", SPOTIFY_TRACKS.name)
    track_meta = _metadata(result, SPOTIFY_TRACKS_KEY)
    assert set(tracks.columns) == set(SPOTIFY_TRACKS.column_names)
    assert set(tracks["source"]) == {"spotify"}
    assert track_meta["searches"] == 2 and track_meta["search_hits"] == 1
    found_by_search = list(fake.catalogue.tracks)[-1]
    assert found_by_search in set(tracks["track_id"])
    lookups = warehouse.read_table("raw", "spotify_lookups").set_index("lookup_key")
    assert lookups.loc["search:lastfm-search-miss", "outcome"] == "no_result"
    assert lookups.loc["search:lastfm-search-hit", "outcome"] == "found"

    artists = warehouse.read_table("raw", SPOTIFY_ARTISTS.name)
    # dev_2026 fetches artists one by one too, within the same budget of 40
    assert set(artists["artist_id"]) <= set(tracks["primary_artist_id"])
    assert len(artists) == min(len(set(tracks["primary_artist_id"])), 40 if mode == "dev_2026" else 1000)
    features = warehouse.read_table("raw", SPOTIFY_AUDIO_FEATURES.name)
    feature_meta = _metadata(result, SPOTIFY_AUDIO_FEATURES_KEY)
    feature_checks = _checks(result, SPOTIFY_AUDIO_FEATURES_KEY)

    if mode == "dev_2026":
        # Batch tracks/artists withdrawn: 40 ids fetched one by one, the rest left for the next run.
        assert "tracks_batch" in track_meta["unavailable_capabilities"]
        assert track_meta["ids_found"] + track_meta["ids_not_found"] == 40
        assert track_meta["ids_not_answered"] == MATCHED + 1 - 40
        assert len(tracks) == 40 - track_meta["ids_not_found"] + 1
        assert tracks["popularity"].isna().all() and artists["genres"].isna().all()
        assert not any(r.path == "/v1/tracks" and r.status == 200 for r in requests)
        track_checks = _checks(result, SPOTIFY_TRACKS_KEY)
        assert not track_checks[COMPLETE_CHECK].passed
        assert track_checks[COMPLETE_CHECK].severity == dg.AssetCheckSeverity.WARN
    else:
        assert track_meta["unavailable_capabilities"] == {}
        assert (track_meta["ids_found"], track_meta["ids_not_found"], track_meta["ids_not_answered"]) == (MATCHED, 1, 0)
        assert len(tracks) == MATCHED + 1 and tracks["popularity"].notna().all()
        assert all(_checks(result, SPOTIFY_TRACKS_KEY)[name].passed for name in (CAPABILITIES_CHECK, COMPLETE_CHECK))

    if mode == "extended":
        assert len(features) == MATCHED + 1  # the matched ids and the search hit; the unknown id is not found
        assert feature_meta["ids_not_found"] == 1
        row = features.set_index("track_id").loc[found_by_search]
        assert row["danceability"] == _features_for(found_by_search)["danceability"]
        assert feature_checks[CAPABILITIES_CHECK].passed
    else:
        # Withdrawn since Nov 2024: recorded, warned about, never a failure.
        assert features.empty and list(features.columns) == SPOTIFY_AUDIO_FEATURES.column_names
        assert "audio_features" in feature_meta["unavailable_capabilities"]
        assert not feature_checks[CAPABILITIES_CHECK].passed
        assert feature_checks[CAPABILITIES_CHECK].severity == dg.AssetCheckSeverity.WARN
        assert "audio_features" in feature_checks[CAPABILITIES_CHECK].description
    for key in SPOTIFY_KEYS:
        checks = _checks(result, key)
        assert checks["completeness"].passed and checks["key_unique"].passed


def test_unconfigured_spotify_materialises_empty_tables_with_their_columns(tmp_path):
    warehouse = DuckDBWarehouse(tmp_path / "warehouse.duckdb")
    result = dg.materialize(SPOTIFY_ASSETS, resources=_resources(tmp_path, None))
    assert result.success
    for key, table in zip(SPOTIFY_KEYS, (SPOTIFY_TRACKS, SPOTIFY_ARTISTS, SPOTIFY_AUDIO_FEATURES), strict=True):
        frame = warehouse.read_table("raw", table.name)
        assert frame.empty and list(frame.columns) == table.column_names
        metadata = _metadata(result, key)
        assert metadata["spotify_configured"] is False and "not configured" in metadata["note"]
        assert all(check.passed for check in _checks(result, key).values())


def test_bad_credentials_fail_the_asset_without_retry_or_leak(tmp_path):
    with FakeSpotifyServer("extended") as fake:
        _warehouse_with_candidates(tmp_path, fake.catalogue)
        resources = _resources(tmp_path, fake)
        resources["spotify"] = SpotifyResource(
            client_id=fake.client_id,
            client_secret="wrong-secret-value",
            api_root=fake.api_root,
            accounts_root=fake.accounts_root,
        )
        result = dg.materialize(SPOTIFY_ASSETS, selection=[TRACKS_KEY], resources=resources, raise_on_error=False)
    assert not result.success
    [failure] = [e for e in result.all_events if e.is_step_failure]
    message = failure.step_failure_data.error.message
    assert "SPOTIFY_CLIENT_SECRET" in message and "wrong-secret-value" not in message
    assert not [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]


def test_a_rate_limit_past_the_cap_degrades_with_a_warning(tmp_path):
    with FakeSpotifyServer("extended") as fake:
        warehouse = _warehouse_with_candidates(tmp_path, fake.catalogue)
        fake.rate_limit_next(1000, retry_after=3600)  # far beyond the 60 s cap: stop asking, do not wait
        result = dg.materialize(SPOTIFY_ASSETS, selection=[TRACKS_KEY], resources=_resources(tmp_path, fake))
    assert result.success
    metadata = _metadata(result, SPOTIFY_TRACKS_KEY)
    assert metadata["ids_not_answered"] == MATCHED + 1 and "429" in metadata["spotify_report"]["stopped_reason"]
    complete = _checks(result, SPOTIFY_TRACKS_KEY)[COMPLETE_CHECK]
    assert not complete.passed and complete.severity == dg.AssetCheckSeverity.WARN
    assert "stopped early" in complete.description
    assert warehouse.read_table("raw", SPOTIFY_TRACKS.name).empty
    # Nothing was answered, so nothing is marked as fetched: the next run asks again.
    assert warehouse.read_table("raw", "spotify_lookups").empty


def test_ids_answered_recently_are_not_asked_again(tmp_path):
    with FakeSpotifyServer("extended") as fake:
        _warehouse_with_candidates(tmp_path, fake.catalogue)
        first = dg.materialize(SPOTIFY_ASSETS, selection=[TRACKS_KEY], resources=_resources(tmp_path, fake))
        batches_after_first = len(fake.api_requests("/v1/tracks"))
        second = dg.materialize(SPOTIFY_ASSETS, selection=[TRACKS_KEY], resources=_resources(tmp_path, fake))
        batches_after_second = len(fake.api_requests("/v1/tracks"))
        third = dg.materialize(
            SPOTIFY_ASSETS, selection=[TRACKS_KEY], resources=_resources(tmp_path, fake, refetch_after_days=0)
        )
    assert _metadata(first, SPOTIFY_TRACKS_KEY)["ids_requested"] == MATCHED + 1
    second_meta = _metadata(second, SPOTIFY_TRACKS_KEY)
    assert second_meta["ids_requested"] == 0 and second_meta["searches"] == 0
    assert second_meta["lookup_plan"]["ids_fetched_recently"] == MATCHED + 1
    assert batches_after_second == batches_after_first
    assert _metadata(third, SPOTIFY_TRACKS_KEY)["ids_requested"] == MATCHED + 1  # refetch_after_days=0


# -- slow: the whole graph, synthetic sources enriched by a (fake) Spotify ----------------------

USERS = 200
DAYS = 4


def _definitions(folder: dg.Definitions, settings: Settings, spotify: SpotifyResource) -> dg.Definitions:
    """The code location's definitions (as ``music_platform.definitions.defs``), with a fast Spotify client."""
    resources = {**build_resources(settings), "spotify": spotify}
    return dg.Definitions.merge(folder, dg.Definitions(resources=resources, executor=dg.in_process_executor))


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        for name in list(__import__("os").environ):
            if name.startswith(("MUSIC_PLATFORM_", "LASTFM_", "SPOTIFY_", "SNOWFLAKE_")):
                patch.delenv(name)
        for name, value in values.items():
            patch.setenv(name, value)
        yield


class GraphRun:
    def __init__(self, data_dir: Path):
        today = datetime.now(UTC).date()
        self.first_day, self.last_day = today - timedelta(days=DAYS), today - timedelta(days=1)
        self.env = {
            "MUSIC_PLATFORM_DATA_DIR": str(data_dir),
            "MUSIC_PLATFORM_TARGET": "duckdb",
            "MUSIC_PLATFORM_SOURCE": "synthetic",
            "MUSIC_PLATFORM_SYNTHETIC_USERS": str(USERS),
            "MUSIC_PLATFORM_SEED": "42",
            "MUSIC_PLATFORM_PARTITIONS_START": self.first_day.isoformat(),
        }

    def settings(self, fake: FakeSpotifyServer) -> Settings:
        return Settings.from_env({**self.env, **fake.env()})

    def spotify(self, fake: FakeSpotifyServer, **options) -> SpotifyResource:
        return SpotifyResource(
            client_id=fake.client_id,
            client_secret=fake.client_secret,
            api_root=fake.api_root,
            accounts_root=fake.accounts_root,
            requests_per_second=1000.0,
            **options,
        )


def _run(definitions: dg.Definitions, selection, tags=None) -> dg.ExecuteInProcessResult:
    job = definitions.resolve_implicit_global_asset_job_def()
    return job.execute_in_process(
        instance=dg.DagsterInstance.ephemeral(), asset_selection=list(selection), tags=tags or {}, raise_on_error=False
    )


def _failures(result: dg.ExecuteInProcessResult) -> str:
    return "; ".join(
        f"{e.step_key}: {e.step_failure_data.error.message[:500] if e.step_failure_data.error else ''}"
        for e in result.all_events
        if e.is_step_failure
    )


@pytest.fixture(scope="module")
def whole_graph(tmp_path_factory):
    """dev_2026 first (the whole graph), then the same warehouse with the app in extended mode."""
    data_dir = tmp_path_factory.mktemp("spotify_graph") / "data"
    run = GraphRun(data_dir)
    outcome: dict[str, object] = {}
    with _environment(run.env):
        kaggle_files, labels = build_resources(Settings.from_env())["kaggle"].resolve()
        assert [labels[path.name] for path in kaggle_files] == ["synthetic"]
        catalogue = FakeCatalogue.from_kaggle_csv(kaggle_files[0])
        with FakeSpotifyServer("dev_2026", catalogue=catalogue) as fake:
            with _environment({**run.env, **fake.env()}):
                settings = run.settings(fake)
                assert settings.uses_synthetic_source and settings.spotify_configured
                with building_definitions(settings):
                    folder = dg.load_from_defs_folder(path_within_project=Path(root_definitions.__file__).parent)
                definitions = _definitions(folder, settings, run.spotify(fake))
                graph = definitions.resolve_asset_graph()
                scrobbles = dg.AssetKey(["raw", "lastfm_scrobbles"])
                everything = [k for k in graph.get_all_asset_keys() if graph.get(k).is_materializable]
                days = {
                    "dagster/asset_partition_range_start": run.first_day.isoformat(),
                    "dagster/asset_partition_range_end": run.last_day.isoformat(),
                }
                first = _run(definitions, [scrobbles], days)
                assert first.success, _failures(first)
                # One run for the rest: Dagster builds the dbt models the Spotify assets read, then
                # the Spotify assets, then the models that read them (the daily models over the days).
                outcome["dev_2026"] = _run(definitions, [k for k in everything if k != scrobbles], days)
                assert outcome["dev_2026"].success, _failures(outcome["dev_2026"])
                warehouse = DuckDBWarehouse(settings.resolved_duckdb_path)
                outcome["dev_2026_tracks"] = warehouse.read_table("marts", "dim_tracks")
                outcome["graph"] = graph

                # The same app, upgraded to extended access: everything is fetched again.
                fake.mode = "extended"
                extended_definitions = _definitions(folder, settings, run.spotify(fake, refetch_after_days=0))
                ml = {k for k in everything if graph.get(k).group_name == "ml"}
                selection = (
                    dg.AssetSelection.assets(*SPOTIFY_KEYS).downstream() - dg.AssetSelection.assets(*ml)
                ).resolve(graph)
                outcome["extended"] = _run(extended_definitions, selection)
                assert outcome["extended"].success, _failures(outcome["extended"])
                outcome["extended_tracks"] = warehouse.read_table("marts", "dim_tracks")
                outcome["extended_artists"] = warehouse.read_table("marts", "dim_artists")
                outcome["catalogue"] = catalogue

                # Default refetch window: nothing answered in the last 30 days is asked again.
                requests_before = len(fake.api_requests())
                outcome["again"] = _run(_definitions(folder, settings, run.spotify(fake)), SPOTIFY_KEYS)
                outcome["requests_again"] = len(fake.api_requests()) - requests_before
                outcome["warehouse"] = warehouse
    return outcome


@pytest.mark.slow
def test_dev_2026_whole_graph_builds_with_kaggle_audio_features(whole_graph):
    result = whole_graph["dev_2026"]
    tracks = whole_graph["dev_2026_tracks"]
    matched = tracks[tracks["spotify_track_id"].notna()]
    assert len(matched) > 0.8 * len(tracks)
    # Spotify withdrew audio features and popularity: every matched track has the Kaggle file's.
    assert (matched["audio_features_source"] == "kaggle").all()
    assert (matched["popularity_source"] == "kaggle").all()
    assert matched["danceability"].notna().all()
    # The tracks fetched one by one (the batch endpoint is withdrawn) carry Spotify's duration.
    assert (matched["duration_source"] == "spotify").sum() > 0
    # The missing capabilities are in the metadata, and WARN checks say so.
    features_meta = _metadata(result, SPOTIFY_AUDIO_FEATURES_KEY)
    tracks_meta = _metadata(result, SPOTIFY_TRACKS_KEY)
    assert "audio_features" in features_meta["unavailable_capabilities"]
    assert {"tracks_batch"} <= set(tracks_meta["unavailable_capabilities"])
    capability_check = _checks(result, SPOTIFY_AUDIO_FEATURES_KEY)[CAPABILITIES_CHECK]
    assert not capability_check.passed and capability_check.severity == dg.AssetCheckSeverity.WARN
    # The whole graph was built, recommendations included, with no blocking check failed.
    materialised = {e.asset_key for e in result.get_asset_materialization_events()}
    assert dg.AssetKey(["ml", "user_recommendations"]) in materialised
    assert dg.AssetKey(["marts", "dim_tracks"]) in materialised
    assert all(e.passed for e in result.get_asset_check_evaluations() if e.severity == dg.AssetCheckSeverity.ERROR)


@pytest.mark.slow
def test_sources_are_labelled_and_never_mixed_silently(whole_graph):
    warehouse = whole_graph["warehouse"]
    for table in ("lastfm_scrobbles", "lastfm_users", "kaggle_tracks"):
        assert set(warehouse.query_df(f"select distinct source from raw.{table}")["source"]) == {"synthetic"}
    for table in ("spotify_tracks", "spotify_artists", "spotify_audio_features", "spotify_lookups"):
        assert set(warehouse.query_df(f"select distinct source from raw.{table}")["source"]) == {"spotify"}


@pytest.mark.slow
def test_extended_mode_audio_features_come_from_spotify(whole_graph):
    tracks = whole_graph["extended_tracks"]
    catalogue = whole_graph["catalogue"]
    matched = tracks[tracks["spotify_track_id"].notna()]
    assert len(matched) > 0.8 * len(tracks)
    assert (matched["audio_features_source"] == "spotify").all()
    assert (matched["popularity_source"] == "spotify").all()
    assert (matched["genre_source"] == "spotify").all()
    for row in matched.head(50).itertuples(index=False):
        spotify_values = catalogue.audio_features[row.spotify_track_id]
        assert row.danceability == pytest.approx(spotify_values["danceability"])
        assert row.energy == pytest.approx(spotify_values["energy"])
    result = whole_graph["extended"]
    assert _metadata(result, SPOTIFY_AUDIO_FEATURES_KEY)["unavailable_capabilities"] == {}
    assert all(c.passed for key in SPOTIFY_KEYS for c in _checks(result, key).values())
    artists = whole_graph["extended_artists"]
    assert (artists["popularity_source"] == "spotify").sum() > 0.5 * (artists["name_source"] == "lastfm").sum()


@pytest.mark.slow
def test_a_later_run_asks_spotify_only_for_what_it_did_not_answer_recently(whole_graph):
    again = whole_graph["again"]
    assert again.success
    for key in SPOTIFY_KEYS:
        assert _metadata(again, key)["ids_requested"] == 0
    # Only the searches not yet made (the budget is 50 a run) are sent.
    assert whole_graph["requests_again"] <= 50


# -- check-apis: the Spotify section -------------------------------------------------------------


@pytest.mark.parametrize("mode", ["extended", "dev_2024", "dev_2026"])
def test_check_apis_lists_the_capabilities_of_the_app(mode):
    from music_platform.sources.check_apis import API_CHECKS, check_spotify, run_check_apis

    assert check_spotify in API_CHECKS
    with FakeSpotifyServer(mode) as fake:
        lines: list[str] = []
        code = run_check_apis(Settings.from_env(fake.env()), checks=[check_spotify], echo=lines.append)
    text = "\n".join(lines)
    assert code == 0, text  # a withdrawn capability is a warning, not a failure
    withdrawn = {
        "extended": set(),
        "dev_2024": {"audio_features"},
        "dev_2026": {"audio_features", "tracks_batch", "artists_batch"},
    }[mode]
    for capability in ("tracks_batch", "tracks_single", "artists_batch", "artists_single", "audio_features", "search"):
        status = "WARN" if capability in withdrawn else "ok"
        assert any(line.split()[:3] == [status, "capability", capability] for line in lines), (capability, text)
    assert "response formats" in text and fake.client_secret not in text


def test_check_apis_spotify_section_skips_when_unconfigured_and_fails_on_bad_credentials():
    from music_platform.sources.check_apis import check_spotify, format_report

    skipped = check_spotify(Settings.from_env({}))
    assert not skipped.failed and "not configured" in skipped.note
    with FakeSpotifyServer("extended") as fake:
        report = check_spotify(Settings.from_env({**fake.env(), "SPOTIFY_CLIENT_SECRET": "not-the-secret"}))
    assert report.failed
    text = "\n".join(format_report(report))
    assert "SPOTIFY_CLIENT_SECRET" in text and "not-the-secret" not in text
