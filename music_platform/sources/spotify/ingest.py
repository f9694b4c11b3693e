"""What the Spotify raw assets ask for, and how the answers become rows (no Dagster here).

The raw assets fetch Spotify data only for the tracks the marts know: the Last.fm tracks that
``intermediate.int_tracks_kaggle_matched`` matched to a Spotify track id (through the Kaggle
file, by normalised names or MBIDs), plus a bounded number of searches for Last.fm tracks
that have no id yet (a search result is linked to the Last.fm track later, in dbt, only when
its normalised names match). Artists are the primary artists of the fetched tracks.

The loads are incremental: ``raw.spotify_lookups`` records every id Spotify answered (found,
not found, rejected, not an id) and every search, and an id answered less than
``refetch_after_days`` ago is not asked again. Ids Spotify was *not* asked about (endpoint
withdrawn for this app, client stopped on a rate limit or an outage, single-lookup budget
spent) are not recorded, so the next run asks for them again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

import pandas as pd

from music_platform.sources.lastfm.parsing import ParseResult
from music_platform.sources.schemas import SPOTIFY_ARTISTS, SPOTIFY_AUDIO_FEATURES, SPOTIFY_TRACKS, RawTable
from music_platform.sources.spotify.client import SpotifyClient, is_spotify_id
from music_platform.sources.spotify.parsing import parse_artists, parse_audio_features, parse_tracks
from music_platform.warehouse import Warehouse

RAW = "raw"
LOOKUPS_TABLE = "spotify_lookups"
#: The dbt model listing the Last.fm tracks and the Spotify ids the Kaggle file gives them.
CANDIDATES_SCHEMA, CANDIDATES_TABLE = "intermediate", "int_tracks_kaggle_matched"
SOURCE = "spotify"

FOUND, NOT_FOUND, REJECTED, INVALID_ID, NO_RESULT = "found", "not_found", "rejected", "invalid_id", "no_result"
LOOKUP_COLUMNS = ("lookup_key", "kind", "object_id", "outcome", "looked_up_at", "source")


class _Audit(Protocol):
    def write(self, payload: Any, **context: Any) -> None: ...


@dataclass(frozen=True)
class SearchCandidate:
    """A Last.fm track without a Spotify id: ``track_id`` is the marts' id (md5 of the names)."""

    track_id: str
    artist_name: str
    track_name: str


@dataclass
class TrackPlan:
    """What ``raw/spotify_tracks`` will ask for, and why the rest is not asked."""

    track_ids: list[str]
    searches: list[SearchCandidate]
    candidate_ids: int = 0  # distinct Spotify ids of matched Last.fm tracks
    recently_fetched: int = 0
    unmatched_tracks: int = 0  # Last.fm tracks without any Spotify id
    recently_searched: int = 0
    searches_deferred: int = 0  # beyond this run's search budget
    candidates_missing: bool = False  # the dbt model has not been built yet
    lastfm_tracks: int = 0

    def metadata(self) -> dict[str, int | bool]:
        return {
            "lastfm_tracks": self.lastfm_tracks,
            "candidate_spotify_ids": self.candidate_ids,
            "kaggle_match_rate": round(self.candidate_ids_share, 4),
            "ids_to_fetch": len(self.track_ids),
            "ids_fetched_recently": self.recently_fetched,
            "unmatched_tracks": self.unmatched_tracks,
            "searches": len(self.searches),
            "searched_recently": self.recently_searched,
            "searches_deferred": self.searches_deferred,
        }

    @property
    def candidate_ids_share(self) -> float:
        if not self.lastfm_tracks:
            return 0.0
        return (self.lastfm_tracks - self.unmatched_tracks) / self.lastfm_tracks


@dataclass
class SpotifyLoad:
    """One asset's answers: parsed rows and rejects, and the lookup outcome of every id asked."""

    table: RawTable
    result: ParseResult
    asked: list[str]
    outcomes: dict[tuple[str, str], str] = field(default_factory=dict)  # (kind, id) -> outcome
    searched: int = 0
    search_hits: int = 0

    def frame(self, *, ingested_at: datetime) -> pd.DataFrame:
        """The rows with the raw table's exact columns; one row per key (the last answer wins)."""
        frame = self.result.frame(source=SOURCE, ingested_at=ingested_at)
        return frame.drop_duplicates(subset=list(self.table.key), keep="last").reset_index(drop=True)

    def lookups_frame(self, *, looked_up_at: datetime) -> pd.DataFrame:
        rows = [
            {
                "lookup_key": f"{kind}:{object_id}",
                "kind": kind,
                "object_id": object_id,
                "outcome": outcome,
                "looked_up_at": pd.Timestamp(looked_up_at),
                "source": SOURCE,
            }
            for (kind, object_id), outcome in self.outcomes.items()
        ]
        frame = pd.DataFrame.from_records(rows, columns=list(LOOKUP_COLUMNS))
        frame["looked_up_at"] = pd.to_datetime(frame["looked_up_at"])
        return frame.astype({c: "object" for c in LOOKUP_COLUMNS if c != "looked_up_at"})

    def counts(self) -> dict[str, int]:
        """Every id asked is found, not found, rejected, not an id, or not answered (skipped)."""
        kind = self.table.name.removeprefix("spotify_")
        per_outcome = {o: 0 for o in (FOUND, NOT_FOUND, REJECTED, INVALID_ID)}
        for object_id in dict.fromkeys(self.asked):
            outcome = self.outcomes.get((kind, object_id))
            if outcome in per_outcome:
                per_outcome[outcome] += 1
        answered = sum(per_outcome.values())
        return {
            "ids_requested": len(set(self.asked)),
            "ids_found": per_outcome[FOUND],
            "ids_not_found": per_outcome[NOT_FOUND],
            "ids_rejected": per_outcome[REJECTED],
            "ids_invalid": per_outcome[INVALID_ID],
            "ids_not_answered": len(set(self.asked)) - answered,
            "searches": self.searched,
            "search_hits": self.search_hits,
            "rows": len(self.result.rows),
            "rejected_objects": len(self.result.rejects),
        }


