"""Blocking ledger checks: every row a layer received is kept or set aside with a reason.

- ``listens_accounted_for`` on ``marts/fct_listens``, per daily partition: raw scrobbles =
  staging + duplicates; staging = the mart + rows set aside by reason (``audit.listens_set_aside``);
  the mart keeps at least 95% of what raw received. The dbt test of the same name on
  ``audit.listen_ledger`` already stops ``user_track_interactions`` inside the dbt build; this
  check stops everything downstream in Dagster and shows the ledger per partition.
- ``sources_accounted_for`` on ``audit/source_ledger``: the same for every reference source
  (artist tags, tag and chart top tracks, profiles, the Kaggle file, Spotify).
"""

from datetime import timedelta
from functools import cache

import dagster as dg

from music_platform.config import Settings, definitions_settings
from music_platform.partitions import daily_partitions
from music_platform.quality.completeness import DEFAULT_THRESHOLD
from music_platform.quality.ledger import SUPERSEDED, LedgerVerdict, listen_ledgers, source_ledgers
from music_platform.resources import WarehouseResource

FCT_LISTENS = dg.AssetKey(["marts", "fct_listens"])
SOURCE_LEDGER = dg.AssetKey(["audit", "source_ledger"])


def _verdict_metadata(verdicts: dict[str, LedgerVerdict]) -> dict[str, object]:
    metadata: dict[str, object] = {}
    for layer, verdict in verdicts.items():
        total = verdict.total(layer)
        metadata[f"{layer}: received"] = dg.MetadataValue.int(total.received)
        metadata[f"{layer}: kept"] = dg.MetadataValue.int(total.kept)
        metadata[f"{layer}: set aside"] = dg.MetadataValue.json(dict(sorted(total.set_aside.items())))
        metadata[f"{layer}: unaccounted"] = dg.MetadataValue.int(total.lost)
    return metadata


def _partition_table(verdict: LedgerVerdict) -> dg.MetadataValue:
    """One row per partition: received, kept and set aside by reason."""
    reasons = sorted({reason for ledger in verdict.ledgers for reason in ledger.set_aside})
    columns = [
        dg.TableColumn("partition", "string"),
        dg.TableColumn("received", "int"),
        dg.TableColumn("kept", "int"),
        *(dg.TableColumn(reason, "int") for reason in reasons),
        dg.TableColumn("unaccounted", "int"),
        dg.TableColumn("kept_share", "float"),
    ]
    records = [
        dg.TableRecord(
            {
                "partition": ledger.label,
                "received": ledger.received,
                "kept": ledger.kept,
                **{reason: int(ledger.set_aside.get(reason, 0)) for reason in reasons},
                "unaccounted": ledger.lost,
                "kept_share": round(ledger.kept_share, 6) if ledger.kept_share is not None else 0.0,
            }
        )
        for ledger in verdict.ledgers
    ]
    return dg.MetadataValue.table(records, schema=dg.TableSchema(columns=columns))


def listens_accounted_for_check(settings: Settings) -> dg.AssetChecksDefinition:
    """The per-partition ledger check on ``marts/fct_listens``, partitioned as ``settings`` say."""
    return _listens_accounted_for(daily_partitions(settings))


@cache
def _listens_accounted_for(partitions: dg.PartitionsDefinition) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=FCT_LISTENS,
        name="listens_accounted_for",
        blocking=True,
        partitions_def=partitions,
        description=f"Every scrobble raw received for the day is in marts.fct_listens exactly once, or set aside with "
        f"a reason (audit.listens_set_aside) or removed as a duplicate by staging; nothing is missing without a "
        f"reason, and the mart keeps at least {DEFAULT_THRESHOLD:.0%} of what raw received. Blocking.",
    )
    def listens_accounted_for(
        context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource
    ) -> dg.AssetCheckResult:
        window = context.partition_time_window
        first_day, last_day = window.start.date(), (window.end - timedelta(days=1)).date()
        ledgers = listen_ledgers(warehouse.get_warehouse(), first_day, last_day)
        verdicts = ledgers.verdicts()
        passed = all(v.passed for v in verdicts.values())
        end_to_end = verdicts["raw -> marts.fct_listens"]
        failing = [f"{layer}: {v.describe()}" for layer, v in verdicts.items() if not v.passed]
        return dg.AssetCheckResult(
            passed=passed,
            severity=dg.AssetCheckSeverity.ERROR,
            metadata={
                "days": dg.MetadataValue.text(f"{first_day} .. {last_day}"),
                "threshold": dg.MetadataValue.float(DEFAULT_THRESHOLD),
                "kept_share": dg.MetadataValue.float(round(end_to_end.total().kept_share or 0.0, 6)),
                "accounted_share": dg.MetadataValue.float(round(end_to_end.total().accounted_share or 1.0, 6)),
                **_verdict_metadata(verdicts),
                "ledger_per_partition": _partition_table(end_to_end),
            },
            description=end_to_end.describe() if passed else "; ".join(failing),
        )

    return listens_accounted_for


@dg.definitions
def defs() -> dg.Definitions:
    # A module with a @dg.definitions function is loaded through it alone: every check is listed.
    return dg.Definitions(asset_checks=[listens_accounted_for_check(definitions_settings()), sources_accounted_for])


@dg.asset_check(
    asset=SOURCE_LEDGER,
    name="sources_accounted_for",
    blocking=True,
    description="For every reference source (artist tags, tag and chart top tracks, profiles, the Kaggle file, "
    "Spotify): the raw rows are the staged rows plus the duplicates staging removed plus the rows of an older "
    "chart superseded by the latest plus the rows set aside for a missing required field; staging keeps at least "
    f"{DEFAULT_THRESHOLD:.0%} of each (superseded rows were never data to keep). Blocking.",
)
def sources_accounted_for(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    verdict = LedgerVerdict(source_ledgers(warehouse.get_warehouse()), not_data=(SUPERSEDED,))
    return dg.AssetCheckResult(
        passed=verdict.passed,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={**_verdict_metadata({"raw -> staging": verdict}), "ledger_per_source": _partition_table(verdict)},
        description=verdict.describe(),
    )
