"""Recent listens in the service (issue 19): a just-played track is never recommended back.

The published recommendations exclude what each listener had heard when they were generated;
listens since then reach the service through the warehouse, from ``marts.recent_listens`` (a
dbt model built for this: each listener's tracks of the last days, most recent first, bounded
per user), never from raw data. A background task re-reads it every
``MUSIC_PLATFORM_RECENT_LISTENS_SECONDS`` (default 10 s) and builds, off the request path, an
overlay: for every listener with recent listens, their answer items with

- every recently played track removed, and
- the recommendations the model finds similar to their newest listens (the published
  ``ml.similar_tracks`` of up to ``SEEDS`` most recent plays) moved to the front with the
  reason "because you just played …"; a listener without published recommendations (the
  popularity fallback) gets those similar tracks first. No retraining: only the published
  model's item similarities are used.

Requests read the overlay with one dictionary lookup; users without recent listens keep the
snapshot's fast path. An overlay built for an older snapshot (a new publication was loaded
since) is not trusted: that user's answer is computed from the current snapshot until the next
refresh. A refresh that fails (the warehouse busy, the relation missing) keeps the previous
overlay and is reported in /health.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

import orjson
import pandas as pd

from music_platform.serving.limits import MAX_K
from music_platform.serving.snapshot import _ITEM, _USER_HEAD, POPULAR_REASON, Snapshot
from music_platform.warehouse import Warehouse

log = logging.getLogger(__name__)

RELATION = ("marts", "recent_listens")
#: The newest listens an answer leans on ("because you just played ...").
SEEDS = 3
#: At most this many rows are read per refresh (the model bounds each user to 500 tracks); a
#: larger relation is cut, most recent plays first, and the cut is reported.
MAX_ROWS = 2_000_000
DEFAULT_REFRESH_SECONDS = 10.0

_SQL = (
    "select cast(user_id as varchar) as user_id, cast(track_id as varchar) as track_id, "
    "cast(recency_rank as bigint) as recency_rank, last_played_at "
    "from marts.recent_listens where user_id is not null and track_id is not null "
    "order by recency_rank, user_id limit {limit}"
)


def just_played_reason(label: str) -> bytes:
    return orjson.dumps(f"because you just played {label}")


@dataclass(frozen=True, eq=False)
class RecentListens:
    """Each listener's recently played track ids, most recent first."""

    by_user: dict[str, tuple[str, ...]]
    rows: int
    newest_played_at: datetime | None
    truncated: bool = False

    def same_as(self, other: RecentListens) -> bool:
        """The same listens (and the same figures for /health)."""
        return (self.rows, self.newest_played_at, self.truncated, self.by_user) == (
            other.rows,
            other.newest_played_at,
            other.truncated,
            other.by_user,
        )


def load_recent_listens(warehouse: Warehouse, max_rows: int = MAX_ROWS) -> RecentListens | None:
    """Read ``marts.recent_listens`` (the warehouse's streamed read-only read); None while it does
    not exist (the pipeline has not built it)."""
    if not warehouse.table_exists(*RELATION):
        return None
    frame = warehouse.read_arrow(_SQL.format(limit=int(max_rows) + 1)).to_pandas()
    truncated = len(frame) > max_rows
    if truncated:
        frame = frame.iloc[:max_rows]
    frame = frame.sort_values(["user_id", "recency_rank"], kind="stable")
    by_user: dict[str, tuple[str, ...]] = {}
    for user, tracks in frame.groupby("user_id", sort=False)["track_id"]:
        by_user[str(user)] = tuple(str(t) for t in tracks)
    newest = None
    if len(frame):
        value = pd.to_datetime(frame["last_played_at"]).max()
        newest = None if pd.isna(value) else value.to_pydatetime()
    return RecentListens(by_user, len(frame), newest, truncated)


