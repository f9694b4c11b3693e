"""Small worlds with known taste clusters, in the marts' table shapes.

Used by the tests (a model must recover the clusters) and by the timing benchmarks (demo-size
data without a warehouse). Listener ``u`` belongs to cluster ``u % n_clusters`` and plays tracks
of that cluster's artists only, most-popular tracks more often; each cluster has one genre,
artists carry the cluster's genre tag plus a tag of their own, audio features depend on the
cluster with some values missing, as in real data.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

GENRES = ("rock", "jazz", "techno", "folk", "metal", "hip-hop", "classical", "pop", "reggae", "blues")


@dataclass(frozen=True)
class TasteWorld:
    interactions: pd.DataFrame  # marts.user_track_interactions
    tracks: pd.DataFrame  # marts.dim_tracks (subset of columns)
    artist_tags: pd.DataFrame  # marts.artist_tags
    users: pd.DataFrame  # marts.dim_users (subset)

    def cluster_of_track(self) -> dict[str, int]:
        return dict(zip(self.tracks["track_id"], self.tracks["cluster"], strict=True))


def taste_clusters(
    n_users: int = 120,
    n_clusters: int = 4,
    artists_per_cluster: int = 5,
    tracks_per_artist: int = 5,
    tracks_per_user: int = 12,
    unplayed_tracks_per_cluster: int = 0,
    seed: int = 0,
    start: str = "2025-01-01",
) -> TasteWorld:
    rng = np.random.default_rng(seed)
    rows = []
    for cluster in range(n_clusters):
        genre = GENRES[cluster % len(GENRES)] + ("" if cluster < len(GENRES) else f"-{cluster}")
        for artist in range(artists_per_cluster):
            artist_id = f"a{cluster}_{artist}"
            for track in range(tracks_per_artist):
                rows.append(
                    (
                        f"t{cluster}_{artist}_{track}",
                        artist_id,
                        f"Artist {cluster}-{artist}",
                        f"Song {cluster}-{artist}-{track}",
                        genre,
                        cluster,
                        True,
                    )
                )
        for extra in range(unplayed_tracks_per_cluster):
            artist_id = f"a{cluster}_0"
            rows.append(
                (
                    f"new{cluster}_{extra}",
                    artist_id,
                    f"Artist {cluster}-0",
                    f"New song {cluster}-{extra}",
                    genre,
                    cluster,
                    False,
                )
            )
    tracks = pd.DataFrame(
        rows, columns=["track_id", "artist_id", "artist_name", "track_name", "genre", "cluster", "playable"]
    )
    tracks["genres"] = tracks["genre"]
    base_energy = rng.random(n_clusters)
    for column in ("danceability", "energy", "valence"):
        values = np.clip(base_energy[tracks["cluster"]] + rng.normal(0, 0.08, len(tracks)), 0, 1)
        values[rng.random(len(tracks)) < 0.1] = np.nan  # some tracks lack audio features
        tracks[column] = values
    tracks["tempo"] = np.where(
        rng.random(len(tracks)) < 0.1, np.nan, 80 + 20 * tracks["cluster"] + rng.normal(0, 5, len(tracks))
    )
    tracks["popularity"] = rng.integers(0, 100, len(tracks))

    tag_rows = []
    for artist_id, cluster in tracks.drop_duplicates("artist_id")[["artist_id", "cluster"]].itertuples(index=False):
        tag_rows.append((artist_id, GENRES[cluster % len(GENRES)], 1.0, 1))
        tag_rows.append((artist_id, f"style-{artist_id}", 0.5, 2))
        tag_rows.append((artist_id, "seen live", 0.2, 3))
    artist_tags = pd.DataFrame(tag_rows, columns=["artist_id", "tag_name", "tag_weight", "tag_rank"])

    playable = tracks[tracks["playable"]]
    by_cluster = {c: group["track_id"].to_numpy() for c, group in playable.groupby("cluster")}
    origin = pd.Timestamp(start, tz="UTC")
    interaction_rows = []
    for user in range(n_users):
        cluster = user % n_clusters
        pool = by_cluster[cluster]
        weights = 1.0 / np.arange(1, len(pool) + 1) ** 0.7  # a popularity skew inside the cluster
        chosen = rng.choice(pool, size=min(tracks_per_user, len(pool)), replace=False, p=weights / weights.sum())
        for track_id in chosen:
            first = origin + pd.Timedelta(seconds=int(rng.integers(0, 30 * 86_400)))
            last = first + pd.Timedelta(seconds=int(rng.integers(0, 5 * 86_400)))
            interaction_rows.append((f"u{user}", track_id, int(rng.integers(1, 50)), first, last))
    interactions = pd.DataFrame(
        interaction_rows, columns=["user_id", "track_id", "play_count", "first_played_at", "last_played_at"]
    )
    users = pd.DataFrame(
        {
            "user_id": [f"u{u}" for u in range(n_users)],
            "country": rng.choice(["DE", "FR", "US", "BR"], n_users),
            "age": rng.integers(15, 70, n_users),
            "gender": rng.choice(["f", "m", "n"], n_users),
        }
    )
    return TasteWorld(interactions=interactions, tracks=tracks, artist_tags=artist_tags, users=users)
