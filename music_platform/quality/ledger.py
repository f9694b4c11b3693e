"""Ledgers: where every row went, layer by layer, and whether anything went missing.

A layer passes on a partition when what it received equals what it kept plus what it set
aside with a reason (duplicates included), and it kept at least ``DEFAULT_THRESHOLD`` of what it
received. The counts come from tables the pipeline writes (``audit.listen_ledger`` per listening
day, ``audit.source_ledger`` per reference source, ``audit.listens_set_aside`` with reasons) and
from the ingestion's own counts; this module only reads and judges them, free of Dagster, so the
asset checks, the demo summary and the tests share one rule.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date

from music_platform.quality.completeness import DEFAULT_THRESHOLD

AUDIT = "audit"
LISTEN_LEDGER = "listen_ledger"
LISTENS_SET_ASIDE = "listens_set_aside"
SOURCE_LEDGER = "source_ledger"
DUPLICATE = "duplicate"
# Rows of an older fetch that a newer one replaces as a whole (the chart): never data to keep.
SUPERSEDED = "superseded_by_a_newer_fetch"


@dataclass(frozen=True)
class Ledger:
    """One layer's account of one partition (a day, a source table, or a whole run).

    ``received`` is what the layer got from upstream, ``kept`` what it passed on, ``set_aside``
    what it held back, by reason (duplicates under ``"duplicate"``); ``lost`` is what no reason
    accounts for and must be 0.
    """

    label: str
    received: int
    kept: int
    set_aside: Mapping[str, int] = field(default_factory=dict)

    @property
    def set_aside_total(self) -> int:
        return sum(self.set_aside.values())

    @property
    def lost(self) -> int:
        return self.received - self.kept - self.set_aside_total

    @property
    def kept_share(self) -> float | None:
        return self.kept / self.received if self.received else None

    @property
    def accounted_share(self) -> float | None:
        return (self.kept + self.set_aside_total) / self.received if self.received else None

    def passes(self, threshold: float = DEFAULT_THRESHOLD, not_data: tuple[str, ...] = ()) -> bool:
        """Nothing lost, nothing invented, and at least ``threshold`` kept (an empty partition passes).

        Rows set aside for a reason in ``not_data`` (an API's now-playing item, an exact repeat
        of a row) were never data to keep: they are accounted for but left out of the share.
        """
        if self.received == 0:
            return self.kept == 0 and self.set_aside_total == 0
        candidates = self.received - sum(self.set_aside.get(reason, 0) for reason in not_data)
        return self.lost == 0 and (candidates <= 0 or self.kept / candidates >= threshold)

    def describe(self) -> str:
        parts = [f"{self.label}: received {self.received:,} = kept {self.kept:,}"]
        parts += [f"+ {reason} {count:,}" for reason, count in sorted(self.set_aside.items()) if count]
        line = " ".join(parts)
        if self.lost:
            line += f"; {self.lost:,} UNACCOUNTED" if self.lost > 0 else f"; {-self.lost:,} more kept than received"
        if self.received:
            line += f" (kept {self.kept / self.received:.2%}, accounted {self.accounted_share:.2%})"
        return line


@dataclass(frozen=True)
class LedgerVerdict:
    ledgers: Sequence[Ledger]
    threshold: float = DEFAULT_THRESHOLD
    not_data: tuple[str, ...] = ()  # reasons left out of the kept share (see ``Ledger.passes``)

    @property
    def failing(self) -> list[Ledger]:
        return [ledger for ledger in self.ledgers if not ledger.passes(self.threshold, self.not_data)]

    @property
    def passed(self) -> bool:
        return not self.failing

    def total(self, label: str = "total") -> Ledger:
        reasons: dict[str, int] = {}
        for ledger in self.ledgers:
            for reason, count in ledger.set_aside.items():
                reasons[reason] = reasons.get(reason, 0) + count
        return Ledger(
            label,
            sum(ledger.received for ledger in self.ledgers),
            sum(ledger.kept for ledger in self.ledgers),
            reasons,
        )

    def describe(self) -> str:
        if not self.ledgers:
            return "nothing received"
        summary = self.total().describe()
        if self.failing:
            summary += "; failing: " + "; ".join(ledger.describe() for ledger in self.failing[:5])
            if len(self.failing) > 5:
                summary += f"; and {len(self.failing) - 5} more"
        return summary


def _lower(frame):
    frame.columns = [str(c).lower() for c in frame.columns]
    return frame


def _days_filter(column: str, first_day: date | None, last_day: date | None) -> str:
    if first_day is None or last_day is None:
        return ""
    return f" where {column} between cast('{first_day.isoformat()}' as date) and cast('{last_day.isoformat()}' as date)"


@dataclass(frozen=True)
class ListenLedgers:
    """The scrobbles' ledgers per listening day, layer by layer."""

    staging: list[Ledger]  # raw -> staging: received = staged + duplicates
    mart: list[Ledger]  # staging -> marts.fct_listens: staged = kept + set aside by reason
    end_to_end: list[Ledger]  # raw -> marts.fct_listens: received = kept + duplicates + set aside

    def verdicts(self, threshold: float = DEFAULT_THRESHOLD) -> dict[str, LedgerVerdict]:
        return {
            "raw -> staging": LedgerVerdict(self.staging, threshold),
            "staging -> marts.fct_listens": LedgerVerdict(self.mart, threshold),
            "raw -> marts.fct_listens": LedgerVerdict(self.end_to_end, threshold),
        }


