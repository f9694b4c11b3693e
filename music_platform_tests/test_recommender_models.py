"""Models on a synthetic world with clear taste clusters: scoring, reasons, similar items,
cold start, evaluation table and the publish gate."""

from __future__ import annotations

import json
import pickle
from dataclasses import asdict, replace

import numpy as np
import pandas as pd
import pytest

from music_platform.recommender import (
    ALSParams,
    BlendParams,
    EaseParams,
    LightFMParams,
    blend_models,
    build_dataset,
    evaluate_models,
    metrics_dict,
    params_from_dict,
    popularity_recommendations,
    recommend_cold_start,
    recommend_top_k,
    should_publish,
    similar_items,
    split_holdout,
    train_als,
    train_ease,
    train_lightfm,
    train_model,
    train_popularity,
    with_baseline,
)
from music_platform.recommender.cold_start import cold_start_split, evaluate_cold_start
from music_platform.recommender.lightfm_model import SINGLE_THREAD_BELOW_INTERACTIONS, refit_params
from music_platform.recommender.models import _standardise_rows
from music_platform.recommender.scoring import best_heard_items
from music_platform.recommender.stable_split import stable_holdout
from music_platform.recommender.synthetic import taste_clusters
from music_platform.recommender.training import ProductionConfig, train_production

FAST_LIGHTFM = LightFMParams(no_components=16, max_epochs=20, eval_every=5, patience=2, random_state=7)


@pytest.fixture(scope="module")
def world():
    return taste_clusters(n_users=160, n_clusters=4, unplayed_tracks_per_cluster=3, seed=11)


@pytest.fixture(scope="module")
def dataset(world):
    return build_dataset(world.interactions, world.tracks, world.artist_tags)


@pytest.fixture(scope="module")
def clusters(world):
    return world.cluster_of_track()


@pytest.fixture(scope="module")
def models(dataset):
    lightfm = train_lightfm(dataset, FAST_LIGHTFM)
    ease = train_ease(dataset, EaseParams(l2=10.0))
    return {
        "popularity": train_popularity(dataset),
        "lightfm": lightfm,
        "ease": ease,
        "als": train_als(dataset, ALSParams(factors=8, iterations=10)),
        "blend": blend_models({"lightfm": lightfm, "ease": ease}, {"lightfm": 0.5, "ease": 0.5}),
    }


def user_cluster(user_id: str) -> int:
    return int(user_id[1:]) % 4


@pytest.mark.parametrize("kind", ["lightfm", "ease", "als", "blend"])
def test_recommendations_exclude_heard_and_follow_the_users_cluster(models, dataset, clusters, kind):
    recs = recommend_top_k(models[kind], dataset, k=5, batch_size=37)
    assert list(recs.columns) == ["user_id", "rank", "track_id", "score", "reason"]
    heard = set(zip(dataset.user_ids[dataset.user_idx], dataset.item_ids[dataset.item_idx], strict=True))
    assert not any((u, t) in heard for u, t in zip(recs["user_id"], recs["track_id"], strict=True))
    same_cluster = np.mean(
        [clusters[t] == user_cluster(u) for u, t in zip(recs["user_id"], recs["track_id"], strict=True)]
    )
    assert same_cluster > 0.9
    assert recs.groupby("user_id")["rank"].apply(lambda r: list(r) == list(range(1, len(r) + 1))).all()
    assert (recs.groupby("user_id")["score"].apply(lambda s: s.is_monotonic_decreasing)).all()


def test_batched_scoring_matches_a_brute_force_reference(models, dataset):
    model = models["lightfm"]
    recs = recommend_top_k(model, dataset, k=7, batch_size=16, with_reasons=False)
    scorer = model.scorer
    full = scorer.user_vectors @ scorer.item_embeddings.T + scorer.item_bias
    full[dataset.interactions.toarray() > 0] = -np.inf
    for row in [0, 5, 77, 159]:
        expected = dataset.item_ids[np.argsort(-full[row], kind="stable")[:7]]
        got = recs[recs["user_id"] == dataset.user_ids[row]]["track_id"].to_numpy()
        assert list(got) == list(expected)


def test_reasons_cite_a_heard_item_of_the_same_cluster(models, dataset, clusters):
    recs = recommend_top_k(models["ease"], dataset, k=5, users=["u0", "u1", "u2"])
    assert set(recs["user_id"]) == {"u0", "u1", "u2"}
    cited = recs[recs["reason"].str.startswith("because you play ")]
    assert len(cited) > 0.8 * len(recs)
    by_name = {f"{r.track_name} by {r.artist_name}": r.track_id for r in models["ease"].catalog.itertuples()}
    for user, reason in zip(cited["user_id"], cited["reason"], strict=True):
        heard_track = by_name[reason.removeprefix("because you play ")]
        assert clusters[heard_track] == user_cluster(user)
        u, i = dataset.user_index[user], dataset.item_index[heard_track]
        assert dataset.interactions[u, i] == 1  # the cited item really is one the user played


