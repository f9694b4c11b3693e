"""Scrobbles the near-real-time sensor already fetched, handed to the load run on disk.

Free of Dagster. A poll asks each chosen listener for page 1 of their new scrobbles; when that
page holds the whole window (one page), the payload *is* the listener's new scrobbles and the load
run need not ask Last.fm again. The sensor lands those payloads, split by the UTC day of their
scrobbles, as one file per day and tick under ``<data_dir>/landing/lastfm_scrobbles/<day>/``
(written to a temporary name, flushed to disk, then renamed: a file is complete or absent), and
requests the day's run with ``landed_until`` = that file's name. The run
(``raw/lastfm_scrobbles``) parses every landed file of its day up to that name with the same
parser as a fetch, adds the scrobbles not stored yet to the day (the day-replace), writes the
payloads to the audit trail, and deletes the files once the day is written.

Why this loses and duplicates nothing, whatever process is killed when:

- the sensor killed after landing a file, before its cursor is stored: the next tick asks the
  same windows again and lands the same scrobbles in a newer file; a scrobble already stored is
  not added twice (the merge keys on the raw table's key);
- a run killed before its day is written: the files stay, and the next run of the day (any later
  ``landed_until``) loads them; killed after the day is written, before the files are deleted: the
  next run finds their scrobbles stored and adds nothing;
- a run request lost (a failed tick): its file waits for the day's next run, or the day's full load;
- the day's full load (the 01:00 schedule, a backfill) fetches every scrobble of the day, so the
  files landed before it started are settled by it and deleted.
"""

from __future__ import annotations

import gzip
import json
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd

from music_platform.sources.lastfm.parsing import ParseResult, parse_recent_tracks
from music_platform.sources.schemas import LASTFM_SCROBBLES

SUFFIX = ".json.gz"
FORMAT_VERSION = 1


def landing_dir(data_dir: str | Path) -> Path:
    """Where the sensor lands scrobbles for the load runs."""
    return Path(data_dir) / "landing" / "lastfm_scrobbles"


@dataclass
class LandedWindow:
    """One listener's whole window of new scrobbles, as Last.fm answered it (one page)."""

    user: str
    time_from: int
    time_to: int
    payload: Mapping[str, Any]


def _item_day(item: Any) -> date | None:
    """The UTC day of a payload item, or None when it has no readable time (now playing, broken)."""
    when = item.get("date") if isinstance(item, Mapping) else None
    try:
        uts = int(when.get("uts")) if isinstance(when, Mapping) else None
    except (TypeError, ValueError):
        return None
    if uts is None or uts <= 0:
        return None
    return pd.Timestamp(uts, unit="s", tz="UTC").date()


def split_by_day(window: LandedWindow, days: Sequence[date]) -> dict[date, LandedWindow]:
    """The window's payload cut into one payload per day of its items (``days``: the days the poll
    reported). An item without a readable time goes with the newest day, where the run quarantines
    it with the reason; the now-playing item goes nowhere (it is not data, and the next poll sees it
    as a scrobble once played)."""
    if not days:
        return {}
    root = window.payload.get("recenttracks") if isinstance(window.payload, Mapping) else None
    items = root.get("track") if isinstance(root, Mapping) else None
    if isinstance(items, Mapping):  # a single item, as Last.fm sends it
        items = [items]
    if not isinstance(items, list):
        items = []
    newest = max(days)
    per_day: dict[date, list] = {}
    for item in items:
        attr = item.get("@attr") if isinstance(item, Mapping) else None
        if isinstance(attr, Mapping) and str(attr.get("nowplaying", "")).lower() == "true":
            continue
        day = _item_day(item)
        per_day.setdefault(day if day in days else newest, []).append(item)
    out = {}
    for day, day_items in per_day.items():
        payload = {"recenttracks": {**root, "track": day_items}}
        out[day] = LandedWindow(window.user, window.time_from, window.time_to, payload)
    return out


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_landed(folder: Path, day: date, windows: Sequence[LandedWindow], *, written_at: int) -> str:
    """Land ``windows`` (all of ``day``) as one new file; its name (sortable by time) is returned.
    Durable before it is visible: temporary name, flushed and synced, then renamed."""
    day_dir = Path(folder) / day.isoformat()
    day_dir.mkdir(parents=True, exist_ok=True)
    name = f"{time.time_ns():020d}{SUFFIX}"
    body = {
        "v": FORMAT_VERSION,
        "day": day.isoformat(),
        "written_at": written_at,
        "windows": [{"user": w.user, "from": w.time_from, "to": w.time_to, "payload": w.payload} for w in windows],
    }
    temporary = day_dir / f".{name}.tmp"
    with temporary.open("wb") as handle:
        handle.write(gzip.compress(json.dumps(body, separators=(",", ":")).encode("utf-8"), compresslevel=1))
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, day_dir / name)
    _fsync_dir(day_dir)
    return name


