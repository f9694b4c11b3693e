"""Publishing a model version to the service: an immutable snapshot and one pointer switched last.

A **publication** is everything the service shows for one model version at one time, under one
``publication_id``:

- ``ml.user_recommendations`` rows with that ``publication_id`` (written by the recommendations
  step; a published id is never written again: a refresh makes a new publication);
- ``ml.similar_tracks`` rows of its ``model_version`` (a function of the model alone);
- ``ml.published_tracks`` / ``ml.published_artists``: the display fields (names, genres,
  listen counts) copied from the marts when the publication is made, so later changes to the
  marts never reach what is being served.

The pointer is ``ml.model_registry``: the live publication is the ``publication_id`` of the
latest published version (``LIVE_PUBLICATION_SQL`` in ``serving/published.py``). ``publish`` writes the snapshot and
checks it, records the version as published in the on-disk registry, then replaces the registry
table in one atomic statement: that is the moment the new version goes live. A crash before it
leaves the previous publication live and the new rows unreferenced (they are removed by a later
publication); the service loads only what the pointer names.

Rolling back retires the live version; the previous published version is live again with the
publication it had (its rows are kept while it is published).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pandas as pd

from music_platform.serving.published import (
    ARTIST_DISPLAY_COLUMNS,
    ARTISTS_TABLE,
    LIVE_PUBLICATION_SQL,
    PUBLICATION_COLUMN,
    RECOMMENDATIONS_TABLE,
    REGISTRY_TABLE,
    SIMILAR_TABLE,
    TRACK_DISPLAY_COLUMNS,
    TRACKS_TABLE,
    Publication,
)
from music_platform.warehouse.base import Warehouse

if TYPE_CHECKING:  # the service imports this module: keep it free of the model code
    from music_platform.recommender.registry import ModelRegistry, ModelVersion

ML = "ml"
MARTS = "marts"
# A publication may name at most this share of its served tracks without a track name.
MIN_NAMED_SHARE = 0.95


class PublicationError(RuntimeError):
    """A publication cannot be made (the message says what is missing)."""


def new_publication_id(at: datetime | None = None) -> str:
    """A fresh, time-sortable id (only letters, digits, ``T`` and ``-``)."""
    moment = at or datetime.now(UTC)
    return f"{moment:%Y%m%dT%H%M%S%f}-{uuid.uuid4().hex[:8]}"


def sql_text(value: str) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def columns_of(warehouse: Warehouse, schema: str, table: str) -> list[str]:
    if not warehouse.table_exists(schema, table):
        return []
    return list(warehouse.query_df(f"select * from {warehouse.qualified(schema, table)} where 1 = 0").columns)


def ensure_publication_column(warehouse: Warehouse, table: str) -> None:
    """Tables written before publications existed get the column (their rows are never served)."""
    columns = columns_of(warehouse, ML, table)
    if columns and PUBLICATION_COLUMN not in columns:
        warehouse.execute(f"alter table {warehouse.qualified(ML, table)} add column {PUBLICATION_COLUMN} varchar")


def live_publication(warehouse: Warehouse) -> Publication | None:
    """The publication the service serves, or None when nothing is published yet."""
    if PUBLICATION_COLUMN not in columns_of(warehouse, ML, REGISTRY_TABLE):
        return None
    frame = warehouse.query_df(LIVE_PUBLICATION_SQL)
    if frame.empty:
        return None
    return Publication(str(frame["model_version"].iloc[0]), str(frame["publication_id"].iloc[0]))


def _count(warehouse: Warehouse, table: str, where: str) -> int:
    if not warehouse.table_exists(ML, table):
        return 0
    return int(
        warehouse.query_df(f"select count(*) as n from {warehouse.qualified(ML, table)} where {where}")["n"].iloc[0]
    )


def publication_row_counts(warehouse: Warehouse, publication: Publication) -> dict[str, int]:
    """Rows of each table that make up ``publication`` (what the service serves when it is live)."""
    pid = f"{PUBLICATION_COLUMN} = {sql_text(publication.publication_id)}"
    return {
        RECOMMENDATIONS_TABLE: _count(warehouse, RECOMMENDATIONS_TABLE, pid),
        SIMILAR_TABLE: _count(warehouse, SIMILAR_TABLE, f"model_version = {sql_text(publication.model_version)}"),
        TRACKS_TABLE: _count(warehouse, TRACKS_TABLE, pid),
        ARTISTS_TABLE: _count(warehouse, ARTISTS_TABLE, pid),
    }


def write_display_snapshot(warehouse: Warehouse, publication_id: str) -> tuple[int, int]:
    """Copy the display fields of every track and artist from the marts under ``publication_id``.

    Written once per publication: a publication that already has them keeps them (so that a
    repeated publication step never changes a live snapshot). Returns (tracks, artists).
    """
    where = f"{PUBLICATION_COLUMN} = {sql_text(publication_id)}"
    existing = _count(warehouse, TRACKS_TABLE, where), _count(warehouse, ARTISTS_TABLE, where)
    if existing[0]:
        return existing
    for mart, table, columns in (
        ("dim_tracks", TRACKS_TABLE, TRACK_DISPLAY_COLUMNS),
        ("dim_artists", ARTISTS_TABLE, ARTIST_DISPLAY_COLUMNS),
    ):
        if not warehouse.table_exists(MARTS, mart):
            raise PublicationError(f"marts.{mart} does not exist: build the marts before publishing")
        frame = warehouse.query_df(
            f"select {', '.join(columns)} from {warehouse.qualified(MARTS, mart)} where {columns[0]} is not null"
        )
        frame = frame.drop_duplicates(columns[0], keep="first")
        for column in columns:
            if column != "listen_count":
                frame[column] = frame[column].astype("string")
        if "listen_count" in frame:
            frame["listen_count"] = pd.to_numeric(frame["listen_count"], errors="coerce").fillna(0).astype("int64")
        frame.insert(0, PUBLICATION_COLUMN, publication_id)
        warehouse.replace_partition(ML, table, frame, PUBLICATION_COLUMN, [publication_id])
    return _count(warehouse, TRACKS_TABLE, where), _count(warehouse, ARTISTS_TABLE, where)


@dataclass(frozen=True)
class PublicationCheck:
    """What a publication holds, and whether it may go live."""

    recommendations: int
    similar_pairs: int
    display_tracks: int
    served_tracks: int  # distinct tracks the recommendations and similar tracks name
    missing_display: int  # of those, tracks without a display row
    unnamed: int  # of those, tracks whose display row has no track name

    @property
    def named_share(self) -> float:
        return 1 - self.unnamed / self.served_tracks if self.served_tracks else 0.0

    @property
    def problems(self) -> list[str]:
        found = []
        if not self.recommendations:
            found.append("no recommendation rows")
        if not self.similar_pairs:
            found.append("no similar-track rows")
        if self.missing_display:
            found.append(f"{self.missing_display} served track(s) missing from the display snapshot")
        if self.served_tracks and self.named_share < MIN_NAMED_SHARE:
            found.append(
                f"{self.unnamed} of {self.served_tracks} served tracks have no track name "
                f"({self.named_share:.1%} named, {MIN_NAMED_SHARE:.0%} required)"
            )
        return found

    @property
    def passed(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, int]:
        return {
            "recommendations": self.recommendations,
            "similar_pairs": self.similar_pairs,
            "display_tracks": self.display_tracks,
            "served_tracks": self.served_tracks,
            "missing_display": self.missing_display,
            "unnamed": self.unnamed,
        }


def check_publication(warehouse: Warehouse, publication: Publication) -> PublicationCheck:
    pid = sql_text(publication.publication_id)
    version = sql_text(publication.model_version)
    recs = _count(warehouse, RECOMMENDATIONS_TABLE, f"{PUBLICATION_COLUMN} = {pid}")
    similar = _count(warehouse, SIMILAR_TABLE, f"model_version = {version}")
    display = _count(warehouse, TRACKS_TABLE, f"{PUBLICATION_COLUMN} = {pid}")
    if not (recs and display):
        return PublicationCheck(recs, similar, display, 0, 0, 0)
    similar_ids = (
        f"union select track_id from {warehouse.qualified(ML, SIMILAR_TABLE)} where model_version = {version} "
        f"union select similar_track_id from {warehouse.qualified(ML, SIMILAR_TABLE)} where model_version = {version}"
        if similar
        else ""
    )
    frame = warehouse.query_df(
        f"""
        with served as (
            select track_id from {warehouse.qualified(ML, RECOMMENDATIONS_TABLE)} where {PUBLICATION_COLUMN} = {pid}
            {similar_ids}
        ),
        display as (
            select track_id, track_name from {warehouse.qualified(ML, TRACKS_TABLE)} where {PUBLICATION_COLUMN} = {pid}
        )
        select count(*) as served,
               sum(case when d.track_id is null then 1 else 0 end) as missing,
               sum(case when d.track_id is not null and (d.track_name is null or trim(d.track_name) = '')
                        then 1 else 0 end) as unnamed
        from served s left join display d on s.track_id = d.track_id
        """
    )
    row = frame.iloc[0]
    return PublicationCheck(
        recs, similar, display, int(row["served"] or 0), int(row["missing"] or 0), int(row["unnamed"] or 0)
    )


def sync_registry_table(warehouse: Warehouse, registry: ModelRegistry, live: Publication | None = None) -> pd.DataFrame:
    """Replace ml.model_registry with the registry's versions (the service polls this table).

    Each version keeps the publication it had; ``live`` sets that of its version. One atomic
    ``replace_table``: when ``live`` is given, this is the moment it goes live.
    """
    table = pd.DataFrame([v.registry_row() for v in registry.list_versions()])
    for column in ("created_at", "published_at"):
        if column in table.columns:
            table[column] = pd.to_datetime(table[column], utc=True).dt.tz_localize(None)
    previous: dict[str, str] = {}
    if PUBLICATION_COLUMN in columns_of(warehouse, ML, REGISTRY_TABLE):
        rows = warehouse.query_df(
            f"select cast(model_version as varchar) as model_version, cast({PUBLICATION_COLUMN} as varchar) as pid "
            f"from {warehouse.qualified(ML, REGISTRY_TABLE)} where {PUBLICATION_COLUMN} is not null"
        )
        previous = dict(zip(rows["model_version"], rows["pid"], strict=True))
    if live is not None:
        previous[live.model_version] = live.publication_id
    versions = table["model_version"] if "model_version" in table else pd.Series(dtype=object)
    table[PUBLICATION_COLUMN] = pd.Series([previous.get(v) for v in versions], index=table.index, dtype="string")
    warehouse.replace_table(ML, REGISTRY_TABLE, table)
    return table


def publish(warehouse: Warehouse, registry: ModelRegistry, publication: Publication) -> pd.DataFrame:
    """Make ``publication`` live (it must have passed :func:`check_publication`); returns the registry table.

    Order: the version is marked published on disk, then the registry table names the
    publication in one atomic write (the switch), then rows no publication needs are removed.
    """
    version = registry.get(publication.model_version)
    if version.status == "rejected":
        raise PublicationError(f"model {version.version} was rejected by the gate: it cannot be published")
    previous = live_publication(warehouse)
    if version.status != "published":
        registry.publish(version.version)
    table = sync_registry_table(warehouse, registry, live=publication)
    # The publication live until now is kept too: a service may be loading it at this moment.
    remove_unreferenced(warehouse, registry, publication, also_keep=previous)
    return table


def remove_unreferenced(
    warehouse: Warehouse, registry: ModelRegistry, live: Publication, also_keep: Publication | None = None
) -> None:
    """Delete the rows of publications nothing can serve any more: neither live nor a rollback
    target (a published version's publication). Only rows older than ``live`` are removed, so a
    run writing a newer publication meanwhile keeps its rows."""
    kept = warehouse.query_df(
        f"select distinct cast({PUBLICATION_COLUMN} as varchar) as pid from {warehouse.qualified(ML, REGISTRY_TABLE)} "
        f"where lower(status) = 'published' and {PUBLICATION_COLUMN} is not null"
    )["pid"].tolist()
    kept = set(kept) | {live.publication_id} | ({also_keep.publication_id} if also_keep else set())
    keep = ", ".join(sql_text(p) for p in sorted(kept))
    doomed = (
        f"{PUBLICATION_COLUMN} is null or "
        f"({PUBLICATION_COLUMN} < {sql_text(live.publication_id)} and {PUBLICATION_COLUMN} not in ({keep}))"
    )
    for table in (RECOMMENDATIONS_TABLE, TRACKS_TABLE, ARTISTS_TABLE):
        if PUBLICATION_COLUMN in columns_of(warehouse, ML, table):
            warehouse.execute(f"delete from {warehouse.qualified(ML, table)} where {doomed}")

    # Similar tracks belong to a model version: kept for published versions and for versions
    # at least as new as the live one (a newer candidate may be about to be published).
    if not warehouse.table_exists(ML, SIMILAR_TABLE):
        return
    versions = {v.version: v for v in registry.list_versions()}
    live_created = versions[live.model_version].created_at if live.model_version in versions else None
    stored = warehouse.query_df(
        f"select distinct cast(model_version as varchar) as model_version from {warehouse.qualified(ML, SIMILAR_TABLE)}"
    )["model_version"].tolist()
    spared = {live.model_version} | ({also_keep.model_version} if also_keep else set())
    doomed = [
        v
        for v in stored
        if v is not None and v not in spared and _similar_removable(versions.get(v), live, live_created)
    ]
    if doomed:
        listed = ", ".join(sql_text(v) for v in doomed)
        warehouse.execute(f"delete from {warehouse.qualified(ML, SIMILAR_TABLE)} where model_version in ({listed})")


def _similar_removable(version: ModelVersion | None, live: Publication, live_created: datetime | None) -> bool:
    if version is None:
        return True  # no longer in the registry: it can never be published
    if version.version == live.model_version or version.status == "published":
        return False
    return live_created is not None and version.created_at < live_created


def rollback(warehouse: Warehouse, registry: ModelRegistry) -> tuple[ModelVersion, ModelVersion]:
    """Retire the live version; returns (retired, now live). The service switches on its next poll."""
    live = registry.latest_published()
    previous = registry.rollback()
    sync_registry_table(warehouse, registry)
    return live, previous
