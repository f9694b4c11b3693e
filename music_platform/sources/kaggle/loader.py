"""Load the Kaggle "Spotify Tracks Dataset" CSV files of a drop folder into ``raw.kaggle_tracks``.

The file (maharshipandya, ~114k rows, 114 genres) lists a track once per genre it was sampled
for, so the same ``track_id`` can appear under several genres. We keep one row per track with
all of its genres, and account for every input row: each one is *loaded* (first row of its
track), *merged* (a further genre row of an already loaded track) or *rejected* (quarantined in
``raw.kaggle_tracks_rejected`` with its content and the reason). ``loaded + merged + rejected ==
input_rows`` always holds.

A file that cannot be read at all (not UTF-8, not CSV, a header without the expected columns)
raises :class:`KaggleSourceError` by default; with ``quarantine_bad_files=True`` (the asset)
it is set aside in ``rejected_files`` with the reason instead, and the other files still load.

Tokenising is done by the stdlib ``csv`` module (C code: RFC 4180 quoting, doubled quotes,
quoted commas and newlines), so a row with the wrong number of fields can be quarantined
instead of aborting the file; validation is vectorised with pandas.

Run ``python -m music_platform.sources.kaggle.loader PATH...`` to print the counts, the
completeness and the load time of a folder or of single files.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from music_platform.audio_features import AUDIO_UNIT_FEATURES
from music_platform.sources.schemas import RAW_TABLES

TRACKS_TABLE = RAW_TABLES["kaggle_tracks"]
REJECTED_TABLE = RAW_TABLES["kaggle_tracks_rejected"]
FILES_REJECTED_TABLE = RAW_TABLES["kaggle_files_rejected"]

# The columns of the Kaggle file, in file order (after the unnamed index column).
EXPECTED_COLUMNS: tuple[str, ...] = (
    "track_id",
    "artists",
    "album_name",
    "track_name",
    "popularity",
    "duration_ms",
    "explicit",
    "danceability",
    "energy",
    "key",
    "loudness",
    "mode",
    "speechiness",
    "acousticness",
    "instrumentalness",
    "liveness",
    "valence",
    "tempo",
    "time_signature",
    "track_genre",
)
# The original file starts with an unnamed pandas index column; a pandas re-save names it "Unnamed: 0".
INDEX_COLUMN_NAMES = frozenset({"", "Unnamed: 0"})

REQUIRED_TEXT_COLUMNS = ("track_id", "artists", "track_name", "track_genre")
_TRUE = frozenset({"true", "1"})
_FALSE = frozenset({"false", "0"})

# Columns compared between rows of the same track_id to count disagreeing duplicates.
_FEATURE_COLUMNS = tuple(c for c in EXPECTED_COLUMNS if c not in ("track_id", "track_genre"))


class KaggleSourceError(ValueError):
    """A drop-folder file cannot be read at all (the message names the file and why)."""


class KaggleSchemaError(KaggleSourceError):
    """A file's header lacks expected columns; ``missing`` lists them."""

    def __init__(self, file_name: str, missing: Sequence[str], unexpected: Sequence[str] = ()):
        self.file_name = file_name
        self.missing = list(missing)
        self.unexpected = list(unexpected)
        message = f"{file_name}: missing column(s) {', '.join(self.missing)}"
        if self.unexpected:
            message += f" (found unexpected column(s) {', '.join(self.unexpected)}: renamed?)"
        super().__init__(message)


