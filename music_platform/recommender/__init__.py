"""The recommender, free of Dagster: datasets from the marts, LightFM hybrid and baselines,
evaluation, batch scoring with reasons, similar items, cold start, the publish gate and a
versioned model registry. See docs/recommender.md.

Typical flow (what the ``ml`` assets do)::

    dataset = build_dataset(interactions, tracks, artist_tags)
    train, test = split_holdout(dataset, "random", test_fraction=0.2, seed=0)
    candidate = train_lightfm(train, LightFMParams())
    evaluation = evaluate_models({"lightfm": candidate, "popularity": train_popularity(train)}, train, test)
    decision = should_publish(metrics_dict(evaluation, "lightfm"), metrics_dict(evaluation, "popularity"), None)
    final = train_lightfm(dataset, LightFMParams())           # refit on everything to serve
    recommendations = recommend_top_k(final, dataset, k=10)
    neighbours = similar_items(final, k=10)
"""

from music_platform.recommender.cold_start import ColdStartResult, evaluate_cold_start, recommend_cold_start
from music_platform.recommender.dataset import DatasetError, RecDataset, build_dataset, dataset_stats
from music_platform.recommender.evaluation import (
    evaluate_model,
    evaluate_models,
    metrics_dict,
    with_baseline,
)
from music_platform.recommender.features import FeatureConfig
from music_platform.recommender.gate import GateDecision, should_publish
from music_platform.recommender.lightfm_model import LightFMParams, train_lightfm
from music_platform.recommender.models import (
    MODEL_KINDS,
    ALSParams,
    CooccurrenceParams,
    EaseParams,
    TagSimilarityParams,
    TrainedModel,
    train_als,
    train_cooccurrence,
    train_ease,
    train_popularity,
    train_tag_similarity,
)
from music_platform.recommender.registry import ModelRegistry, ModelVersion, RegistryError
from music_platform.recommender.scoring import popularity_recommendations, recommend_top_k, similar_items
from music_platform.recommender.splits import split_holdout, split_users
from music_platform.recommender.training import BlendParams, blend_models, params_from_dict, train_blend, train_model

__all__ = [
    "MODEL_KINDS",
    "ALSParams",
    "BlendParams",
    "ColdStartResult",
    "CooccurrenceParams",
    "DatasetError",
    "EaseParams",
    "FeatureConfig",
    "GateDecision",
    "LightFMParams",
    "ModelRegistry",
    "ModelVersion",
    "RecDataset",
    "RegistryError",
    "TagSimilarityParams",
    "TrainedModel",
    "blend_models",
    "build_dataset",
    "dataset_stats",
    "evaluate_cold_start",
    "evaluate_model",
    "evaluate_models",
    "metrics_dict",
    "params_from_dict",
    "popularity_recommendations",
    "recommend_cold_start",
    "recommend_top_k",
    "should_publish",
    "similar_items",
    "split_holdout",
    "split_users",
    "train_als",
    "train_blend",
    "train_cooccurrence",
    "train_ease",
    "train_lightfm",
    "train_model",
    "train_popularity",
    "train_tag_similarity",
    "with_baseline",
]
