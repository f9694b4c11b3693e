"""A plausible serving warehouse of any size, for the service's tests and benchmarks.

Writes ``marts.dim_artists``, ``marts.dim_tracks`` (pandas through ``Warehouse.replace_table``)
and ``ml.user_recommendations``, ``ml.similar_tracks``, ``ml.model_registry`` (generated inside
DuckDB with ``Warehouse.execute``: a million users are ten million rows, which never pass
through Python), plus the display snapshot a publication carries (``ml.published_tracks``,
``ml.published_artists``). A sample version's publication id is its version name.
Deterministic for a given seed. DuckDB only (it uses DuckDB's SQL functions).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pandas as pd

from music_platform.identity import artist_id, track_id
from music_platform.serving.limits import MAX_K
from music_platform.warehouse import Warehouse

GENRES = ("rock", "pop", "electronic", "hip-hop", "jazz", "metal", "indie", "folk", "classical", "soul")
# Real names with accents so cold start's accent-insensitive matching has something to match.
NOTABLE_ARTISTS = (
    ("Björk", "electronic"),
    ("Sigur Rós", "indie"),
    ("Motörhead", "metal"),
    ("Beyoncé", "pop"),
    ("Røyksopp", "electronic"),
    ("Radiohead", "rock"),
    ("Miles Davis", "jazz"),
    ("Daft Punk", "electronic"),
)
_FIRST = (
    "Velvet",
    "Silver",
    "Neon",
    "Broken",
    "Golden",
    "Electric",
    "Midnight",
    "Crimson",
    "Paper",
    "Hollow",
    "Wild",
    "Lunar",
    "Glass",
    "Iron",
    "Quiet",
    "Northern",
    "Black",
    "Crystal",
    "Static",
    "Amber",
)
_SECOND = (
    "Harbor",
    "Foxes",
    "Parade",
    "Engines",
    "Tides",
    "Orchard",
    "Machines",
    "Sparrows",
    "Valley",
    "Echoes",
    "Monarchs",
    "Signals",
    "Rivers",
    "Lanterns",
    "Ghosts",
    "Satellites",
    "Wolves",
    "Gardens",
    "Canyons",
    "Waves",
)
_WORDS = (
    "Love",
    "Night",
    "Fire",
    "Summer",
    "Rain",
    "Heart",
    "Dream",
    "City",
    "Light",
    "Shadow",
    "Road",
    "Ocean",
    "Stars",
    "Morning",
    "Gold",
    "Storm",
    "Dance",
    "Home",
    "Blue",
    "Time",
    "Forever",
    "Alone",
    "Run",
    "Sky",
)


@dataclass(frozen=True)
class SampleSummary:
    users: int
    artists: int
    tracks: int
    recommendations: int
    similar_pairs: int
    model_version: str

    def user_id(self, number: int) -> str:
        return sample_user_id(number)


def sample_user_id(number: int) -> str:
    return f"user_{number:07d}"


def _power_law_counts(rng: np.random.Generator, size: int, top: int, exponent: float) -> np.ndarray:
    """Descending counts ~ top / rank^exponent with a little noise (no ties at the top)."""
    ranks = np.arange(1, size + 1, dtype=np.float64)
    noise = rng.uniform(0.9, 1.1, size=size)
    return np.maximum(np.sort(top / ranks**exponent * noise)[::-1], 1).astype(np.int64)


def build_catalogue_frames(artists: int, tracks: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``marts.dim_artists`` and ``marts.dim_tracks`` shaped frames (Zipf-like listen counts)."""
    rng = np.random.default_rng(seed)
    names: list[str] = []
    genres: list[str] = []
    seen: set[str] = set()
    for name, genre in NOTABLE_ARTISTS[: max(artists, 0)]:
        names.append(name)
        genres.append(genre)
        seen.add(name)
    while len(names) < artists:
        name = f"{rng.choice(_FIRST)} {rng.choice(_SECOND)}"
        if name in seen:
            name = f"{name} {len(names)}"
        seen.add(name)
        names.append(name)
        genres.append(str(rng.choice(GENRES)))
    artist_listens = _power_law_counts(rng, artists, top=3_000_000, exponent=0.9)
    artist_frame = pd.DataFrame(
        {
            "artist_id": [artist_id(n) for n in names],
            "artist_name": names,
            "artist_mbid": None,
            "genre": genres,
            "top_tags": [";".join(dict.fromkeys([g, str(rng.choice(GENRES)), "seen live"])) for g in genres],
            "listener_count": (artist_listens // 7 + 1).astype(np.int64),
            "listen_count": artist_listens.astype(np.int64),
        }
    )
    # Popular artists have more tracks; every artist has at least one.
    weights = np.sqrt(artist_listens) / np.sqrt(artist_listens).sum()
    owners = np.concatenate([np.arange(artists), rng.choice(artists, size=max(tracks - artists, 0), p=weights)])[
        :tracks
    ]
    track_rows = []
    used: set[tuple[int, str]] = set()
    for position, owner in enumerate(owners.tolist()):
        title = f"{rng.choice(_WORDS)} {rng.choice(_WORDS)}"
        if (owner, title) in used:
            title = f"{title} ({position})"
        used.add((owner, title))
        genre = genres[owner] if rng.random() < 0.85 else str(rng.choice(GENRES))
        track_rows.append((owner, title, genre))
    track_listens = rng.permutation(_power_law_counts(rng, tracks, top=1_000_000, exponent=1.0))
    track_frame = pd.DataFrame(
        {
            "track_id": [track_id(names[o], t) for o, t, _ in track_rows],
            "track_name": [t for _, t, _ in track_rows],
            "artist_id": [artist_id(names[o]) for o, _, _ in track_rows],
            "artist_name": [names[o] for o, _, _ in track_rows],
            "track_mbid": None,
            "spotify_track_id": None,
            "genre": [g for _, _, g in track_rows],
            "genres": [";".join(dict.fromkeys([g, genres[o]])) for o, _, g in track_rows],
            "duration_ms": rng.integers(120_000, 420_000, size=tracks),
            "popularity": rng.integers(0, 101, size=tracks),
            "listener_count": (track_listens // 3 + 1).astype(np.int64),
            "listen_count": track_listens,
        }
    )
    return artist_frame, track_frame


def write_recommendations_sql(
    warehouse: Warehouse, users: int, per_user: int, model_version: str, seed: int, *, replace: bool
) -> None:
    """Append (or replace with) ``users`` x ``per_user`` rows of ``model_version``.

    Tracks are drawn with a skew towards popular ones; reasons look like the recommender's
    ("because you play <track>" or "popular in <genre> among listeners like you").
    """
    version = model_version.replace("'", "''")
    size = warehouse.row_count("marts", "dim_tracks")
    select = f"""
        with catalogue as (
            select track_id, track_name, genre,
                   row_number() over (order by listen_count desc, track_id) - 1 as position
            from marts.dim_tracks
        ),
        picks as (
            select u.range as user_number, r.range as rank_zero, h,
                   cast(floor(pow(((h >> 11) % 1000003) / 1000003.0, 2) * {size}) as bigint) as pick,
                   cast((h >> 23) % {size} as bigint) as heard
            from range(1, {users + 1}) u cross join range({per_user}) r,
                 lateral (select hash(u.range, r.range, {seed}) as h) hashed
        )
        select 'user_' || lpad(cast(p.user_number as varchar), 7, '0') as user_id,
               cast(p.rank_zero + 1 as integer) as rank,
               c.track_id,
               cast(round(0.95 - 0.05 * p.rank_zero - (p.h % 1000) / 100000.0, 6) as double) as score,
               case when p.h % 3 = 0 then 'popular in ' || coalesce(c.genre, 'music') || ' among listeners like you'
                    else 'because you play ' || h2.track_name end as reason,
               '{version}' as model_version,
               timestamp '2026-01-01 00:00:00' as generated_at,
               '{version}' as publication_id
        from picks p
        join catalogue c on c.position = p.pick
        join catalogue h2 on h2.position = p.heard
    """
    if replace:
        warehouse.execute(
            f"create schema if not exists ml; create or replace table ml.user_recommendations as {select}"
        )
    else:
        warehouse.execute(f"insert into ml.user_recommendations {select}")


def write_similar_sql(warehouse: Warehouse, per_track: int, model_version: str, seed: int, *, replace: bool) -> None:
    """``per_track`` distinct neighbours per track (fewer only in a smaller genre), from its genre."""
    version = model_version.replace("'", "''")
    # A run of consecutive positions from a pseudo-random start: distinct neighbours, the track
    # itself skipped (one candidate more than needed for it).
    select = f"""
        with catalogue as (
            select track_id, genre, listen_count,
                   row_number() over (partition by genre order by listen_count desc, track_id) - 1 as position,
                   count(*) over (partition by genre) as size
            from marts.dim_tracks
        ),
        picks as (
            select c.track_id, c.genre, c.size, r.range as offset_, hash(c.track_id, {seed}) as h
            from catalogue c cross join range({per_track + 1}) r
        ),
        neighbours as (
            select p.track_id, n.track_id as similar_track_id, p.offset_, p.h,
                   row_number() over (partition by p.track_id order by p.offset_) as rank
            from picks p
            join catalogue n on n.genre = p.genre and n.position = (p.h + p.offset_) % p.size
            where n.track_id <> p.track_id and p.offset_ < p.size
        )
        select track_id, cast(rank as integer) as rank, similar_track_id,
               cast(round(0.9 - 0.04 * (rank - 1) - ((h + offset_) % 1000) / 100000.0, 6) as double) as score,
               '{version}' as model_version
        from neighbours
        where rank <= {per_track}
    """
    if replace:
        warehouse.execute(f"create schema if not exists ml; create or replace table ml.similar_tracks as {select}")
    else:
        warehouse.execute(f"insert into ml.similar_tracks {select}")


def registry_row(
    model_version: str,
    status: str = "published",
    published_at: datetime | None = None,
    publication_id: str | None = None,
) -> pd.DataFrame:
    """One ``ml.model_registry`` row (MARTS.md columns). A published sample version's publication
    id is its version name (the sample writers use it for its rows)."""
    now = datetime.now(UTC)
    published = (published_at or now) if status == "published" else None
    if publication_id is None and status == "published":
        publication_id = model_version
    return pd.DataFrame(
        {
            "model_version": [model_version],
            "created_at": pd.Series([now], dtype="datetime64[ns, UTC]"),
            "status": [status],
            "published_at": pd.Series([published], dtype="datetime64[ns, UTC]"),
            "params": ['{"model": "sample"}'],
            "data_snapshot_id": ["sample"],
            "artifact_path": pd.Series([None], dtype=object),
            "metrics": ["{}"],
            "publication_id": pd.Series([publication_id], dtype="string"),
        }
    )


def write_sample_warehouse(
    warehouse: Warehouse,
    *,
    users: int,
    artists: int = 2000,
    tracks: int = 20000,
    per_user: int = MAX_K,
    similar_per_track: int = MAX_K,
    model_version: str = "v1",
    seed: int = 7,
    with_registry: bool = True,
) -> SampleSummary:
    """Replace the serving tables with a fresh sample world and publish ``model_version``."""
    artist_frame, track_frame = build_catalogue_frames(artists, tracks, seed)
    warehouse.replace_table("marts", "dim_artists", artist_frame)
    warehouse.replace_table("marts", "dim_tracks", track_frame)
    write_recommendations_sql(warehouse, users, per_user, model_version, seed, replace=True)
    write_similar_sql(warehouse, similar_per_track, model_version, seed, replace=True)
    _publish_display_fields(warehouse, model_version)
    if with_registry:
        warehouse.replace_table("ml", "model_registry", registry_row(model_version))
    return SampleSummary(
        users=users,
        artists=len(artist_frame),
        tracks=len(track_frame),
        recommendations=warehouse.row_count("ml", "user_recommendations"),
        similar_pairs=warehouse.row_count("ml", "similar_tracks"),
        model_version=model_version,
    )


def publish_version(
    warehouse: Warehouse, model_version: str, *, users: int, per_user: int = MAX_K, seed: int = 8
) -> None:
    """Add a new version's rows next to the old ones, then mark it published (in that order,
    as the pipeline does, so a poller never sees a published version without rows)."""
    write_recommendations_sql(warehouse, users, per_user, model_version, seed, replace=False)
    write_similar_sql(warehouse, MAX_K, model_version, seed, replace=False)
    _publish_display_fields(warehouse, model_version)
    warehouse.append("ml", "model_registry", registry_row(model_version))


def _publish_display_fields(warehouse: Warehouse, publication_id: str) -> None:
    from music_platform.recommender.publication import write_display_snapshot

    write_display_snapshot(warehouse, publication_id)