def test_popularity_reasons_name_the_genre(models, dataset):
    recs = recommend_top_k(models["popularity"], dataset, k=3, users=["u3"])
    assert recs["reason"].str.match(r"popular in \w[\w-]* among listeners like you").all()


def test_best_heard_item_is_the_argmax_of_affinity(models, dataset):
    scorer = models["lightfm"].scorer
    history = dataset.play_counts[:10]
    candidates = np.arange(30).reshape(10, 3)
    best, value = best_heard_items(scorer, history, candidates, max_pairs=7)  # tiny chunks on purpose
    unit = scorer.item_embeddings / np.linalg.norm(scorer.item_embeddings, axis=1, keepdims=True)
    for row in range(10):
        heard = history[row].indices
        cosines = unit[heard] @ unit[candidates[row]].T
        assert np.array_equal(best[row], heard[np.argmax(cosines, axis=0)])
        assert np.allclose(value[row], cosines.max(axis=0), atol=1e-5)


@pytest.mark.parametrize("kind", ["lightfm", "ease", "als"])
def test_similar_items_share_the_cluster(models, clusters, kind):
    table = similar_items(models[kind], k=5)
    assert list(table.columns) == ["track_id", "rank", "similar_track_id", "score"]
    assert (table["track_id"] != table["similar_track_id"]).all()
    agreement = np.mean(
        [clusters[a] == clusters[b] for a, b in zip(table["track_id"], table["similar_track_id"], strict=True)]
    )
    assert agreement > 0.9


def test_unplayed_tracks_get_neighbours_through_their_features(models, clusters):
    table = similar_items(models["lightfm"], k=5, items=["new2_0"])
    assert len(table) == 5
    assert all(clusters[t] == 2 for t in table["similar_track_id"])


@pytest.mark.parametrize("kind", ["lightfm", "ease", "blend", "als"])
def test_cold_start_recommends_the_named_artists_cluster(models, clusters, kind):
    result = recommend_cold_start(
        models[kind], artists=["Artist 1-0", "artist 1-3 ", "Nobody Known"], tracks=["Song 1-2-1", "No Such Song"], k=8
    )
    assert result.unknown_artists == ["Nobody Known"] and result.unknown_tracks == ["No Such Song"]
    assert result.matched_artists == ["Artist 1-0", "artist 1-3 "] and not result.fallback
    recs = result.recommendations
    assert len(recs) == 8
    assert all(clusters[t] == 1 for t in recs["track_id"])
    assert "t1_2_1" not in set(recs["track_id"])  # named tracks are not recommended back
    assert recs["reason"].str.startswith(("because you like ", "popular in ")).all()


def test_cold_start_with_nothing_known_falls_back_to_popularity(models):
    result = recommend_cold_start(models["lightfm"], artists=["Nobody"], tracks=[], k=4)
    assert result.fallback and result.unknown_artists == ["Nobody"]
    expected = popularity_recommendations(models["lightfm"], k=4)["track_id"].tolist()
    assert result.recommendations["track_id"].tolist() == expected


def test_cold_start_protocol_beats_popularity(dataset):
    kept, named, rest = cold_start_split(dataset, fraction=0.2, n_named=5, seed=0)
    assert named.shape[0] > 0 and (np.diff(named.indptr) == 5).all()
    popularity = evaluate_cold_start(train_popularity(kept), named, rest, k=5)
    ease = evaluate_cold_start(train_ease(kept, EaseParams(l2=10.0)), named, rest, k=5)
    assert ease["precision@5"] > 1.5 * popularity["precision@5"]


def test_unknown_users_are_folded_in_from_history(models, dataset):
    """A dataset newer than the model: a new listener is scored from what they played."""
    extra = pd.DataFrame(
        {"user_id": ["newbie"] * 4, "track_id": ["t3_0_0", "t3_1_0", "t3_2_1", "t3_4_2"], "play_count": [5, 3, 2, 1]}
    )
    newer = build_dataset(extra, models["lightfm"].catalog)
    for kind in ("lightfm", "ease", "als"):
        recs = recommend_top_k(models[kind], newer, k=5)
        assert len(recs) == 5 and all(t.startswith("t3_") or t.startswith("new3_") for t in recs["track_id"])