@dataclass(frozen=True)
class KaggleLoadResult:
    """What a load produced, with the counts that account for every input row."""

    tracks: pd.DataFrame
    rejected: pd.DataFrame
    input_rows: int
    loaded: int
    merged: int
    files: tuple[str, ...]
    fingerprints: dict[str, str]
    blank_lines: int = 0
    # Distinct track_ids whose rows disagree on some feature (the first row seen wins).
    conflicting_duplicates: int = 0
    ignored_columns: dict[str, list[str]] = field(default_factory=dict)
    # Files that could not be read at all: (file name, sha256, reason). Their rows are unknown.
    rejected_files: tuple[tuple[str, str, str], ...] = ()
    # Per file read: (input rows, rows kept: loaded or merged), so that one file's losses are
    # judged on their own and never hidden by another file's rows.
    file_rows: dict[str, tuple[int, int]] = field(default_factory=dict)

    @property
    def rejected_count(self) -> int:
        return len(self.rejected)

    @property
    def completeness(self) -> float:
        """Share of input rows whose required fields are all present and valid (1.0 when empty)."""
        if self.input_rows == 0:
            return 1.0
        return (self.loaded + self.merged) / self.input_rows

    def column_completeness(self) -> dict[str, float]:
        """Share of non-null values per column of the loaded tracks (optional columns included)."""
        if self.tracks.empty:
            return {c: 1.0 for c in self.tracks.columns}
        share = self.tracks.notna().mean()
        return {c: float(share[c]) for c in self.tracks.columns}

    def counts(self) -> dict[str, int | float]:
        """Flat figures for asset metadata and logs."""
        return {
            "input_rows": self.input_rows,
            "loaded": self.loaded,
            "merged": self.merged,
            "rejected": self.rejected_count,
            "blank_lines": self.blank_lines,
            "conflicting_duplicates": self.conflicting_duplicates,
            "files": len(self.files),
            "rejected_files": len(self.rejected_files),
            "completeness": round(self.completeness, 6),
        }

    def rejected_files_frame(self, ingested_at: datetime | None = None) -> pd.DataFrame:
        """``raw.kaggle_files_rejected``: one row per file that could not be read, with the reason."""
        stamp = _utc_naive(ingested_at)
        frame = pd.DataFrame(list(self.rejected_files), columns=["source_file", "sha256", "reason"], dtype=object)
        frame["ingested_at"] = pd.Series([stamp] * len(frame), dtype="datetime64[ns]")
        return frame[FILES_REJECTED_TABLE.column_names]


# -- files and fingerprints ------------------------------------------------------------------


def list_drop_files(folder: Path | str) -> list[Path]:
    """The CSV files of a drop folder, by name; hidden files (``.name``, e.g. partial copies) are skipped."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(
        (p for p in folder.iterdir() if p.is_file() and p.suffix.lower() == ".csv" and not p.name.startswith(".")),
        key=lambda p: p.name,
    )


def file_fingerprint(path: Path | str) -> str:
    with Path(path).open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _sha256_or_blank(path: Path) -> str:
    try:
        return file_fingerprint(path)
    except OSError:
        return ""


def file_fingerprints(folder: Path | str) -> dict[str, str]:
    """``{file name: sha256 of its content}`` for the drop folder's CSV files (the sensor cursor)."""
    return {p.name: file_fingerprint(p) for p in list_drop_files(folder)}


# -- loading ---------------------------------------------------------------------------------


def load_kaggle_folder(
    folder: Path | str,
    *,
    source: str = "kaggle",
    ingested_at: datetime | None = None,
) -> KaggleLoadResult:
    """Load every CSV of ``folder`` (see :func:`list_drop_files`); an absent or empty folder loads nothing."""
    return load_kaggle_files(list_drop_files(folder), source=source, ingested_at=ingested_at)


