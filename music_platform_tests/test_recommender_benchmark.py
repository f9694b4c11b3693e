"""The benchmark command on a tiny HetRec-shaped fixture, and one quick run on the real data."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from music_platform.cli import app
from music_platform.recommender import LightFMParams, evaluate_model, split_holdout, train_lightfm, train_popularity
from music_platform.recommender.benchmark import TEST_FRACTION, benchmark_split
from music_platform.recommender.hetrec import leak_free_side_features, load_hetrec_lastfm, load_hetrec_tables
from music_platform_tests.conftest import require_shared_data


def write_hetrec_fixture(folder: Path, n_users: int = 60, n_clusters: int = 3, artists_per_cluster: int = 10) -> Path:
    """A HetRec-shaped folder: users play (and tag) artists of their own cluster."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    n_artists = n_clusters * artists_per_cluster
    artists = ["id\tname\turl\tpictureURL"] + [
        f"{a + 1}\t{'Motörhead' if a == 0 else f'Band {a + 1}'}\thttp://www.last.fm/music/x{a}\thttp://img/{a}.jpg"
        for a in range(n_artists)
    ]
    (folder / "artists.dat").write_text("\n".join(artists) + "\n", encoding="utf-8")
    tags = ["tagID\ttagValue", "1\tmetal", "2\tjazz", "3\tchanson française", "4\tseen live"]
    (folder / "tags.dat").write_bytes(("\n".join(tags) + "\n").encode("latin-1"))
    plays, tagged = ["userID\tartistID\tweight"], ["userID\tartistID\ttagID\tday\tmonth\tyear"]
    for user in range(n_users):
        cluster = user % n_clusters
        pool = np.arange(cluster * artists_per_cluster, (cluster + 1) * artists_per_cluster) + 1
        for artist in rng.choice(pool, size=6, replace=False):
            plays.append(f"{user + 2}\t{artist}\t{int(rng.integers(1, 3000))}")
        tagged.append(f"{user + 2}\t{pool[0]}\t{cluster + 1}\t1\t4\t2009")
        tagged.append(f"{user + 2}\t{pool[1]}\t4\t1\t4\t2009")
    (folder / "user_artists.dat").write_text("\n".join(plays) + "\n", encoding="utf-8")
    (folder / "user_taggedartists.dat").write_text("\n".join(tagged) + "\n", encoding="utf-8")
    return folder


def test_hetrec_loader_reads_both_encodings_and_weights_tags(tmp_path):
    folder = write_hetrec_fixture(tmp_path / "hetrec")
    interactions, tracks, artist_tags = load_hetrec_tables(folder)
    assert len(interactions) == 60 * 6 and interactions["play_count"].min() >= 1
    assert tracks.loc[tracks["track_id"] == "1", "artist_name"].item() == "Motörhead"
    assert "chanson française" in set(artist_tags["tag_name"])
    assert artist_tags.groupby("artist_id")["tag_weight"].max().eq(1.0).all()
    assert tracks.loc[tracks["track_id"] == "1", "genre"].item() == "metal"


