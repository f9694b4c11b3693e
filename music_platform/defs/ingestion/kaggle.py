"""The Kaggle Spotify Tracks dataset: loaded from the drop folder, watched by a sensor.

The drop folder is honoured whenever it holds a CSV, whatever the source mode (with the
synthetic source, the synthetic catalogue is loaded beside it). Every input row is accounted
for (loaded + merged + rejected = input): a track_id listed under several genres becomes one
row carrying all of them, and rows that fail validation go to ``raw.kaggle_tracks_rejected``
with their content and the reason. A file that cannot be read at all is set aside whole
(``raw.kaggle_files_rejected``, a copy in the audit trail) and the other files still load; the
``files_accepted`` and ``rows_kept`` checks report both.
"""

import json
import shutil
from pathlib import Path

import dagster as dg

from music_platform.defs.quality.checks import (
    completeness_result,
    completeness_spec,
    key_unique_result,
    key_unique_spec,
)
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
FILES_REJECTED_TABLE = "kaggle_files_rejected"
DROP_FOLDER_CHECK = "drop_folder_has_files"
FILES_CHECK = "files_accepted"
ROWS_CHECK = "rows_kept"
MIN_KEPT_SHARE = 0.95


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


def files_accepted_result(rejected_files, file_count: int) -> dg.AssetCheckResult:
    if not rejected_files:
        return dg.AssetCheckResult(
            check_name=FILES_CHECK, passed=True, description=f"all {file_count} file(s) could be read"
        )
    return dg.AssetCheckResult(
        check_name=FILES_CHECK,
        passed=False,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "rejected_files": dg.MetadataValue.json({name: reason for name, _, reason in rejected_files}),
            "quarantine_table": dg.MetadataValue.text(f"{RAW}.{FILES_REJECTED_TABLE}"),
        },
        description=f"{len(rejected_files)} of {file_count} file(s) quarantined, not loaded: "
        + "; ".join(reason for _, _, reason in rejected_files)[:400],
    )


def rows_kept_result(result) -> dg.AssetCheckResult:
    """Judged per file: a file's losses are never hidden by another file's rows."""
    shares = {name: (kept / rows if rows else 1.0) for name, (rows, kept) in result.file_rows.items()}
    short = {name: share for name, share in shares.items() if share < MIN_KEPT_SHARE}
    kept = result.loaded + result.merged
    reasons = result.rejected["reason"].value_counts().head(10).to_dict() if len(result.rejected) else {}
    summary = (
        f"{kept} of {result.input_rows} input rows kept, {result.rejected_count} quarantined in {RAW}.{REJECTED_TABLE}"
    )
    if short:
        described = "; ".join(
            f"{name}: {result.file_rows[name][1]} of {result.file_rows[name][0]} rows kept ({share:.2%})"
            for name, share in sorted(short.items())
        )
        description = f"{described} ({MIN_KEPT_SHARE:.0%} required per file); {summary}"
    else:
        description = f"every file keeps at least {MIN_KEPT_SHARE:.0%} of its rows; {summary}"
    return dg.AssetCheckResult(
        check_name=ROWS_CHECK,
        passed=not short,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "kept_share_by_file": dg.MetadataValue.json({n: round(v, 6) for n, v in shares.items()}),
            "kept": dg.MetadataValue.int(int(kept)),
            "quarantined": dg.MetadataValue.int(int(result.rejected_count)),
            "top_reasons": dg.MetadataValue.json({str(k): int(v) for k, v in reasons.items()}),
        },
        description=description,
    )


@dg.asset(
    key=KAGGLE_KEY,
    description="The Kaggle Spotify Tracks dataset (every CSV in data/external/kaggle/, whatever the source mode, "
    "plus the synthetic catalogue when the listens are synthetic): one row per distinct track_id with all its "
    "genres; invalid rows quarantined in raw.kaggle_tracks_rejected, unreadable files in raw.kaggle_files_rejected.",
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
        dg.AssetCheckSpec(
            FILES_CHECK,
            asset=KAGGLE_KEY,
            description="Every CSV of the drop folder could be read; a file that cannot (not UTF-8, not CSV, "
            "expected columns missing) is quarantined whole in raw.kaggle_files_rejected with the reason.",
        ),
        dg.AssetCheckSpec(
            ROWS_CHECK,
            asset=KAGGLE_KEY,
            blocking=True,
            description=f"Every file keeps at least {MIN_KEPT_SHARE:.0%} of its rows (loaded or merged); the "
            "rest are quarantined in raw.kaggle_tracks_rejected with their reasons.",
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
    files, labels = kaggle.resolve()
    if not files:
        # A Last.fm-only deployment still builds its marts: the table is materialised empty (with
        # its columns), tracks get no audio features, and a WARN check says how to add them.
        context.log.warning(empty_drop_folder_message(kaggle.drop_dir))
    source = ", ".join(sorted(set(labels.values()))) or "kaggle"
    stamp = utc_now()
    result = load_kaggle_files(files, sources=labels, ingested_at=stamp, quarantine_bad_files=True)
    # Audit trail: a timestamped copy of each file as loaded; files that could not be read under rejected/.
    trail = artifacts.external_dir / ("kaggle" if "kaggle" in labels.values() else source) / "kaggle_tracks"
    trail = trail / stamp.strftime("%Y%m%dT%H%M%S")
    trail.mkdir(parents=True, exist_ok=True)
    rejected_names = {name for name, _, _ in result.rejected_files}
    for path in files:
        target = trail / "rejected" if path.name in rejected_names else trail
        target.mkdir(exist_ok=True)
        shutil.copy2(path, target / path.name)
    (trail / "load.json").write_text(
        json.dumps(
            {
                "counts": result.counts(),
                "fingerprints": result.fingerprints,
                "sources": labels,
                "rejected_files": [{"file": n, "sha256": h, "reason": r} for n, h, r in result.rejected_files],
            },
            indent=2,
        )
    )
    for _, _, reason in result.rejected_files:
        context.log.error(f"Kaggle file quarantined: {reason}")

    wh = warehouse.get_warehouse()
    wh.replace_table(RAW, KAGGLE_TRACKS.name, result.tracks)
    wh.replace_table(RAW, REJECTED_TABLE, result.rejected)
    wh.replace_table(RAW, FILES_REJECTED_TABLE, result.rejected_files_frame(stamp))
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
            "rejected_files": dg.MetadataValue.json({name: reason for name, _, reason in result.rejected_files}),
            "audit_trail": dg.MetadataValue.path(str(trail)),
            "data_source": dg.MetadataValue.text(source),
        }
    )
    yield completeness_result(completeness, allow_empty=not files)
    yield key_unique_result(wh, RAW, KAGGLE_TRACKS.name, KAGGLE_TRACKS.key)
    yield drop_folder_result([f for f in files if f.name not in rejected_names], kaggle.drop_dir)
    yield files_accepted_result(result.rejected_files, len(files))
    yield rows_kept_result(result)
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
