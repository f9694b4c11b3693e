"""The Kaggle Spotify Tracks dataset: loaded from the drop folder, watched by a sensor.

Every input row is accounted for (loaded + merged + rejected = input): a track_id listed under
several genres becomes one row carrying all of them, and rows that fail validation go to
``raw.kaggle_tracks_rejected`` with their content and the reason.
"""

import json
import shutil
from pathlib import Path

import dagster as dg

from music_platform.lib.checks import completeness_result, completeness_spec, key_unique_result, key_unique_spec
from music_platform.lib.metadata import table_metadata
from music_platform.policies import OWNERS, REFERENCE_FRESHNESS, STEP_RETRY
from music_platform.quality.completeness import measure_completeness
from music_platform.quality.contracts import raw_required_fields
from music_platform.resources import ArtifactStoreResource, KaggleResource, WarehouseResource
from music_platform.sources.kaggle.loader import file_fingerprint, load_kaggle_files
from music_platform.sources.landing import utc_now
from music_platform.sources.schemas import KAGGLE_TRACKS

RAW = "raw"
KAGGLE_KEY = dg.AssetKey([RAW, KAGGLE_TRACKS.name])
REJECTED_TABLE = "kaggle_tracks_rejected"
DROP_FOLDER_CHECK = "drop_folder_has_files"


def empty_drop_folder_message(drop_dir: str) -> str:
    return (
        f"No CSV file in the Kaggle drop folder {drop_dir}: raw.kaggle_tracks is empty, so tracks have no "
        "audio features (their columns stay null in the marts). Download the Kaggle 'Spotify Tracks Dataset' "
        f"(dataset.csv) into {drop_dir}; the kaggle_drop_folder_sensor (or a new materialisation of "
        "raw/kaggle_tracks) loads it."
    )


def drop_folder_result(files: list, drop_dir: str) -> dg.AssetCheckResult:
    if files:
        return dg.AssetCheckResult(
            check_name=DROP_FOLDER_CHECK,
            passed=True,
            metadata={"files": dg.MetadataValue.json([Path(f).name for f in files])},
            description=f"{len(files)} file(s) loaded",
        )
    return dg.AssetCheckResult(
        check_name=DROP_FOLDER_CHECK,
        passed=False,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"drop_folder": dg.MetadataValue.path(str(drop_dir))},
        description=empty_drop_folder_message(drop_dir),
    )


@dg.asset(
    key=KAGGLE_KEY,
    description="The Kaggle Spotify Tracks dataset (every CSV in data/external/kaggle/): one row per distinct "
    "track_id with all its genres; invalid rows quarantined in raw.kaggle_tracks_rejected.",
    check_specs=[
        completeness_spec(KAGGLE_KEY),
        key_unique_spec(KAGGLE_KEY, KAGGLE_TRACKS.key),
        dg.AssetCheckSpec(
            "rows_accounted_for",
            asset=KAGGLE_KEY,
            blocking=True,
            description="loaded + merged + rejected = input rows: no row is lost silently.",
        ),
        dg.AssetCheckSpec(
            DROP_FOLDER_CHECK,
            asset=KAGGLE_KEY,
            description="The drop folder holds at least one Kaggle CSV (WARN when empty: the table is then "
            "empty and tracks have no audio features).",
        ),
    ],
    group_name="ingestion",
    owners=OWNERS["ingestion"],
    kinds={"python", "csv"},
    freshness_policy=REFERENCE_FRESHNESS,
    retry_policy=STEP_RETRY,
    pool="warehouse",
    tags={"source": "kaggle"},
)
def kaggle_tracks(
    context: dg.AssetExecutionContext,
    warehouse: WarehouseResource,
    kaggle: KaggleResource,
    artifacts: ArtifactStoreResource,
):
    files, source = kaggle.resolve()
    if not files:
        # A Last.fm-only deployment still builds its marts: the table is materialised empty (with
        # its columns), tracks get no audio features, and a WARN check says how to add them.
        context.log.warning(empty_drop_folder_message(kaggle.drop_dir))
    result = load_kaggle_files(files, source=source, ingested_at=utc_now())
    # Audit trail: a timestamped copy of each file as loaded.
    trail = artifacts.external_dir / source / "kaggle_tracks" / utc_now().strftime("%Y%m%dT%H%M%S")
    trail.mkdir(parents=True, exist_ok=True)
    for path in files:
        shutil.copy2(path, trail / path.name)
    (trail / "load.json").write_text(
        json.dumps({"counts": result.counts(), "fingerprints": result.fingerprints}, indent=2)
    )

    wh = warehouse.get_warehouse()
    wh.replace_table(RAW, KAGGLE_TRACKS.name, result.tracks)
    wh.replace_table(RAW, REJECTED_TABLE, result.rejected)
    counts = result.counts()
    completeness = measure_completeness(wh, RAW, KAGGLE_TRACKS.name, raw_required_fields(KAGGLE_TRACKS.name))
    yield dg.MaterializeResult(
        metadata={
            **table_metadata(result.tracks, KAGGLE_TRACKS, completeness),
            **{
                f"rows_{name}": dg.MetadataValue.int(int(counts[name]))
                for name in ("input_rows", "loaded", "merged", "rejected")
            },
            "files": dg.MetadataValue.json(result.fingerprints),
            "rejected_reasons": dg.MetadataValue.json(
                result.rejected["reason"].value_counts().head(20).to_dict() if len(result.rejected) else {}
            ),
            "audit_trail": dg.MetadataValue.path(str(trail)),
            "data_source": dg.MetadataValue.text(source),
        }
    )
    yield completeness_result(completeness, allow_empty=not files)
    yield key_unique_result(wh, RAW, KAGGLE_TRACKS.name, KAGGLE_TRACKS.key)
    yield drop_folder_result(files, kaggle.drop_dir)
    accounted = result.loaded + result.merged + result.rejected_count
    yield dg.AssetCheckResult(
        check_name="rows_accounted_for",
        passed=accounted == result.input_rows,
        metadata={k: dg.MetadataValue.int(int(counts[k])) for k in ("input_rows", "loaded", "merged", "rejected")},
        description=f"{result.loaded} loaded + {result.merged} merged + {result.rejected_count} rejected "
        f"= {accounted} of {result.input_rows} input rows",
    )


kaggle_job = dg.define_asset_job("kaggle_ingestion_job", selection=[KAGGLE_KEY])


@dg.sensor(
    name="kaggle_drop_folder_sensor",
    job=kaggle_job,
    minimum_interval_seconds=60,
    description="Materialises raw/kaggle_tracks when a CSV is added to or changed in data/external/kaggle/ "
    "(cursor: file name + sha256 of the content).",
    default_status=dg.DefaultSensorStatus.STOPPED,
)
def kaggle_drop_folder_sensor(context: dg.SensorEvaluationContext, kaggle: KaggleResource):
    current = {p.name: file_fingerprint(p) for p in kaggle.drop_files()}
    previous = json.loads(context.cursor) if context.cursor else {}
    changed = sorted(name for name, digest in current.items() if previous.get(name) != digest)
    if not changed:
        return dg.SkipReason(f"no new or changed CSV in {kaggle.drop_dir}")
    run_key = "kaggle:" + ",".join(f"{n}@{current[n][:12]}" for n in changed)
    return dg.SensorResult(
        run_requests=[dg.RunRequest(run_key=run_key, tags={"kaggle/files": ",".join(changed)[:200]})],
        cursor=json.dumps(current, sort_keys=True),
    )
