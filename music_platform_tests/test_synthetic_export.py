"""``music-platform generate-fake-data`` writes the synthetic world as Last.fm JSON and Kaggle CSV."""

from __future__ import annotations

import datetime as dt
import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from music_platform.cli import app
from music_platform.sources.synthetic import KAGGLE_HEADER, SyntheticLastfmSource, export_fake_data
from music_platform.sources.synthetic.payloads import SCROBBLE_COLUMNS


def test_generate_fake_data_command_writes_json_and_csv(clean_env):
    out = clean_env / "fake"
    result = CliRunner().invoke(
        app, ["generate-fake-data", "--users", "25", "--days", "2", "--seed", "3", "--output-dir", str(out)]
    )
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert f"scrobbles: {manifest['scrobbles']}" in result.output
    assert manifest["users"] == 25 and manifest["artists"] >= 1000 and manifest["genres"] >= 6

    yesterday = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)
    day_files = sorted((out / "lastfm" / "user.getRecentTracks").glob("*.jsonl"))
    assert [f.stem for f in day_files] == [(yesterday - dt.timedelta(days=1)).isoformat(), yesterday.isoformat()]
    pages = [json.loads(line) for f in day_files for line in f.read_text(encoding="utf-8").splitlines()]
    assert len(pages) == manifest["recent_tracks_pages"]
    assert sum(len(p["recenttracks"]["track"]) for p in pages) == manifest["scrobbles"] > 0

    scrobbles = pd.read_csv(out / "scrobbles.csv")
    assert list(scrobbles.columns) == list(SCROBBLE_COLUMNS) and len(scrobbles) == manifest["scrobbles"]
    kaggle = pd.read_csv(out / "kaggle" / "dataset.csv")
    assert list(kaggle.columns) == list(KAGGLE_HEADER) and len(kaggle) == manifest["kaggle_rows"]

    infos = (out / "lastfm" / "user.getInfo.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(infos) == 25 and json.loads(infos[0])["user"]["name"]
    tags = (out / "lastfm" / "artist.getTopTags.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(tags) == manifest["artists"]
    assert len(list((out / "lastfm" / "tag.getTopTracks").glob("*.json"))) == manifest["genres"]
    chart = json.loads((out / "lastfm" / "chart.getTopTracks.json").read_text(encoding="utf-8"))
    assert len(chart["tracks"]["track"]) == 50


def test_default_output_goes_under_the_data_dir(clean_env):
    result = CliRunner().invoke(app, ["generate-fake-data", "--users", "5", "--days", "1"])
    assert result.exit_code == 0, result.output
    assert (clean_env / "data" / "external" / "synthetic" / "manifest.json").exists()


def test_export_is_deterministic_and_matches_the_source(tmp_path):
    day = dt.date(2025, 4, 2)
    first = export_fake_data(tmp_path / "a", users=20, days=3, seed=11, end_day=day)
    second = export_fake_data(tmp_path / "b", users=20, days=3, seed=11, end_day=day)
    for relative in ("scrobbles.csv", "kaggle/dataset.csv", f"lastfm/user.getRecentTracks/{day}.jsonl"):
        assert (tmp_path / "a" / relative).read_bytes() == (tmp_path / "b" / relative).read_bytes()

    def counts(summary):
        return {k: v for k, v in summary.items() if not k.endswith(("dir", "csv"))}

    assert counts(first) == counts(second)
    source = SyntheticLastfmSource(n_users=20, seed=11)
    assert first["scrobbles"] == sum(source.expected_scrobbles(day - dt.timedelta(days=i)) for i in range(3))


def test_export_rejects_empty_sizes(tmp_path):
    with pytest.raises(ValueError, match="days"):
        export_fake_data(tmp_path, users=5, days=0, seed=1)