def test_benchmark_cli_prints_table_and_writes_json(tmp_path):
    folder = write_hetrec_fixture(tmp_path / "hetrec")
    out = tmp_path / "bench.json"
    result = CliRunner().invoke(
        app,
        [
            "benchmark",
            "--dataset",
            "hetrec-lastfm-2k",
            "--data-dir",
            str(folder),
            "--seeds",
            "1,2",
            "--models",
            "popularity,ease,als,lightfm-ids,lightfm,blend,production,production-norefit",
            "--k",
            "5",
            "--json",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "precision@5" in result.output and "fit s" in result.output
    for model in ("popularity", "ease", "als", "lightfm-ids", "lightfm", "blend"):
        assert f"\n{model} " in result.output
    payload = json.loads(out.read_text())
    assert payload["seeds"] == [1, 2] and payload["k"] == 5
    for entry in payload["models"].values():
        assert set(entry["metrics"]) == {
            "precision@5",
            "recall@5",
            "ndcg@5",
            "map@5",
            "auc",
            "coverage@5",
            "full_list_share@5",
        }
        assert all({"mean", "std"} <= set(stat) for stat in entry["metrics"].values())
        assert entry["metrics"]["ndcg@5"]["stderr"] > 0  # per-user standard error, not the spread over seeds
        assert entry["fit_seconds"]["mean"] >= 0
    models = payload["models"]
    assert payload["production_model"]["name"] == "production" and "production" in models
    assert len(payload["production_model"]["selected_per_seed"]) == 2
    assert set(payload["production_model"]["selected_per_seed"]) <= {"lightfm", "blend"}
    # Paired differences to the production configuration: zero for itself, and present for every model.
    assert models["production"]["paired_difference_to_production"]["ndcg@5"] == {"mean": 0.0, "stderr": 0.0}
    assert "precision@5" in models["popularity"]["paired_difference_to_production"]
    assert models["popularity"]["paired_difference_to_production"]["ndcg@5"]["mean"] < 0
    assert "Δndcg@5 vs production" in result.output
    assert models["ease"]["metrics"]["precision@5"]["mean"] > models["popularity"]["metrics"]["precision@5"]["mean"]


def test_benchmark_names_the_missing_file(tmp_path):
    folder = write_hetrec_fixture(tmp_path / "hetrec")
    (folder / "user_taggedartists.dat").unlink()
    result = CliRunner().invoke(app, ["benchmark", "--data-dir", str(folder), "--seeds", "1"])
    assert result.exit_code == 2
    assert "user_taggedartists.dat" in result.output


def test_benchmark_rejects_unknown_models_and_bad_seeds(tmp_path):
    folder = write_hetrec_fixture(tmp_path / "hetrec")
    result = CliRunner().invoke(app, ["benchmark", "--data-dir", str(folder), "--models", "svd"])
    assert result.exit_code == 2 and "unknown model(s) svd" in result.output
    result = CliRunner().invoke(app, ["benchmark", "--data-dir", str(folder), "--seeds", "one"])
    assert result.exit_code == 2 and "--seeds" in result.output


def test_real_hetrec_lightfm_far_above_popularity():
    folder = require_shared_data("hetrec2011-lastfm-2k")
    dataset = load_hetrec_lastfm(folder)
    assert (dataset.n_users, dataset.n_items, dataset.n_interactions) == (1892, 17632, 92834)
    train, test = split_holdout(dataset, "random", 0.2, seed=0)
    params = LightFMParams(use_item_features=False, early_stopping=False, max_epochs=8)
    lightfm = evaluate_model(train_lightfm(train, params), train, test, compute_auc=False)
    popularity = evaluate_model(train_popularity(train), train, test, compute_auc=False)
    assert popularity["precision@10"] == pytest.approx(0.068, abs=0.01)
    assert lightfm["precision@10"] > 2 * popularity["precision@10"]


def test_benchmark_tag_features_never_see_held_out_pairs(tmp_path):
    """A tag assigned only on held-out (user, artist) pairs must not reach the training features."""
    dataset = load_hetrec_lastfm(write_hetrec_fixture(tmp_path / "hetrec"))
    _, test = split_holdout(dataset, "random", TEST_FRACTION, seed=5)
    held_users = test.user_ids[test.user_idx][:2].astype(str)
    held_artists = test.item_ids[test.item_idx][:2].astype(str)
    secret = pd.DataFrame({"user_id": held_users, "artist_id": held_artists, "tag_name": ["!!! 秘密", "!!! 秘密"]})
    dataset = replace(dataset, tag_assignments=pd.concat([dataset.tag_assignments, secret], ignore_index=True))

    train, test_again = benchmark_split(dataset, seed=5)
    assert test_again.n_interactions == test.n_interactions
    assert "tag:!!! 秘密" not in set(train.item_feature_names)
    assert "genre:!!! 秘密" not in set(train.item_feature_names)
    # The same rebuild with nothing held out does carry the tag: the assertion above can fail.
    nothing_held = test.with_interactions(np.zeros(test.n_interactions, dtype=bool))
    leaky = leak_free_side_features(replace(train, tag_assignments=dataset.tag_assignments), nothing_held)
    assert "tag:!!! 秘密" in set(leaky.item_feature_names)
    # Tags of training pairs stay.
    assert any(name.startswith("tag:") for name in train.item_feature_names)