def test_evaluation_table_and_gate(models, dataset):
    train, test = split_holdout(dataset, "random", 0.25, seed=2)
    fitted = {
        "popularity": train_popularity(train),
        "lightfm": train_lightfm(train, FAST_LIGHTFM),
        "ease": train_model("ease", train, EaseParams(l2=10.0)),
    }
    table = evaluate_models(fitted, train, test, k=5)
    assert set(table["metric"]) == {"precision", "recall", "ndcg", "map", "auc", "coverage", "full_list_share"}
    assert table.loc[table["metric"] == "auc", "k"].isna().all()
    lightfm, popularity = metrics_dict(table, "lightfm"), metrics_dict(table, "popularity")
    assert lightfm["precision@5"] > 2 * popularity["precision@5"]
    assert lightfm["auc"] > popularity["auc"] and 0.5 < lightfm["auc"] <= 1.0
    assert popularity["coverage@5"] < lightfm["coverage@5"]
    rows = with_baseline(table, "lightfm")
    assert list(rows.columns) == ["metric", "k", "value", "baseline_value"] and rows["baseline_value"].notna().all()

    ok, reason = should_publish(lightfm, popularity, published_metrics=None, metric="precision@5")
    assert ok and "beats popularity" in reason
    ok, reason = should_publish(popularity, popularity, metric="precision@5")
    assert not ok and "does not beat the popularity baseline" in reason
    better_published = {"precision@5": lightfm["precision@5"] * 1.10}
    ok, reason = should_publish(lightfm, popularity, better_published, tolerance=0.05, metric="precision@5")
    assert not ok and "regresses the published model" in reason
    slightly_better_published = {"precision@5": lightfm["precision@5"] * 1.01}
    assert should_publish(lightfm, popularity, slightly_better_published, tolerance=0.05, metric="precision@5").publish
    with pytest.raises(KeyError, match="precision@10"):
        should_publish({"auc": 0.9}, popularity)

    # Standard errors come with every ranking metric; the gate widens its margin to the noise.
    stderr = metrics_dict(table, "lightfm", "stderr")
    assert 0 < stderr["precision@5"] < lightfm["precision@5"]
    per_user_bound = np.sqrt(lightfm["precision@5"] * (1 - lightfm["precision@5"]) / (table["users"].max() - 1))
    assert stderr["precision@5"] <= per_user_bound + 1e-12  # a mean of values in [0, 1]
    noisy_published = {"precision@5": lightfm["precision@5"] * 1.10}
    ok, reason = should_publish(
        lightfm,
        popularity,
        noisy_published,
        tolerance=0.05,
        metric="precision@5",
        candidate_stderr=lightfm["precision@5"] * 0.05,
        published_stderr=lightfm["precision@5"] * 0.05,
    )
    assert ok and "standard errors" in reason  # a 10% gap within 2 x 7.1% noise is not evidence
    ok, reason = should_publish(
        lightfm,
        popularity,
        {"precision@5": lightfm["precision@5"] * 1.30},
        tolerance=0.05,
        metric="precision@5",
        candidate_stderr=lightfm["precision@5"] * 0.05,
        published_stderr=lightfm["precision@5"] * 0.05,
    )
    assert not ok and "regresses the published model" in reason and "standard errors" in reason


@pytest.mark.parametrize("kind", ["lightfm", "ease", "als", "blend", "popularity"])
def test_params_round_trip_through_the_registry_form(kind):
    params = {
        "lightfm": LightFMParams(no_components=8, max_sampled=12),
        "ease": EaseParams(l2=7.0),
        "als": ALSParams(factors=5),
        "blend": BlendParams(
            weights={"lightfm": 0.6, "als": 0.4},
            als=ALSParams(factors=5),
            cold_start_weights={"lightfm": 0.5, "als": 0.5, "popularity": 0.1},
        ),
        "popularity": None,
    }[kind]
    stored = json.loads(json.dumps({"kind": kind, **(asdict(params) if params else {})}))
    assert params_from_dict(kind, stored) == params
    with pytest.raises(ValueError, match="unknown model kind"):
        params_from_dict("svd", {})


def test_blend_cold_start_weights_apply_to_folded_in_listeners_only(models, dataset):
    parts = {"lightfm": models["lightfm"], "ease": models["ease"], "als": models["als"]}
    warm_only = blend_models(parts, {"lightfm": 0.5, "ease": 0.5})
    cold = {"lightfm": 0.4, "als": 0.6, "popularity": 0.2}
    mixed = blend_models(parts, {"lightfm": 0.5, "ease": 0.5}, cold)
    assert mixed.params["cold_start_weights"] == cold
    history = dataset.play_counts[:6]
    users = np.array([0, 1, 2, -1, -1, -1])
    got = mixed.scorer.score(users, history)
    # Known listeners: the warm mix, untouched by the cold-start weights (ALS has warm weight 0).
    np.testing.assert_allclose(got[:3], warm_only.scorer.score(users[:3], history[:3]), rtol=1e-5, atol=1e-5)
    # Folded-in listeners: the cold mix of the same standardised component scores, plus the prior.
    unknown, rows = users[3:], history[3:]
    prior = np.log1p(models["lightfm"].item_popularity.astype(np.float32))
    expected = (
        0.4 * _standardise_rows(models["lightfm"].scorer.score(unknown, rows))
        + 0.6 * _standardise_rows(models["als"].scorer.score(unknown, rows))
        + 0.2 * ((prior - prior.mean()) / prior.std())[None, :]
    )
    np.testing.assert_allclose(got[3:], expected, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="cold_start_weights"):
        BlendParams(cold_start_weights={"popularity": 1.0})