def load_kaggle_files(
    paths: Iterable[Path | str],
    *,
    source: str = "kaggle",
    ingested_at: datetime | None = None,
    sources: Mapping[str, str] | None = None,
    quarantine_bad_files: bool = False,
) -> KaggleLoadResult:
    """Parse, validate and merge the given CSV files into one ``raw.kaggle_tracks`` frame.

    ``source`` labels the rows ('kaggle', or 'synthetic' for the generated CSV); ``sources``
    gives a file (by name) another label. Raises :class:`KaggleSchemaError` when a file lacks an
    expected column and :class:`KaggleSourceError` when a file is not UTF-8 CSV text -- unless
    ``quarantine_bad_files``, which lists such files in ``rejected_files`` and loads the others.
    Row-level problems never raise. On a track id found in several files, the first file wins.
    """
    labels = {name: label for name, label in (sources or {}).items()}
    for label in [source, *labels.values()]:
        if not label or not label.strip():
            raise ValueError("source label must not be empty")
    stamp = _utc_naive(ingested_at)
    bad_files: list[tuple[str, str, str]] = []
    file_rows: dict[str, tuple[int, int]] = {}
    valid_parts: list[pd.DataFrame] = []
    rejected_parts: list[pd.DataFrame] = []
    fingerprints: dict[str, str] = {}
    ignored: dict[str, list[str]] = {}
    names: list[str] = []
    input_rows = 0
    blank_lines = 0
    for path in paths:
        path = Path(path)
        try:
            parsed = _parse_file(path)
        except (KaggleSourceError, OSError) as exc:
            if not quarantine_bad_files:
                raise
            reason = str(exc) if isinstance(exc, KaggleSourceError) else f"{path.name}: unreadable ({exc})"
            bad_files.append((path.name, _sha256_or_blank(path), reason))
            continue
        names.append(path.name)
        fingerprints[path.name] = parsed.sha256
        if parsed.ignored_columns:
            ignored[path.name] = parsed.ignored_columns
        input_rows += parsed.input_rows
        blank_lines += parsed.blank_lines
        valid, rejected = _validate(parsed)
        valid_parts.append(valid)
        rejected_parts.append(rejected)
        file_rows[path.name] = (parsed.input_rows, len(valid))

    valid_all = _concat(valid_parts, list(EXPECTED_COLUMNS) + ["primary_artist", "source_file", "row_number"])
    tracks, conflicts = _merge_genres(valid_all)
    tracks = _finish_tracks(tracks, source=source, ingested_at=stamp, sources=labels)
    rejected_all = _concat(rejected_parts, ["source_file", "row_number", "raw_row", "reason"])
    rejected_all = rejected_all.assign(
        source=rejected_all["source_file"].map(lambda name: labels.get(name, source)).astype(object),
        ingested_at=stamp,
    )[REJECTED_TABLE.column_names]
    rejected_all["row_number"] = rejected_all["row_number"].astype("int64")
    rejected_all["ingested_at"] = pd.to_datetime(rejected_all["ingested_at"])

    result = KaggleLoadResult(
        tracks=tracks,
        rejected=rejected_all.reset_index(drop=True),
        input_rows=input_rows,
        loaded=len(tracks),
        merged=len(valid_all) - len(tracks),
        files=tuple(names),
        fingerprints=fingerprints,
        blank_lines=blank_lines,
        conflicting_duplicates=conflicts,
        ignored_columns=ignored,
        rejected_files=tuple(bad_files),
        file_rows=file_rows,
    )
    # The accounting identity is the loader's contract; fail loudly if a change ever breaks it.
    if result.loaded + result.merged + result.rejected_count != result.input_rows:
        raise AssertionError(f"row accounting broken: {result.counts()}")
    return result


def _utc_naive(moment: datetime | None) -> pd.Timestamp:
    """Timestamps are stored as naive UTC (SQL ``timestamp``), identical on every warehouse."""
    stamp = pd.Timestamp(moment or datetime.now(UTC))
    if stamp.tzinfo is not None:
        stamp = stamp.tz_convert("UTC").tz_localize(None)
    return stamp


def _concat(parts: list[pd.DataFrame], columns: list[str]) -> pd.DataFrame:
    parts = [p for p in parts if not p.empty]
    if not parts:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in columns})
    return pd.concat(parts, ignore_index=True)


@dataclass
class _ParsedFile:
    name: str
    sha256: str
    header: list[str]
    frame: pd.DataFrame  # well-formed records, expected columns only, as text
    row_numbers: np.ndarray  # data-row number of each record of ``frame``
    records: list[list[str]]  # the fields of each record of ``frame``, to quote rejected rows verbatim
    malformed: list[tuple[int, list[str], str]]  # (row number, fields, reason)
    input_rows: int
    blank_lines: int
    ignored_columns: list[str]