def user_items(snapshot: Snapshot, user_id: str, played: tuple[str, ...]) -> tuple[list[bytes], bool]:
    """The answer items of ``user_id`` given its recent plays (most recent first), ranked from 1,
    at most ``MAX_K``, and whether the answer is the popularity fallback."""
    cat = snapshot.catalogue
    played_set = set(played)
    played_idx = {cat.track_index[t] for t in played if t in cat.track_index}
    user = snapshot.user_index.get(user_id)
    fallback = user is None
    # (track index, score, reason json) of the published answer, in its order
    if user is None:
        popular_reason = orjson.dumps(POPULAR_REASON)
        base = [(t, float(cat.track_popularity[t]), popular_reason) for t in cat.popular.tolist()]
    else:
        start, end = int(snapshot.user_offsets[user]), int(snapshot.user_offsets[user + 1])
        reasons = snapshot.reason_json
        base = [
            (t, float(s), reasons[r])
            for t, s, r in zip(
                snapshot.rec_tracks[start:end].tolist(),
                snapshot.rec_scores[start:end].tolist(),
                snapshot.rec_reasons[start:end].tolist(),
                strict=True,
            )
        ]
    base = [item for item in base if item[0] not in played_idx]
    in_base = {item[0]: item for item in base}
    leaned: list[tuple[int, float, bytes]] = []
    taken: set[int] = set()
    seeds = [cat.track_index[t] for t in played if t in cat.track_index][:SEEDS]
    for seed in seeds:
        s_start, s_end = int(snapshot.similar_offsets[seed]), int(snapshot.similar_offsets[seed + 1])
        if s_end <= s_start:
            continue  # the model has no neighbours for it
        reason = just_played_reason(cat.track_label(seed))
        neighbours = snapshot.similar_tracks[s_start:s_end].tolist()
        for neighbour, score in zip(neighbours, snapshot.similar_scores[s_start:s_end].tolist(), strict=True):
            if neighbour in taken or neighbour in played_idx or cat.track_ids[neighbour] in played_set:
                continue
            if neighbour in in_base:
                # a recommendation the model also finds close to what was just played: first
                leaned.append((neighbour, in_base[neighbour][1], reason))
            elif fallback:
                # no published history to respect: the newest listens are all we know of the user
                leaned.append((neighbour, float(score), reason))
            else:
                continue
            taken.add(neighbour)
    ordered = leaned + [item for item in base if item[0] not in taken]
    fragments = cat.track_fragments
    items = [_ITEM % (rank, fragments[t], s, r) for rank, (t, s, r) in enumerate(ordered[:MAX_K], 1)]
    return items, fallback


@dataclass(frozen=True, eq=False)
class RecentOverlay:
    """Answers of the listeners with recent listens, built for one snapshot."""

    snapshot: Snapshot
    listens: RecentListens
    answers: dict[str, tuple[list[bytes], bool]]
    built_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    build_seconds: float = 0.0

    def answer(self, snapshot: Snapshot, user_id: str, k: int) -> bytes | None:
        """The user's answer when they have recent listens, else None (the snapshot answers)."""
        played = self.listens.by_user.get(user_id)
        if played is None:
            return None
        if snapshot is self.snapshot:
            items, fallback = self.answers[user_id]
        else:  # a newer publication is served since this overlay was built
            items, fallback = user_items(snapshot, user_id, played)
        head = _USER_HEAD % (orjson.dumps(user_id), snapshot.version_json, b"true" if fallback else b"false", k)
        return head + b",".join(items[:k]) + b"]}"


def build_overlay(snapshot: Snapshot, listens: RecentListens) -> RecentOverlay:
    started = time.perf_counter()
    answers = {user: user_items(snapshot, user, played) for user, played in listens.by_user.items()}
    return RecentOverlay(snapshot, listens, answers, build_seconds=time.perf_counter() - started)


class RecentListensRefresher:
    """Keeps ``service.recent`` current; ``refresh`` runs in a background thread."""

    def __init__(self, service, max_rows: int = MAX_ROWS) -> None:
        self.service = service
        self.max_rows = max_rows
        self._lock = threading.Lock()
        self.last_error: str | None = None
        self.last_refresh_at: datetime | None = None
        self.last_seconds: float | None = None

    def refresh(self) -> bool:
        """Read the relation and swap in a new overlay (the current one stays when the listens
        are unchanged); False on failure or while another refresh still runs (refreshes never
        pile up)."""
        if not self._lock.acquire(blocking=False):
            return False
        started = time.perf_counter()
        try:
            snapshot = self.service.state.snapshot
            listens = load_recent_listens(self.service.warehouse, self.max_rows)
            if listens is None:
                self.service.recent = None
                self.last_error = "marts.recent_listens does not exist yet: run the pipeline"
                return False
            if listens.truncated:
                log.warning("marts.recent_listens has over %d rows: the oldest plays were left out", self.max_rows)
            previous = self.service.recent
            if previous is None or previous.snapshot is not snapshot or not previous.listens.same_as(listens):
                # Unchanged listens keep the overlay object, and with it the service's answer cache.
                self.service.recent = build_overlay(snapshot, listens)
            self.last_error = None
            return True
        except Exception as exc:  # keep the previous overlay whatever went wrong
            self.last_error = f"{type(exc).__name__}: {exc}"
            log.warning("recent listens refresh failed, keeping the previous ones: %s", self.last_error)
            return False
        finally:
            self.last_refresh_at = datetime.now(UTC)
            self.last_seconds = time.perf_counter() - started
            self._lock.release()

    def health(self) -> dict[str, object]:
        overlay = self.service.recent
        return {
            "users": len(overlay.listens.by_user) if overlay else 0,
            "rows": overlay.listens.rows if overlay else 0,
            "newest_played_at": overlay.listens.newest_played_at.isoformat()
            if overlay and overlay.listens.newest_played_at
            else None,
            "last_refresh_at": self.last_refresh_at.isoformat() if self.last_refresh_at else None,
            "last_refresh_seconds": round(self.last_seconds, 3) if self.last_seconds is not None else None,
            "last_error": self.last_error,
        }