def listen_ledgers(warehouse, first_day: date | None = None, last_day: date | None = None) -> ListenLedgers:
    """Per listening day, the ledgers of the scrobbles from raw to marts.fct_listens.

    Read from ``audit.listen_ledger`` (counts) and ``audit.listens_set_aside`` (reasons); all
    days when no range is given.
    """
    ledger = _lower(
        warehouse.query_df(
            "select listen_date, received_rows, duplicate_rows, staged_rows, kept_rows "
            f"from {warehouse.qualified(AUDIT, LISTEN_LEDGER)}{_days_filter('listen_date', first_day, last_day)} "
            "order by listen_date"
        )
    )
    reasons = _lower(
        warehouse.query_df(
            "select listen_date, reason, count(*) as set_aside_rows "
            f"from {warehouse.qualified(AUDIT, LISTENS_SET_ASIDE)}{_days_filter('listen_date', first_day, last_day)} "
            "group by listen_date, reason"
        )
    )
    by_day: dict[str, dict[str, int]] = {}
    for row in reasons.itertuples(index=False):
        by_day.setdefault(_day_label(row.listen_date), {})[str(row.reason)] = int(row.set_aside_rows)
    staging, mart, end_to_end = [], [], []
    for row in ledger.itertuples(index=False):
        day = _day_label(row.listen_date)
        duplicates = {DUPLICATE: int(row.duplicate_rows)}
        staging.append(Ledger(day, int(row.received_rows), int(row.staged_rows), duplicates))
        reasons_of_day = by_day.get(day, {})  # the set-aside rows themselves, counted by reason
        mart.append(Ledger(day, int(row.staged_rows), int(row.kept_rows), reasons_of_day))
        end_to_end.append(Ledger(day, int(row.received_rows), int(row.kept_rows), {**duplicates, **reasons_of_day}))
    return ListenLedgers(staging, mart, end_to_end)


def source_ledgers(warehouse) -> list[Ledger]:
    """Per reference source table (tags, charts, profiles, Kaggle, Spotify): raw -> staging."""
    frame = _lower(
        warehouse.query_df(
            "select source_table, received_rows, missing_required_rows, superseded_rows, duplicate_rows, staged_rows "
            f"from {warehouse.qualified(AUDIT, SOURCE_LEDGER)} order by source_table"
        )
    )
    return [
        Ledger(
            str(row.source_table),
            int(row.received_rows),
            int(row.staged_rows),
            {
                "missing_required_field": int(row.missing_required_rows),
                SUPERSEDED: int(row.superseded_rows),
                DUPLICATE: int(row.duplicate_rows),
            },
        )
        for row in frame.itertuples(index=False)
    ]


def layer_totals(warehouse) -> list[Ledger]:
    """One ledger per layer over everything loaded: the scrobbles from raw to the mart, then
    each reference source into staging (what the demo prints and the docs show)."""
    totals: list[Ledger] = []
    if warehouse.table_exists(AUDIT, LISTEN_LEDGER) and warehouse.table_exists(AUDIT, LISTENS_SET_ASIDE):
        for layer, verdict in listen_ledgers(warehouse).verdicts().items():
            totals.append(verdict.total(f"scrobbles {layer}"))
    if warehouse.table_exists(AUDIT, SOURCE_LEDGER):
        totals.extend(source_ledgers(warehouse))
    return totals


def _day_label(value) -> str:
    if value is None or value != value:  # NaT / NaN: rows without a listening day
        return "no listen_date"
    return str(value)[:10]