def test_blend_warm_popularity_weight_penalises_popular_items_for_known_listeners(models, dataset):
    parts = {"lightfm": models["lightfm"], "ease": models["ease"]}
    plain = blend_models(parts, {"lightfm": 0.5, "ease": 0.5})
    penalised = blend_models(parts, {"lightfm": 0.5, "ease": 0.5, "popularity": -0.3})
    assert penalised.params["weights"]["popularity"] == -0.3
    history = dataset.play_counts[:3]
    users = np.array([0, 1, 2])
    prior = np.log1p(models["lightfm"].item_popularity.astype(np.float32))
    expected = plain.scorer.score(users, history) - 0.3 * ((prior - prior.mean()) / prior.std())[None, :]
    np.testing.assert_allclose(penalised.scorer.score(users, history), expected, rtol=1e-4, atol=1e-4)
    # The default blend carries the tuned penalty; model weights stay non-negative.
    assert BlendParams().weights["popularity"] < 0
    with pytest.raises(ValueError, match="blend weights"):
        BlendParams(weights={"lightfm": -0.1, "ease": 1.0})
    with pytest.raises(ValueError, match="blend weights"):
        BlendParams(weights={"popularity": -0.2})
    with pytest.raises(ValueError, match="finite"):
        BlendParams(weights={"lightfm": 1.0, "popularity": float("nan")})
    # A blend pickled before the warm prior existed scores as before (no prior_weight attribute).
    old = pickle.loads(pickle.dumps(plain))
    del old.scorer.__dict__["prior_weight"]
    np.testing.assert_allclose(old.scorer.score(users, history), plain.scorer.score(users, history))


def test_models_survive_pickling(models, dataset):
    for kind in ("lightfm", "blend", "ease"):
        clone = pickle.loads(pickle.dumps(models[kind]))
        a = recommend_top_k(models[kind], dataset, k=5, users=["u9"])
        b = recommend_top_k(clone, dataset, k=5, users=["u9"])
        pd.testing.assert_frame_equal(a, b)


def test_lightfm_time_budget_stops_the_epoch_search_and_keeps_the_best_epoch_seen(dataset):
    unbounded = train_lightfm(dataset, replace(FAST_LIGHTFM, refit_on_full=False))
    assert unbounded.training_info["stopped_by"] in ("early_stopping", "max_epochs")
    assert unbounded.training_info["epochs_trained"] >= unbounded.training_info["epochs"] > 1

    # A budget that is over after the first epoch: that epoch is validated, then training stops.
    budgeted = train_lightfm(dataset, replace(FAST_LIGHTFM, refit_on_full=False, time_budget_seconds=1e-9))
    info = budgeted.training_info
    assert info["stopped_by"] == "time_budget"
    assert info["epochs"] == info["best_epoch"] == info["epochs_trained"] == 1
    assert [epoch for epoch, _ in info["validation_curve"]] == [1]
    assert budgeted.params["time_budget_seconds"] == 1e-9
    scores = budgeted.scorer.score(np.arange(3), dataset.interactions[:3])
    assert np.isfinite(scores).all()


def test_lightfm_time_budget_without_early_stopping_trains_whole_epochs_until_it_is_spent(dataset):
    params = replace(FAST_LIGHTFM, early_stopping=False, max_epochs=5, time_budget_seconds=1e-9)
    model = train_lightfm(dataset, params)
    assert model.training_info["stopped_by"] == "time_budget" and model.training_info["epochs"] == 1

    complete = train_lightfm(dataset, replace(params, time_budget_seconds=None))
    assert complete.training_info["stopped_by"] == "max_epochs" and complete.training_info["epochs"] == 5


def test_lightfm_on_small_data_trains_one_thread_so_the_same_data_gives_the_same_model(dataset):
    assert dataset.interactions.nnz < SINGLE_THREAD_BELOW_INTERACTIONS
    params = replace(FAST_LIGHTFM, num_threads=2)
    first, second = train_lightfm(dataset, params), train_lightfm(dataset, params)
    assert first.params["num_threads"] == 1  # what trained is what the model records
    users = np.arange(dataset.n_users)
    np.testing.assert_array_equal(
        first.scorer.score(users, dataset.interactions), second.scorer.score(users, dataset.interactions)
    )


@pytest.mark.parametrize("budget", [0.0, -5.0])
def test_lightfm_time_budget_must_be_positive(budget):
    with pytest.raises(ValueError, match="time_budget_seconds"):
        LightFMParams(time_budget_seconds=budget)