# -- reading the warehouse ---------------------------------------------------------------------


def _lower_columns(frame: pd.DataFrame) -> pd.DataFrame:
    frame.columns = [str(c).lower() for c in frame.columns]
    return frame


def _literal(moment: datetime) -> str:
    return f"cast('{moment.replace(tzinfo=None).isoformat(sep=' ', timespec='microseconds')}' as timestamp)"


def recent_lookups(warehouse: Warehouse, kind: str, since: datetime) -> set[str]:
    """Ids of ``kind`` Spotify answered at or after ``since`` (empty before the first load)."""
    if not warehouse.table_exists(RAW, LOOKUPS_TABLE):
        return set()
    frame = _lower_columns(
        warehouse.query_df(
            f"select object_id from {warehouse.qualified(RAW, LOOKUPS_TABLE)} "
            f"where kind = '{kind}' and looked_up_at >= {_literal(since)}"
        )
    )
    return set(frame["object_id"].dropna().astype(str))


def _distinct(warehouse: Warehouse, schema: str, table: str, column: str) -> list[str]:
    if not warehouse.table_exists(schema, table):
        return []
    frame = _lower_columns(
        warehouse.query_df(
            f"select distinct {column} as value from {warehouse.qualified(schema, table)} "
            f"where {column} is not null order by {column}"
        )
    )
    return [str(v) for v in frame["value"] if str(v).strip()]


def plan_track_lookups(warehouse: Warehouse, *, now: datetime, refetch_after_days: int, max_searches: int) -> TrackPlan:
    """Spotify ids of the matched Last.fm tracks not fetched recently, and the searches to run."""
    if not warehouse.table_exists(CANDIDATES_SCHEMA, CANDIDATES_TABLE):
        return TrackPlan(track_ids=[], searches=[], candidates_missing=True)
    since = now - timedelta(days=refetch_after_days)
    candidates = _lower_columns(
        warehouse.query_df(
            "select track_id, artist_name, track_name, spotify_track_id "
            f"from {warehouse.qualified(CANDIDATES_SCHEMA, CANDIDATES_TABLE)} "
            "order by artist_name, track_name, track_id"
        )
    )
    matched = candidates["spotify_track_id"].notna()
    spotify_ids = sorted(set(candidates.loc[matched, "spotify_track_id"].astype(str)))
    fetched = recent_lookups(warehouse, "tracks", since)
    unmatched = candidates.loc[~matched]
    searched = recent_lookups(warehouse, "search", since)
    to_search = [
        SearchCandidate(str(r.track_id), str(r.artist_name), str(r.track_name))
        for r in unmatched.itertuples(index=False)
        if str(r.track_id) not in searched
    ]
    budget = max(max_searches, 0)
    return TrackPlan(
        track_ids=[i for i in spotify_ids if i not in fetched],
        searches=to_search[:budget],
        candidate_ids=len(spotify_ids),
        recently_fetched=sum(1 for i in spotify_ids if i in fetched),
        unmatched_tracks=len(unmatched),
        recently_searched=len(unmatched) - len(to_search),
        searches_deferred=max(len(to_search) - budget, 0),
        lastfm_tracks=len(candidates),
    )


def plan_artist_lookups(warehouse: Warehouse, *, now: datetime, refetch_after_days: int) -> tuple[list[str], int]:
    """Primary artists of ``raw.spotify_tracks`` not fetched recently; and how many were fresh."""
    wanted = _distinct(warehouse, RAW, SPOTIFY_TRACKS.name, "primary_artist_id")
    fresh = recent_lookups(warehouse, "artists", now - timedelta(days=refetch_after_days))
    return [i for i in wanted if i not in fresh], sum(1 for i in wanted if i in fresh)