def landed_files(folder: Path, day: date, *, until: str | None = None, before_ns: int | None = None) -> list[Path]:
    """The complete landed files of ``day``, oldest first: up to ``until`` (a name) or written
    before ``before_ns`` (``time.time_ns()``) when given."""
    day_dir = Path(folder) / day.isoformat()
    if not day_dir.is_dir():
        return []
    names = sorted(p.name for p in day_dir.iterdir() if p.name.endswith(SUFFIX) and not p.name.startswith("."))
    if until is not None:
        names = [n for n in names if n <= until]
    if before_ns is not None:
        names = [n for n in names if int(n[: -len(SUFFIX)]) < before_ns]
    return [day_dir / n for n in names]


@dataclass
class LandedLoad:
    """What the landed files of a day hold, parsed: every item a row, a reject or the now-playing
    item, as for a fetch."""

    day: date
    files: list[Path] = field(default_factory=list)
    result: ParseResult = field(default_factory=lambda: ParseResult(LASTFM_SCROBBLES))
    windows: list[LandedWindow] = field(default_factory=list)
    users: set[str] = field(default_factory=set)


def read_landed(files: Iterable[Path], day: date) -> LandedLoad:
    """Parse the windows of ``files`` (rows outside ``day`` are an error: the sensor splits by day).
    An unreadable file raises: it was renamed into place complete, so damage is not a crash's."""
    load = LandedLoad(day=day)
    for path in files:
        try:
            body = json.loads(gzip.decompress(Path(path).read_bytes()))
        except (OSError, EOFError, ValueError) as exc:
            raise ValueError(
                f"landed scrobbles file {path} is unreadable ({exc}); delete it and load the day"
            ) from None
        if body.get("v") != FORMAT_VERSION or body.get("day") != day.isoformat():
            raise ValueError(f"landed scrobbles file {path} is not version {FORMAT_VERSION} of day {day}")
        for w in body["windows"]:
            window = LandedWindow(str(w["user"]), int(w["from"]), int(w["to"]), w["payload"])
            parsed = parse_recent_tracks(window.payload, window.user, window=(window.time_from, window.time_to))
            wrong = [r for r in parsed.rows if r["scrobble_date"] != day]
            if wrong:
                raise ValueError(f"landed scrobbles file {path} holds scrobbles of {wrong[0]['scrobble_date']}")
            load.result.extend(parsed)
            load.windows.append(window)
            load.users.add(window.user)
        load.files.append(Path(path))
    return load


def delete_landed(files: Iterable[Path]) -> int:
    """Delete files a written day holds now (already gone is fine: a re-run); how many were deleted."""
    deleted = 0
    for path in files:
        try:
            Path(path).unlink()
            deleted += 1
        except FileNotFoundError:
            continue
    return deleted


def add_new_rows(stored: pd.DataFrame | None, landed: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """The day as it should be stored: ``stored`` and the ``landed`` rows whose key is not stored
    yet (a landed scrobble already stored, by an earlier run of the same file or by a fetch, is
    not added again); and how many landed rows were already stored."""
    key = list(LASTFM_SCROBBLES.key)
    if stored is None or stored.empty:
        return landed.reset_index(drop=True), 0
    if landed.empty:
        return stored.loc[:, list(landed.columns)].astype(landed.dtypes.to_dict()).reset_index(drop=True), 0
    missing = [c for c in landed.columns if c not in stored.columns]
    if missing:
        raise ValueError(f"the stored day lacks the columns {missing}: load the day in full (no users in the config)")
    stored = stored.loc[:, list(landed.columns)].astype(landed.dtypes.to_dict())
    known = pd.MultiIndex.from_frame(stored[key])
    is_new = ~pd.MultiIndex.from_frame(landed[key]).isin(known)
    new = landed.loc[is_new]
    return pd.concat([stored, new], ignore_index=True), int((~is_new).sum())