def test_the_refit_on_all_data_is_not_cut_by_the_budget(dataset):
    searched = train_lightfm(dataset, replace(FAST_LIGHTFM, refit_on_full=False, time_budget_seconds=60.0))
    refit = refit_params(replace(FAST_LIGHTFM, time_budget_seconds=60.0), searched)
    assert refit.time_budget_seconds is None and not refit.early_stopping
    assert refit.max_epochs == searched.training_info["epochs"]


def test_production_selects_on_the_hold_out_and_refits_the_winner(dataset):
    config = ProductionConfig(max_epochs=4, no_components=8)
    selection, holdout_model, served = train_production(dataset, config)
    assert set(selection.metrics) == {"lightfm", "blend"}
    best = max(m["ndcg@10"] for m in selection.metrics.values())
    assert selection.metrics[selection.winner]["ndcg@10"] == best
    assert holdout_model is selection.models[selection.winner] and served.kind == selection.winner
    # The served model is refitted on every interaction; its twin never saw the hold-out.
    train, _ = stable_holdout(dataset, config.test_fraction)
    assert selection.refit["done"] and served is not holdout_model
    assert served.item_popularity.sum() == dataset.n_interactions > holdout_model.item_popularity.sum()
    assert holdout_model.item_popularity.sum() == train.n_interactions
    summary = selection.summary()
    assert summary["winner"] == selection.winner and set(summary["candidates"]) == {"lightfm", "blend"}
    # The refit estimate comes from CPU seconds over the cores (a busy machine's wall time does
    # not decide it), never above the wall-time estimate.
    assert set(selection.fit_cpu_seconds) == {"lightfm", "blend"}
    assert selection.fit_cpu_seconds["blend"] >= selection.fit_cpu_seconds["lightfm"] > 0
    ratio = dataset.n_interactions / train.n_interactions
    assert selection.refit["expected_seconds"] <= holdout_model.fit_seconds * ratio + 1e-9
    # A refit expected to exceed its budget is skipped, and the record says why.
    skipped, twin, same = train_production(dataset, replace(config, refit_max_seconds=1e-9))
    assert same is twin and not skipped.refit["done"] and "refit_max_seconds" in skipped.refit["reason"]


@pytest.mark.parametrize("prior", [-5.0, 0.5])
def test_the_blend_keeps_its_popularity_prior_only_where_the_selection_split_says_it_helps(dataset, prior):
    """The prior's weight was tuned on HetRec; on other data the selection split decides whether
    the blend keeps it (both variants from the same fitted components), and records why."""
    from music_platform.recommender.evaluation import evaluate_model
    from music_platform.recommender.training import _blend_with_or_without_prior

    train, test = stable_holdout(dataset, 0.2)
    components = {"lightfm": train_lightfm(train, FAST_LIGHTFM), "ease": train_ease(train, EaseParams(l2=10.0))}
    params = BlendParams(weights={"lightfm": 0.5, "ease": 0.5, "popularity": prior}, cold_start_weights=None)
    chosen, chosen_metrics = _blend_with_or_without_prior(components, params, train, test, "ndcg@10", 10)

    with_prior = evaluate_model(blend_models(components, params.weights), train, test, k=10, compute_auc=False)
    without = evaluate_model(
        blend_models(components, {"lightfm": 0.5, "ease": 0.5}), train, test, k=10, compute_auc=False
    )
    keeps = with_prior["ndcg@10"] >= without["ndcg@10"]
    assert chosen.params["weights"].get("popularity", 0.0) == (prior if keeps else 0.0)
    assert chosen_metrics["ndcg@10"] == pytest.approx(max(with_prior["ndcg@10"], without["ndcg@10"]))
    record = chosen.training_info["popularity_prior"]
    assert record["ndcg@10 with prior"] == pytest.approx(with_prior["ndcg@10"], abs=1e-6)
    assert record["ndcg@10 without prior"] == pytest.approx(without["ndcg@10"], abs=1e-6)
    # the refit keeps the choice
    assert params_from_dict("blend", chosen.params).weights == chosen.params["weights"]


# ---------------------------------------------------------------------------------------
# Top-artist co-occurrence: the cold-start component trained for five named favourites
# ---------------------------------------------------------------------------------------
def test_top_items_per_user_keeps_the_most_played_with_ties_to_the_lower_item():
    import scipy.sparse as sp

    from music_platform.recommender.models import top_items_per_user

    counts = sp.csr_matrix(np.array([[5, 0, 9, 9], [1, 1, 0, 0], [0, 0, 0, 0]], dtype=np.float32))
    top = top_items_per_user(counts, 2).toarray()
    np.testing.assert_array_equal(top, [[0, 0, 1, 1], [1, 1, 0, 0], [0, 0, 0, 0]])
    np.testing.assert_array_equal(top_items_per_user(counts, 1).toarray(), [[0, 0, 1, 0], [1, 0, 0, 0], [0, 0, 0, 0]])