def _parse_file(path: Path) -> _ParsedFile:
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise KaggleSourceError(f"{path.name}: not UTF-8 text (invalid byte at offset {exc.start})") from exc
    reader = csv.reader(io.StringIO(text, newline=""), strict=False)
    try:
        records = list(reader)
    except csv.Error as exc:
        raise KaggleSourceError(f"{path.name}: unreadable CSV near line {reader.line_num}: {exc}") from exc
    if not records:
        raise KaggleSchemaError(path.name, EXPECTED_COLUMNS)
    header = [name.strip() for name in records[0]]
    positions = _column_positions(path.name, header)
    ignored = [
        name
        for i, name in enumerate(header)
        if i not in positions.values() and not (i == 0 and name in INDEX_COLUMN_NAMES)
    ]

    width = len(header)
    good: list[list[str]] = []
    good_numbers: list[int] = []
    malformed: list[tuple[int, list[str], str]] = []
    blank = 0
    for number, record in enumerate(records[1:], start=1):
        if not record:
            blank += 1  # an empty line carries no row
        elif len(record) == width:
            good.append(record)
            good_numbers.append(number)
        else:
            malformed.append((number, record, f"expected {width} fields, found {len(record)}"))

    frame = pd.DataFrame(good, columns=list(range(width)), dtype=object) if good else pd.DataFrame(columns=range(width))
    frame = frame[[positions[c] for c in EXPECTED_COLUMNS]]
    frame.columns = list(EXPECTED_COLUMNS)
    return _ParsedFile(
        name=path.name,
        sha256=digest,
        header=header,
        frame=frame.reset_index(drop=True),
        row_numbers=np.asarray(good_numbers, dtype="int64"),
        records=good,
        malformed=malformed,
        input_rows=len(good) + len(malformed),
        blank_lines=blank,
        ignored_columns=ignored,
    )


def _column_positions(file_name: str, header: list[str]) -> dict[str, int]:
    duplicated = sorted({name for name in header if name and header.count(name) > 1})
    if duplicated:
        raise KaggleSourceError(f"{file_name}: duplicated column(s) {', '.join(duplicated)}")
    positions = {name: i for i, name in enumerate(header)}
    missing = [c for c in EXPECTED_COLUMNS if c not in positions]
    if missing:
        unexpected = [
            name
            for i, name in enumerate(header)
            if name not in EXPECTED_COLUMNS and not (i == 0 and name in INDEX_COLUMN_NAMES)
        ]
        raise KaggleSchemaError(file_name, missing, unexpected)
    return {c: positions[c] for c in EXPECTED_COLUMNS}


# -- validation ------------------------------------------------------------------------------


class _Reasons:
    """Accumulates '; '-joined reasons per row, touching only the rows that fail a check."""

    def __init__(self, index: pd.Index):
        self.text = pd.Series("", index=index, dtype=object)

    def add(self, mask: pd.Series, message: str, values: pd.Series | None = None) -> None:
        if not mask.any():
            return
        detail = message if values is None else message + ": " + values[mask].map(repr)
        current = self.text[mask]
        self.text[mask] = np.where(current == "", detail, current + "; " + detail)

    @property
    def failed(self) -> pd.Series:
        return self.text != ""


