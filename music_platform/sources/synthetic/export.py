"""``music-platform generate-fake-data``: the synthetic world written out as files.

Layout under ``output_dir`` (JSON bodies exactly as the API would send them)::

    lastfm/user.getRecentTracks/<YYYY-MM-DD>.jsonl   one recent-tracks page per line, every user with listens
    lastfm/user.getInfo.jsonl                         one user.getInfo answer per line
    lastfm/artist.getTopTags.jsonl                    one artist.getTopTags answer per line
    lastfm/tag.getTopTracks/<tag>.json                top 50 tracks of each genre tag
    lastfm/chart.getTopTracks.json                    global top 50
    kaggle/dataset.csv                                the Kaggle Spotify Tracks CSV (real header)
    scrobbles.csv                                     every scrobble as a flat row, for convenience
    manifest.json                                     parameters and counts
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import orjson

from music_platform.sources.synthetic.kaggle import kaggle_tracks_frame
from music_platform.sources.synthetic.payloads import SCROBBLE_COLUMNS
from music_platform.sources.synthetic.source import SyntheticLastfmSource

TOP_LIMIT = 50


def _write_json(path: Path, payload: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps(payload))


def export_fake_data(
    output_dir: Path, users: int, days: int, seed: int, *, end_day: dt.date | None = None
) -> dict[str, object]:
    """Write ``days`` days of history ending ``end_day`` (default: yesterday, UTC); returns a summary."""
    if users < 1:
        raise ValueError(f"users must be at least 1, got {users}")
    if days < 1:
        raise ValueError(f"days must be at least 1, got {days}")
    output_dir = Path(output_dir)
    last_day = end_day or (dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1))
    day_list = [last_day - dt.timedelta(days=offset) for offset in range(days - 1, -1, -1)]
    source = SyntheticLastfmSource(n_users=users, seed=seed)
    lastfm = output_dir / "lastfm"

    pages = scrobbles = 0
    recent_dir = lastfm / "user.getRecentTracks"
    recent_dir.mkdir(parents=True, exist_ok=True)
    scrobbles_csv = output_dir / "scrobbles.csv"
    with scrobbles_csv.open("w", encoding="utf-8", newline="") as flat:
        flat.write(",".join(SCROBBLE_COLUMNS) + "\n")
        for day in day_list:
            with (recent_dir / f"{day.isoformat()}.jsonl").open("wb") as out:
                for _user, page in source.get_recent_tracks_day(day):
                    out.write(orjson.dumps(page) + b"\n")
                    pages += 1
            frame = source.scrobbles_frame(day)
            frame["played_at"] = frame["played_at"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")
            frame.to_csv(flat, header=False, index=False)
            scrobbles += len(frame)

    with (lastfm / "user.getInfo.jsonl").open("wb") as out:
        for user in source.users:
            out.write(orjson.dumps(source.get_user_info(user)) + b"\n")
    with (lastfm / "artist.getTopTags.jsonl").open("wb") as out:
        for artist in source.artists:
            out.write(orjson.dumps(source.get_artist_top_tags(artist)) + b"\n")
    for tag in source.tags:
        _write_json(lastfm / "tag.getTopTracks" / f"{tag}.json", source.get_tag_top_tracks(tag, limit=TOP_LIMIT))
    _write_json(lastfm / "chart.getTopTracks.json", source.get_chart_top_tracks(limit=TOP_LIMIT))

    kaggle_csv = output_dir / "kaggle" / "dataset.csv"
    kaggle_csv.parent.mkdir(parents=True, exist_ok=True)
    kaggle = kaggle_tracks_frame(source.world)
    kaggle.to_csv(kaggle_csv, index=False, encoding="utf-8")

    world = source.world
    summary: dict[str, object] = {
        "output_dir": str(output_dir),
        "seed": seed,
        "users": len(source.users),
        "artists": world.catalogue.n_artists,
        "tracks": world.catalogue.n_tracks,
        "genres": len(source.tags),
        "days": f"{day_list[0].isoformat()}..{day_list[-1].isoformat()} ({days})",
        "scrobbles": scrobbles,
        "recent_tracks_pages": pages,
        "kaggle_rows": len(kaggle),
        "recent_tracks_dir": str(recent_dir),
        "scrobbles_csv": str(scrobbles_csv),
        "kaggle_csv": str(kaggle_csv),
    }
    _write_json(output_dir / "manifest.json", summary)
    return summary