def test_cooccurrence_weights_follow_their_definition_on_a_tiny_matrix():
    """w[i, j] = (T[i, j] + s·C[i, j]) / (t[i] + s·n[i]) / n[j]**e, counted by hand."""
    import scipy.sparse as sp

    from music_platform.recommender.models import CooccurrenceParams, cooccurrence_weights, top_items_per_user

    plays = np.array([[9, 1, 0, 1], [1, 9, 2, 0], [8, 0, 3, 0], [0, 0, 4, 1]], dtype=np.float32)
    counts = sp.csr_matrix(plays)
    params = CooccurrenceParams(top_k=1, smoothing=0.5, popularity_exponent=0.5)
    got = cooccurrence_weights(counts, top_items_per_user(counts, 1), params).toarray()
    # favourites (top 1): user0 → 0, user1 → 1, user2 → 0, user3 → 2
    library = plays > 0
    favourite = np.zeros_like(library)
    favourite[[0, 1, 2, 3], [0, 1, 0, 2]] = True
    expected = np.zeros((4, 4))
    for i in range(4):
        for j in range(4):
            if i == j:
                continue
            together = float((library[:, i] & library[:, j]).sum())
            favoured = float((favourite[:, i] & library[:, j]).sum())
            expected[i, j] = (favoured + 0.5 * together) / (favourite[:, i].sum() + 0.5 * library[:, i].sum())
            expected[i, j] /= library[:, j].sum() ** 0.5
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    # e.g. item 0 is the favourite of users 0 and 2, both also play item 2 or 1 and 3:
    assert got[0, 2] == pytest.approx((1 + 0.5 * 2) / (2 + 0.5 * 3) / 3**0.5)
    # Only each source's strongest targets are kept.
    top1 = cooccurrence_weights(counts, top_items_per_user(counts, 1), replace(params, top_neighbours=1)).toarray()
    assert ((top1 > 0).sum(axis=1) <= 1).all()
    np.testing.assert_allclose(top1.max(axis=1), expected.max(axis=1), rtol=1e-6)


def test_cooccurrence_covers_the_most_listened_items_and_ranks_favourites_over_the_whole_library(dataset):
    from music_platform.recommender.models import CooccurrenceParams, train_cooccurrence

    model = train_cooccurrence(dataset, CooccurrenceParams(max_items=20, block_items=7))
    covered = model.scorer.active_items
    assert len(covered) == 20 == model.training_info["active_items"]
    assert dataset.item_user_counts[covered].min() >= np.sort(dataset.item_user_counts)[-20]
    weights = model.scorer.weights.toarray()
    assert (weights >= 0).all() and (np.diag(weights) == 0).all()
    # Blocks of sources change nothing.
    whole = train_cooccurrence(dataset, CooccurrenceParams(max_items=20, block_items=10_000)).scorer.weights
    np.testing.assert_allclose(weights, whole.toarray(), rtol=1e-6)


def test_the_cold_start_mix_uses_the_cooccurrence_and_warm_listeners_never_see_it(models, dataset, clusters):
    from music_platform.recommender.models import CooccurrenceParams, train_cooccurrence

    cooc = train_cooccurrence(dataset, CooccurrenceParams())
    parts = {"lightfm": models["lightfm"], "als": models["als"], "cooccurrence": cooc}
    warm = {"lightfm": 0.9, "als": 0.1}
    cold = {"lightfm": 0.8, "als": 0.1, "cooccurrence": 0.1}
    mixed = blend_models(parts, warm, cold)
    without = blend_models({"lightfm": models["lightfm"], "als": models["als"]}, warm, {"lightfm": 0.9, "als": 0.1})
    history = dataset.play_counts[:6]
    users = np.array([0, 1, 2, -1, -1, -1])
    got = mixed.scorer.score(users, history)
    # Known listeners: exactly the blend without the component.
    np.testing.assert_allclose(got[:3], without.scorer.score(users[:3], history[:3]), rtol=1e-5, atol=1e-5)
    unknown, rows = users[3:], history[3:]
    expected = (
        0.8 * _standardise_rows(models["lightfm"].scorer.score(unknown, rows))
        + 0.1 * _standardise_rows(models["als"].scorer.score(unknown, rows))
        + 0.1 * _standardise_rows(cooc.scorer.raw_score(unknown, rows))
    )
    np.testing.assert_allclose(got[3:], expected, rtol=1e-4, atol=1e-4)
    # The artefact carries the component: a pickled model scores new listeners alike.
    np.testing.assert_allclose(pickle.loads(pickle.dumps(mixed)).scorer.score(users, history), got, rtol=1e-6)
    # The cold-start answer goes through the same scorer: with the co-occurrence alone for new
    # listeners it is the co-occurrence's own ranking, in the named artists' cluster.
    alone = blend_models(parts, warm, {"cooccurrence": 1.0})
    result = recommend_cold_start(alone, artists=["Artist 2-0", "Artist 2-1"], k=5)
    import scipy.sparse as sp

    from music_platform.recommender.cold_start import _seed_positions

    seeds = _seed_positions(alone, ["Artist 2-0", "Artist 2-1"], [], 10)[0]
    history = np.zeros((1, alone.n_items), dtype=np.float32)
    history[0, seeds] = 1.0
    own = cooc.scorer.raw_score(np.array([-1]), sp.csr_matrix(history))[0]
    own[seeds] = -np.inf
    assert set(result.recommendations["track_id"]) == set(cooc.item_ids[np.argsort(-own, kind="stable")[:5]])
    assert all(clusters[t] == 2 for t in result.recommendations["track_id"])