def _validate(parsed: _ParsedFile) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split a file's records into typed valid rows and rejected rows (with reasons)."""
    raw = parsed.frame
    reasons = _Reasons(raw.index)
    typed = pd.DataFrame(index=raw.index)

    # Text fields are trimmed; numbers need no trimming (to_numeric ignores surrounding blanks).
    for col in ("track_id", "artists", "album_name", "track_name", "track_genre"):
        trimmed = raw[col].str.strip()
        typed[col] = trimmed.where(trimmed != "", None)
    for col in REQUIRED_TEXT_COLUMNS:
        reasons.add(typed[col].isna(), f"{col} is empty")
    typed["primary_artist"] = _primary_artist(typed["artists"])
    reasons.add(typed["artists"].notna() & typed["primary_artist"].isna(), "artists has no name", raw["artists"])

    def number(col: str, *, required: bool, integer: bool) -> pd.Series:
        values = pd.to_numeric(raw[col], errors="coerce")
        not_finite = ~np.isfinite(values.to_numpy(dtype="float64"))
        # Only the few non-numeric cells are inspected to tell a blank from garbage.
        blank_cells = np.zeros(len(raw), dtype=bool)
        candidates = np.flatnonzero(not_finite)
        blank_cells[candidates] = [not str(v).strip() for v in raw[col].to_numpy(dtype=object)[candidates]]
        blank = pd.Series(blank_cells, index=raw.index)
        unparseable = pd.Series(not_finite & ~blank_cells, index=raw.index)
        reasons.add(unparseable, f"{col} is not a number", raw[col])
        if required:
            reasons.add(blank, f"{col} is empty")
        values = values.where(~unparseable & ~blank)
        if integer:
            reasons.add(values.notna() & (values % 1 != 0), f"{col} is not an integer", raw[col])
        return values

    def in_range(col: str, values: pd.Series, ok: pd.Series, rule: str) -> None:
        reasons.add(values.notna() & ~ok, f"{col} not {rule}", raw[col])

    popularity = number("popularity", required=True, integer=True)
    in_range("popularity", popularity, popularity.between(0, 100), "in 0..100")
    duration = number("duration_ms", required=True, integer=True)
    in_range("duration_ms", duration, duration >= 0, ">= 0")
    for col in AUDIO_UNIT_FEATURES:
        values = number(col, required=True, integer=False)
        in_range(col, values, values.between(0, 1), "in [0, 1]")
        typed[col] = values.astype("float64")
    tempo = number("tempo", required=True, integer=False)
    in_range("tempo", tempo, tempo >= 0, ">= 0")
    key = number("key", required=False, integer=True)
    in_range("key", key, key.between(-1, 11), "in -1..11")
    loudness = number("loudness", required=False, integer=False)
    mode = number("mode", required=False, integer=True)
    in_range("mode", mode, mode.isin([0, 1]), "0 or 1")
    time_signature = number("time_signature", required=False, integer=True)
    in_range("time_signature", time_signature, time_signature >= 0, ">= 0")

    lowered = raw["explicit"].str.strip().str.lower()
    explicit = pd.Series(pd.NA, index=raw.index, dtype="boolean")
    explicit[lowered.isin(_TRUE)] = True
    explicit[lowered.isin(_FALSE)] = False
    reasons.add((lowered != "") & explicit.isna(), "explicit is not a boolean", raw["explicit"])

    failed = reasons.failed.to_numpy()
    typed["popularity"] = _as_int(popularity, failed)
    typed["duration_ms"] = _as_int(duration, failed)
    typed["explicit"] = explicit
    typed["key"] = _as_int(key, failed)
    typed["loudness"] = loudness.astype("float64")
    typed["mode"] = _as_int(mode, failed)
    typed["tempo"] = tempo.astype("float64")
    typed["time_signature"] = _as_int(time_signature, failed)
    typed["source_file"] = parsed.name
    typed["row_number"] = parsed.row_numbers
    valid = typed.loc[~failed, list(EXPECTED_COLUMNS) + ["primary_artist", "source_file", "row_number"]]

    rejected_rows = [(row_no, _raw_json(parsed.header, fields), why) for row_no, fields, why in parsed.malformed]
    failing = np.flatnonzero(failed)
    for position, why in zip(failing, reasons.text.iloc[failing], strict=True):
        fields = parsed.records[position]
        rejected_rows.append((int(parsed.row_numbers[position]), _raw_json(parsed.header, fields), why))
    rejected = pd.DataFrame(rejected_rows, columns=["row_number", "raw_row", "reason"])
    rejected.insert(0, "source_file", parsed.name)
    return valid.reset_index(drop=True), rejected.sort_values("row_number", kind="stable").reset_index(drop=True)