def plan_audio_feature_lookups(
    warehouse: Warehouse, *, now: datetime, refetch_after_days: int
) -> tuple[list[str], int]:
    """Every known Spotify track id (matched through Kaggle or fetched) not asked recently."""
    wanted = set(_distinct(warehouse, CANDIDATES_SCHEMA, CANDIDATES_TABLE, "spotify_track_id"))
    wanted |= set(_distinct(warehouse, RAW, SPOTIFY_TRACKS.name, "track_id"))
    fresh = recent_lookups(warehouse, "audio_features", now - timedelta(days=refetch_after_days))
    return sorted(i for i in wanted if i not in fresh), sum(1 for i in wanted if i in fresh)


# -- asking Spotify ----------------------------------------------------------------------------


def _record_answers(
    load: SpotifyLoad,
    kind: str,
    asked: Sequence[str],
    answers: Mapping[str, Mapping[str, Any] | None],
    parsed: ParseResult,
    objects: Sequence[tuple[str, Mapping[str, Any]]],
) -> None:
    rejected_positions = {r.position for r in parsed.rejects}
    for position, (object_id, _) in enumerate(objects):
        load.outcomes[(kind, object_id)] = REJECTED if position in rejected_positions else FOUND
    for object_id in asked:
        if not is_spotify_id((object_id or "").strip()):
            load.outcomes[(kind, object_id)] = INVALID_ID
        elif object_id in answers and answers[object_id] is None:
            load.outcomes[(kind, object_id)] = NOT_FOUND


def _found(answers: Mapping[str, Mapping[str, Any] | None]) -> list[tuple[str, Mapping[str, Any]]]:
    return [(object_id, obj) for object_id, obj in answers.items() if obj is not None]


def fetch_tracks(
    client: SpotifyClient,
    track_ids: Sequence[str],
    searches: Sequence[SearchCandidate] = (),
    *,
    audit: _Audit | None = None,
) -> SpotifyLoad:
    """Tracks by id (batched, or one by one where the batch endpoint is withdrawn), then searches."""
    answers = client.get_tracks(track_ids)
    objects = _found(answers)
    if audit is not None and answers:
        audit.write([obj for _, obj in objects], kind="tracks", asked=len(track_ids))
    load = SpotifyLoad(SPOTIFY_TRACKS, ParseResult(SPOTIFY_TRACKS), asked=list(track_ids))

    for candidate in searches:
        if _search_unusable(client):
            break
        found = client.search_track(candidate.artist_name, candidate.track_name)
        if found is None and _search_unusable(client):
            break  # this very search was refused: it is not an answer
        load.searched += 1
        load.outcomes[("search", candidate.track_id)] = FOUND if found else NO_RESULT
        if found and found.get("id"):
            load.search_hits += 1
            objects.append((str(found["id"]), found))
            if audit is not None:
                audit.write(found, kind="search", artist=candidate.artist_name, track=candidate.track_name)

    parsed = parse_tracks([obj for _, obj in objects])
    _record_answers(load, "tracks", track_ids, answers, parsed, objects)
    load.result = parsed
    return load


def _search_unusable(client: SpotifyClient) -> bool:
    return client.report.stopped_reason is not None or "search" in client.report.unavailable


def fetch_artists(client: SpotifyClient, artist_ids: Sequence[str], *, audit: _Audit | None = None) -> SpotifyLoad:
    answers = client.get_artists(artist_ids)
    objects = _found(answers)
    if audit is not None and answers:
        audit.write([obj for _, obj in objects], kind="artists", asked=len(artist_ids))
    parsed = parse_artists([obj for _, obj in objects])
    load = SpotifyLoad(SPOTIFY_ARTISTS, parsed, asked=list(artist_ids))
    _record_answers(load, "artists", artist_ids, answers, parsed, objects)
    return load


def fetch_audio_features(
    client: SpotifyClient, track_ids: Sequence[str], *, audit: _Audit | None = None
) -> SpotifyLoad:
    answers = client.get_audio_features(track_ids)
    objects = _found(answers)
    if audit is not None and answers:
        audit.write([obj for _, obj in objects], kind="audio_features", asked=len(track_ids))
    parsed = parse_audio_features([obj for _, obj in objects])
    load = SpotifyLoad(SPOTIFY_AUDIO_FEATURES, parsed, asked=list(track_ids))
    _record_answers(load, "audio_features", track_ids, answers, parsed, objects)
    return load


def empty_frame(table: RawTable) -> pd.DataFrame:
    """The raw table's columns with their types and no row (so dbt sources exist)."""
    return ParseResult(table).frame(source=SOURCE)


def unanswered_reasons(report_metadata: Mapping[str, Any]) -> list[str]:
    """Why some ids were not answered, one sentence each (empty when everything was answered)."""
    reasons = [
        f"{capability} unavailable: {why}" for capability, why in report_metadata["unavailable_capabilities"].items()
    ]
    if report_metadata.get("stopped_reason"):
        reasons.append(f"stopped early: {report_metadata['stopped_reason']}")
    skipped = {k: v for k, v in (report_metadata.get("skipped") or {}).items() if v}
    if skipped:
        reasons.append("not asked this run (asked next run): " + ", ".join(f"{v} {k}" for k, v in skipped.items()))
    return reasons