def test_the_default_blend_trains_the_cooccurrence_for_its_cold_start_mix_only():
    params = BlendParams()
    assert "cooccurrence" in params.components()
    assert params.weights.get("cooccurrence", 0.0) == 0.0 < params.cold_start_weights["cooccurrence"]
    stored = json.loads(json.dumps(asdict(params)))
    assert params_from_dict("blend", stored) == params
    # A version recorded before the component existed keeps its own cold-start mix and trains none.
    old = params_from_dict("blend", {**stored, "cold_start_weights": {"lightfm": 0.9, "als": 0.1}})
    assert "cooccurrence" not in old.components()


def test_another_cold_start_mix_on_the_same_components_leaves_known_listeners_alone(models, dataset):
    from music_platform.recommender.models import train_cooccurrence
    from music_platform.recommender.training import with_cold_start_weights

    parts = {"lightfm": models["lightfm"], "als": models["als"], "cooccurrence": train_cooccurrence(dataset)}
    served = blend_models(parts, {"lightfm": 0.9, "als": 0.1}, {"lightfm": 0.8, "als": 0.1, "cooccurrence": 0.1})
    previous = with_cold_start_weights(served, {"lightfm": 0.9, "als": 0.1})
    reference = blend_models(parts, {"lightfm": 0.9, "als": 0.1}, {"lightfm": 0.9, "als": 0.1})
    history = dataset.play_counts[:4]
    users = np.array([0, 1, -1, -1])
    np.testing.assert_allclose(
        previous.scorer.score(users, history), reference.scorer.score(users, history), rtol=1e-5, atol=1e-5
    )
    assert not np.allclose(served.scorer.score(users, history)[2:], previous.scorer.score(users, history)[2:])
    np.testing.assert_allclose(served.scorer.score(users, history)[:2], previous.scorer.score(users, history)[:2])
    assert previous.params["cold_start_weights"] == {"lightfm": 0.9, "als": 0.1}
    with pytest.raises(ValueError, match="do not fit"):
        with_cold_start_weights(served, {"ease": 1.0})


def test_cooccurrence_of_an_empty_catalogue_is_empty():
    import scipy.sparse as sp

    from music_platform.recommender.models import CooccurrenceParams, cooccurrence_weights

    empty = sp.csr_matrix((3, 0), dtype=np.float32)
    assert cooccurrence_weights(empty, empty, CooccurrenceParams()).shape == (0, 0)


# ---------------------------------------------------------------------------------------
# Cold start round three: LightFM's softmax fold-in and tag similarity
# ---------------------------------------------------------------------------------------
def _log_likelihood(scorer, vectors, history) -> np.ndarray:
    """Mean log softmax probability of each row's played items under ``vectors``."""
    logits = vectors.astype(np.float64) @ scorer.item_embeddings.T.astype(np.float64) + scorer.item_bias[None, :]
    logits -= logits.max(axis=1, keepdims=True)
    log_prob = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    return np.array([log_prob[r, history[r].indices].mean() for r in range(history.shape[0])])