def _raw_json(header: list[str], fields: list[str]) -> str:
    """The row as JSON text: header name -> field, or the bare field list when the widths differ."""
    if len(fields) == len(header):
        content = dict(zip(header, fields, strict=True))
    else:
        content = {"fields": fields}
    return json.dumps(content, ensure_ascii=False)


def _primary_artist(artists: pd.Series) -> pd.Series:
    """First non-blank name of the ';'-joined artists (None when there is none)."""
    first = artists.str.extract(r"^[\s;]*([^;]*[^;\s])", expand=False)
    return first.astype(object).where(first.notna(), None)


def _as_int(values: pd.Series, failed: np.ndarray) -> pd.Series:
    # Rows that failed are dropped afterwards; blank their values so the cast cannot trip on them.
    return values.where(~failed).round().astype("Int64")


# -- merge and final shape -------------------------------------------------------------------


def _merge_genres(valid: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """One row per track_id (first seen) with ``genres`` = its sorted unique genres ';'-joined."""
    if valid.empty:
        return valid.assign(genres=pd.Series(dtype=object)), 0
    repeated = valid["track_id"].duplicated(keep=False)
    tracks = valid.drop_duplicates("track_id", keep="first").set_index("track_id", drop=False)
    tracks["genres"] = tracks["track_genre"]
    conflicts = 0
    if repeated.any():
        groups = valid.loc[repeated].groupby("track_id", sort=False)
        joined = groups["track_genre"].agg(lambda genres: ";".join(sorted(set(genres))))
        tracks.loc[joined.index, "genres"] = joined
        differing = groups[list(_FEATURE_COLUMNS)].nunique(dropna=False).gt(1).any(axis=1)
        conflicts = int(differing.sum())
    return tracks.reset_index(drop=True), conflicts


_PANDAS_DTYPES = {"varchar": object, "integer": "Int64", "bigint": "Int64", "double": "float64", "boolean": "boolean"}


def _finish_tracks(
    tracks: pd.DataFrame, *, source: str, ingested_at: pd.Timestamp, sources: Mapping[str, str] | None = None
) -> pd.DataFrame:
    """Exactly the ``raw.kaggle_tracks`` columns, in order, with dtypes that follow their SQL types."""
    labels = sources or {}
    label = tracks["source_file"].map(lambda name: labels.get(name, source)) if labels else source
    out = tracks.assign(source=label, ingested_at=ingested_at)[TRACKS_TABLE.column_names].reset_index(drop=True)
    for column in TRACKS_TABLE.columns:
        if column.sql_type == "timestamp":
            out[column.name] = pd.to_datetime(out[column.name])
        else:
            out[column.name] = out[column.name].astype(_PANDAS_DTYPES[column.sql_type])
    return out


# -- measuring from the command line ---------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Print counts, completeness and timing for folders and/or CSV files."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        print("usage: python -m music_platform.sources.kaggle.loader FOLDER_OR_CSV [...]", file=sys.stderr)
        return 2
    paths: list[Path] = []
    for arg in args:
        p = Path(arg)
        paths.extend(list_drop_files(p) if p.is_dir() else [p])
    started = time.perf_counter()
    result = load_kaggle_files(paths)
    elapsed = time.perf_counter() - started
    for name, value in result.counts().items():
        print(f"{name:>24}: {value}")
    print(f"{'load_seconds':>24}: {elapsed:.2f}")
    if elapsed > 0:
        print(f"{'rows_per_second':>24}: {result.input_rows / elapsed:,.0f}")
    nullable = {c: v for c, v in result.column_completeness().items() if v < 1.0}
    print(f"{'columns_below_100%':>24}: {nullable or 'none'}")
    if result.ignored_columns:
        print(f"{'ignored_columns':>24}: {result.ignored_columns}")
    if result.rejected_count:
        print("first rejected rows:")
        for row in result.rejected.head(10).itertuples():
            print(f"  {row.source_file}:{row.row_number}: {row.reason}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