def test_lightfm_folds_a_new_listener_in_by_the_softmax_likelihood_of_the_named_items(models, dataset):
    import scipy.sparse as sp

    scorer = models["lightfm"].scorer
    assert scorer.fold_in == "softmax"  # what the LightFM hybrid (and the blend's part) serves
    mean = replace(scorer, fold_in="mean")
    history = sp.csr_matrix(dataset.play_counts[:8])
    users = np.full(8, -1)
    softmax_vectors = scorer.user_batch_vectors(users, history)
    mean_vectors = mean.user_batch_vectors(users, history)
    # It starts at the mean fold-in and climbs the named items' likelihood from there.
    assert not np.allclose(softmax_vectors, mean_vectors)
    assert (_log_likelihood(scorer, softmax_vectors, history) > _log_likelihood(scorer, mean_vectors, history)).all()
    # No steps: the mean fold-in itself.
    np.testing.assert_allclose(replace(scorer, fold_in_steps=0).user_batch_vectors(users, history), mean_vectors)
    # No history, no vector (the caller answers with popularity); known listeners keep theirs.
    empty = sp.csr_matrix((2, dataset.n_items), dtype=np.float32)
    assert not scorer.user_batch_vectors(np.array([-1, -1]), empty).any()
    np.testing.assert_array_equal(scorer.user_batch_vectors(np.array([3]), history[:1])[0], scorer.user_vectors[3])
    # A version pickled before the softmax fold-in existed has neither field and keeps the mean.
    old = replace(scorer, fold_in="mean")
    del old.__dict__["fold_in_l2"], old.__dict__["fold_in_steps"]
    np.testing.assert_allclose(pickle.loads(pickle.dumps(old)).user_batch_vectors(users, history), mean_vectors)


def test_tag_similarity_is_the_tfidf_cosine_of_the_named_items_tag_profiles(dataset, clusters):
    import scipy.sparse as sp

    from music_platform.recommender.models import train_tag_similarity

    model = train_tag_similarity(dataset)
    tags = model.scorer.tags.toarray()
    names = dataset.item_feature_names.astype(str)
    assert model.training_info["tags"] == int(np.char.startswith(names, "tag:").sum()) > 0
    # By hand: tf-idf of the tag columns, unit rows, cosine summed over the named items.
    raw = dataset.item_features.toarray()[:, np.char.startswith(names, "tag:")]
    idf = np.log((1.0 + raw.shape[0]) / (1.0 + (raw > 0).sum(axis=0)))
    weighted = raw * idf[None, :]
    unit = weighted / np.linalg.norm(weighted, axis=1, keepdims=True)
    np.testing.assert_allclose(tags, unit, rtol=1e-5, atol=1e-6)
    named = [0, 5]
    history = sp.csr_matrix((np.array([3.0, 1.0], np.float32), ([0, 0], named)), shape=(1, dataset.n_items))
    got = model.scorer.score(np.array([-1]), history)[0]
    np.testing.assert_allclose(got, unit[named].sum(axis=0) @ unit.T, rtol=1e-5, atol=1e-6)
    # Reasons: the cosine of the two items' profiles.
    affinity = model.scorer.affinity(np.array([0]), np.array([[1, 2, -1]]))
    np.testing.assert_allclose(affinity[0, :2], unit[0] @ unit[[1, 2]].T, rtol=1e-5, atol=1e-6)
    assert affinity[0, 2] == -np.inf
    # The synthetic artists share their cluster's genre tag: the best-scored items are in its cluster.
    item = next(i for i in range(dataset.n_items) if clusters[dataset.item_ids[i]] == 1)
    one = sp.csr_matrix((np.ones(1, np.float32), ([0], [item])), shape=(1, dataset.n_items))
    scores = model.scorer.score(np.array([-1]), one)[0]
    scores[item] = -np.inf
    assert all(clusters[t] == 1 for t in dataset.item_ids[np.argsort(-scores)[:5]])


def test_the_default_cold_start_mix_folds_in_tag_similarity_and_warm_listeners_never_see_it(models, dataset):
    from music_platform.recommender.models import train_cooccurrence, train_tag_similarity

    params = BlendParams()
    assert params.cold_start_weights == {"lightfm": 0.8, "als": 0.15, "cooccurrence": 0.1, "tags": 0.05}
    assert "tags" in params.components() and params.weights.get("tags", 0.0) == 0.0
    stored = json.loads(json.dumps(asdict(params)))
    assert params_from_dict("blend", stored) == params
    tags = train_tag_similarity(dataset, params.tags)
    parts = {"lightfm": models["lightfm"], "als": models["als"], "cooccurrence": train_cooccurrence(dataset)}
    mixed = blend_models({**parts, "tags": tags}, {"lightfm": 0.9, "als": 0.1}, params.cold_start_weights)
    without = blend_models(parts, {"lightfm": 0.9, "als": 0.1}, {"lightfm": 0.8, "als": 0.15, "cooccurrence": 0.1})
    history = dataset.play_counts[:6]
    users = np.array([0, 1, 2, -1, -1, -1])
    got = mixed.scorer.score(users, history)
    np.testing.assert_allclose(got[:3], without.scorer.score(users[:3], history[:3]), rtol=1e-5, atol=1e-5)
    extra = 0.05 * _standardise_rows(tags.scorer.score(users[3:], history[3:]))
    np.testing.assert_allclose(got[3:], without.scorer.score(users[3:], history[3:]) + extra, rtol=1e-4, atol=1e-4)
    result = recommend_cold_start(mixed, artists=["Artist 2-0", "Artist 2-1"], k=5)
    assert not result.fallback and len(result.recommendations) == 5
