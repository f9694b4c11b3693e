"""Recommender assets (schema ``ml``): training data, the LightFM model, its evaluation and gate,
the per-user recommendations, similar tracks, and the published-version registry.

The logic lives in ``music_platform.recommender`` (free of Dagster); these assets move data
between the warehouse, the model registry on disk and that package.

Publishing (``music_platform.recommender.publication``): each recommendations step writes a
new publication (rows under a fresh ``publication_id``, never rewriting a published one);
``ml/model_registry`` copies the display fields from the marts beside them, checks the whole
snapshot and then switches the pointer in ``ml.model_registry`` in one atomic write. The
service serves only what that pointer names, so a crash at any point leaves the previous
publication live. The gate (a blocking check on ``ml/model_evaluation``) stops an unfit
candidate before any of its recommendations are written.
"""

import json
from pathlib import Path

import dagster as dg
import pandas as pd

from music_platform.defs.ml.training_reuse import (
    EVALUATION_RECORD_KEY,
    evaluation_key,
    reusable_version,
    standing_evaluation,
    training_fingerprint,
    training_record,
)
from music_platform.defs.ml.training_reuse import RECORD_KEY as TRAINING_RECORD_KEY
from music_platform.defs.quality.checks import completeness_result
from music_platform.lib.metadata import column_schema, completeness_metadata, preview_markdown
from music_platform.policies import MODEL_FRESHNESS, OWNERS, RECOMMENDATIONS_FRESHNESS, absorbs_realtime
from music_platform.quality.completeness import measure_completeness
from music_platform.quality.contracts import ML_REQUIRED_FIELDS
from music_platform.recommender.dataset import RecDataset, build_dataset, dataset_stats
from music_platform.recommender.evaluation import evaluate_models, metrics_dict, with_baseline
from music_platform.recommender.gate import HOLD, PUBLISH, REJECT, paired_gate
from music_platform.recommender.models import train_popularity
from music_platform.recommender.publication import (
    MIN_NAMED_SHARE,
    PUBLICATION_COLUMN,
    Publication,
    check_publication,
    columns_of,
    ensure_publication_column,
    new_publication_id,
    publish,
    sql_text,
    write_display_snapshot,
)
from music_platform.recommender.registry import ModelRegistry
from music_platform.recommender.scoring import popularity_recommendations, recommend_top_k, similar_items
from music_platform.recommender.stable_split import stable_holdout
from music_platform.recommender.training import (
    PRODUCTION,
    ProductionConfig,
    refit_on_all,
    train_model,
    train_production,
)
from music_platform.resources import ArtifactStoreResource, WarehouseResource
from music_platform.serving.limits import MAX_K as STORED_K
from music_platform.sources.landing import utc_now

ML = "ml"
MARTS = "marts"
TOP_K = 10  # evaluation and the gate; the pipeline stores STORED_K (the service's maximum k)
GATE_METRIC = f"ndcg@{TOP_K}"  # selection and the paired gate compare per-user NDCG@10
GATE = "beats_popularity_baseline"

TRAINING_DATA = dg.AssetKey([ML, "training_data"])
MODEL = dg.AssetKey([ML, "lightfm_model"])
EVALUATION = dg.AssetKey([ML, "model_evaluation"])
RECOMMENDATIONS = dg.AssetKey([ML, "user_recommendations"])
SIMILAR = dg.AssetKey([ML, "similar_tracks"])
REGISTRY = dg.AssetKey([ML, "model_registry"])

_common = dict(group_name="ml", owners=OWNERS["ml"], pool="warehouse")
DAILY_ML_FRESHNESS = RECOMMENDATIONS_FRESHNESS


class ModelConfig(dg.Config):
    """Which model the pipeline trains, how it is selected, and how the gate judges it.

    The defaults are ``recommender.training.PRODUCTION``, the configuration ``music-platform
    benchmark`` measures as ``production``.
    """

    # auto: train every kind in `candidates` on the stable training split and keep the one with the
    # best held-out NDCG@10; or one kind: lightfm (hybrid) | blend (LightFM + EASE + ALS) | ease | als.
    model_kind: str = "auto"
    candidates: list[str] = list(PRODUCTION.candidates)
    test_fraction: float = PRODUCTION.test_fraction
    # After selection, retrain the winner on all interactions (the served model); the gate judges
    # the split-trained twin (kept as holdout_model.pkl). Measured in docs/recommender.md.
    refit_on_full: bool = PRODUCTION.refit_on_full
    refit_max_seconds: float | None = PRODUCTION.refit_max_seconds
    ease_max_items: int = PRODUCTION.ease_max_items
    # The paired gate (per-user NDCG@10, paired t-test): the candidate must beat popularity by this
    # relative lift at the lower confidence bound, and the live model by min_lift_vs_live.
    min_lift_vs_popularity: float = 0.10
    min_lift_vs_live: float = 0.0
    gate_confidence: float = 0.95
    # True: a candidate not clearly better than the live model is held (kept as candidate, not
    # published). False: it is published unless clearly worse (refresh on new data).
    hold_unless_better: bool = True
    # LightFM budget for the pipeline: early stopping picks the epoch count within max_epochs
    # (the refit on all data reuses that count instead of searching again).
    max_epochs: int = PRODUCTION.max_epochs
    no_components: int = PRODUCTION.no_components
    # Wall-time ceiling on the epoch search (None: none). Small catalogues stop early long before
    # it; at 10 M scrobbles (2.45 M interactions, 2 cores) an epoch takes ~35 s and early
    # stopping alone ran 12 epochs (488 s) for 0.3% more validation precision than epoch 4.
    training_time_budget_seconds: float | None = PRODUCTION.time_budget_seconds

    def production(self) -> ProductionConfig:
        return ProductionConfig(
            candidates=tuple(self.candidates),
            test_fraction=self.test_fraction,
            refit_on_full=self.refit_on_full,
            refit_max_seconds=self.refit_max_seconds,
            ease_max_items=self.ease_max_items,
            max_epochs=self.max_epochs,
            no_components=self.no_components,
            time_budget_seconds=self.training_time_budget_seconds,
        )

    def training_params(self, kind: str | None = None):
        kind = kind or self.model_kind
        if kind == "lightfm":
            return self.production().lightfm_params()
        if kind == "blend":
            return self.production().blend_params()
        return None


def _registry(artifacts: ArtifactStoreResource) -> ModelRegistry:
    return ModelRegistry(artifacts.models_dir)


@dg.asset(
    key=TRAINING_DATA,
    description="The recommender's input: the user x track interaction matrix with play-count confidence, "
    "item features (genre, weighted artist tags, bucketed audio features, artist) and user features.",
    deps=[dg.AssetKey([MARTS, t]) for t in ("user_track_interactions", "dim_tracks", "artist_tags", "dim_users")],
    kinds={"python", "scipy"},
    freshness_policy=DAILY_ML_FRESHNESS,
    # user_track_interactions changes every few minutes while the day runs (issue 19): the
    # training data, hence the recommendations, follow it daily; the service filters in between.
    automation_condition=absorbs_realtime(),
    check_specs=[
        dg.AssetCheckSpec(
            "interactions_usable",
            asset=TRAINING_DATA,
            blocking=True,
            description="At least 95% of interaction rows are usable (the rest quarantined with reasons).",
        )
    ],
    **_common,
)
def training_data(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
    wh = warehouse.get_warehouse()
    interactions = wh.read_table(MARTS, "user_track_interactions")
    dataset = build_dataset(
        interactions,
        tracks=wh.read_table(MARTS, "dim_tracks"),
        artist_tags=wh.read_table(MARTS, "artist_tags"),
        users=wh.read_table(MARTS, "dim_users"),
    )
    stats = dataset_stats(dataset)
    rejected = len(dataset.rejected)
    usable_share = 1 - rejected / max(len(interactions), 1)
    yield dg.Output(
        dataset,
        metadata={
            **{
                k: dg.MetadataValue.float(float(v)) if isinstance(v, float) else dg.MetadataValue.int(int(v))
                for k, v in stats.items()
            },
            "data_snapshot_id": dg.MetadataValue.text(dataset.snapshot_id()),
            "rows_quarantined": dg.MetadataValue.int(rejected),
            # the interaction rows it was built from
            "dagster/row_count": dg.MetadataValue.int(len(interactions)),
            "dagster/column_schema": column_schema(interactions),
            "preview": dg.MetadataValue.md(preview_markdown(interactions)),
            "data_source": dg.MetadataValue.text(
                "marts.user_track_interactions, marts.dim_tracks, marts.artist_tags, marts.dim_users"
            ),
        },
    )
    yield dg.AssetCheckResult(
        check_name="interactions_usable",
        passed=usable_share >= 0.95,
        metadata={"usable_share": dg.MetadataValue.float(usable_share), "quarantined": dg.MetadataValue.int(rejected)},
        description=f"{usable_share:.2%} of {len(interactions)} interaction rows usable",
    )


@dg.asset(
    key=MODEL,
    description="The LightFM hybrid model (WARP; ids + genre, tag and audio-feature item features), trained on "
    "the stable training split and saved as a versioned artifact with its id mappings, parameters and data "
    "snapshot id (data/models/<version>/).",
    kinds={"python", "lightfm"},
    freshness_policy=MODEL_FRESHNESS,
    automation_condition=dg.AutomationCondition.on_missing() | dg.AutomationCondition.on_cron("0 4 * * 0"),
    check_specs=[
        dg.AssetCheckSpec("artifact_valid", asset=MODEL, blocking=True, description="The artifact reloads and scores.")
    ],
    **_common,
)
def lightfm_model(
    context: dg.AssetExecutionContext, config: ModelConfig, training_data: RecDataset, artifacts: ArtifactStoreResource
):
    train, test = stable_holdout(training_data, config.test_fraction)
    registry = _registry(artifacts)
    # Trained on exactly these inputs already (data, configuration, code, libraries; by content):
    # that version is reused instead of training it again (training_reuse.py).
    fingerprint = training_fingerprint(training_data, config.model_dump())
    reusable = reusable_version(registry, fingerprint)
    if reusable is not None:
        context.log.info(f"reusing model {reusable.version} ({reusable.status}): trained on the same inputs")
        yield from _reused_model_outputs(registry, reusable, train, training_data, config, fingerprint)
        return
    selection = None
    if config.model_kind == "auto":
        selection, holdout_model, model = train_production(training_data, config.production(), (train, test))
        kind = selection.winner
        context.log.info(
            "selected %s: %s",
            kind,
            ", ".join(f"{n} {m[GATE_METRIC]:.4f}" for n, m in selection.metrics.items()),
        )
    else:
        kind = config.model_kind
        holdout_model = train_model(kind, train, config.training_params())
        model = refit_on_all(kind, holdout_model, training_data) if config.refit_on_full else holdout_model
    version = registry.save(
        model,
        metrics={
            "selection": selection.summary() if selection else {"winner": kind, "candidates": {}},
            TRAINING_RECORD_KEY: training_record(fingerprint, holdout_model.training_info),
        },
        data_snapshot_id=training_data.snapshot_id(),
        status="candidate",
        holdout_model=holdout_model if model is not holdout_model else None,
    )
    reloaded = registry.load(version.version)
    sample = recommend_top_k(reloaded, train, k=TOP_K, users=list(train.user_ids[:5]), with_reasons=False)
    yield dg.Output(
        version.version,
        metadata={
            "reused": dg.MetadataValue.bool(False),
            "training_fingerprint": dg.MetadataValue.text(fingerprint),
            "model_version": dg.MetadataValue.text(version.version),
            "model_kind": dg.MetadataValue.text(model.kind),
            "selection": dg.MetadataValue.json(selection.summary() if selection else {"winner": kind}),
            "refit_on_full": dg.MetadataValue.bool(config.refit_on_full),
            "params": dg.MetadataValue.json(json.loads(json.dumps(model.params, default=str))),
            "fit_seconds": dg.MetadataValue.float(round(model.fit_seconds, 3)),
            # how the epoch search ended: early_stopping, max_epochs or time_budget
            **{
                key: dg.MetadataValue.text(str(holdout_model.training_info[key]))
                for key in ("epochs", "epochs_trained", "best_epoch", "stopped_by")
                if key in holdout_model.training_info
            },
            "data_snapshot_id": dg.MetadataValue.text(training_data.snapshot_id()),
            "data_source": dg.MetadataValue.text(
                f"ml/training_data snapshot {training_data.snapshot_id()} "
                + (
                    "(all interactions after selection on the training split)"
                    if config.refit_on_full
                    else "(training split)"
                )
            ),
            "training_interactions": dg.MetadataValue.int(
                training_data.n_interactions if config.refit_on_full else train.n_interactions
            ),
            "artifact": dg.MetadataValue.path(str(artifacts.models_dir / version.version)),
        },
    )
    yield dg.AssetCheckResult(
        check_name="artifact_valid",
        passed=bool(len(sample)) and bool(sample["score"].notna().all()),
        metadata={"sample_rows": dg.MetadataValue.int(len(sample))},
    )


def _reused_model_outputs(registry: ModelRegistry, reused, train, training_data, config: ModelConfig, fingerprint: str):
    """The output and artifact check of ``lightfm_model`` when it reuses the version ``reused``."""
    version = reused.version
    reloaded = registry.load(version)
    sample = recommend_top_k(reloaded, train, k=TOP_K, users=list(train.user_ids[:5]), with_reasons=False)
    yield dg.Output(
        version,
        metadata={
            "reused": dg.MetadataValue.bool(True),
            "training_fingerprint": dg.MetadataValue.text(fingerprint),
            "model_version": dg.MetadataValue.text(version),
            "model_kind": dg.MetadataValue.text(reloaded.kind),
            "selection": dg.MetadataValue.json(reused.metrics.get("selection", {})),
            "refit_on_full": dg.MetadataValue.bool(config.refit_on_full),
            "data_snapshot_id": dg.MetadataValue.text(training_data.snapshot_id()),
            "data_source": dg.MetadataValue.text(
                f"model {version} ({reused.status}), reused: trained on the same data (snapshot "
                f"{training_data.snapshot_id()}), configuration, code and libraries"
            ),
            "artifact": dg.MetadataValue.path(str(reused.path)),
        },
    )
    yield dg.AssetCheckResult(
        check_name="artifact_valid",
        passed=bool(len(sample)) and bool(sample["score"].notna().all()),
        metadata={"sample_rows": dg.MetadataValue.int(len(sample))},
    )


@dg.asset(
    key=EVALUATION,
    description=f"Held-out evaluation (precision@{TOP_K}, recall@{TOP_K}, NDCG@{TOP_K}, MAP@{TOP_K}, AUC, catalogue "
    "coverage, full-list share) of the candidate beside the popularity baseline and the published model, on the "
    "same stable split. Table ml.model_evaluation.",
    kinds={"python", "lightfm"},
    freshness_policy=MODEL_FRESHNESS,
    automation_condition=dg.AutomationCondition.eager(),
    check_specs=[
        dg.AssetCheckSpec(
            GATE,
            asset=EVALUATION,
            blocking=True,
            description=f"The model gate: a paired t-test over test users of per-user {GATE_METRIC}. The candidate "
            "must beat popularity by the minimum lift and be clearly better than the live model (publish); not "
            "clearly better: hold (WARN, kept as a candidate, the live model keeps serving); clearly worse or "
            "not above popularity: reject (ERROR, blocking).",
        )
    ],
    **_common,
)
def model_evaluation(
    context: dg.AssetExecutionContext,
    config: ModelConfig,
    lightfm_model: str,
    training_data: RecDataset,
    warehouse: WarehouseResource,
    artifacts: ArtifactStoreResource,
):
    registry = _registry(artifacts)
    published = registry.latest_published()
    reused_live = published is not None and published.version == lightfm_model
    # An evaluation against popularity alone is a function of the model and of this key; the live
    # model reused by lightfm_model (same inputs) keeps the one it had (training_reuse.py).
    key = evaluation_key(training_fingerprint(training_data, config.model_dump()), Path(__file__))
    standing = standing_evaluation(published, key) if reused_live else None
    if standing is not None:
        wh = warehouse.get_warehouse()
        rows = wh.query_df(f"select * from {ML}.model_evaluation where model_version = {sql_text(lightfm_model)}")
        # The rows are still those of that evaluation (none written since by another one).
        written_at = {_utc_text(t) for t in rows.get("evaluated_at", [])}
        if len(rows) and written_at == {standing["evaluated_at"]}:
            context.log.info(f"the live model {lightfm_model}: its evaluation of {standing['evaluated_at']} stands")
            yield from _standing_evaluation_outputs(published, standing, rows, config)
            return
    # The split-trained twin when the served model was refitted on all data (it has seen the test part).
    candidate = registry.load_holdout(lightfm_model)
    train, test = stable_holdout(training_data, config.test_fraction)
    models = {"candidate": candidate, "popularity": train_popularity(train)}
    if published is not None and not reused_live:
        models["published"] = registry.load_holdout(published.version)
    per_user: dict[str, dict] = {}
    evaluation = evaluate_models(models, train, test, k=TOP_K, per_user=per_user)
    decision = paired_gate(
        per_user["candidate"][GATE_METRIC],
        per_user["popularity"][GATE_METRIC],
        per_user["published"][GATE_METRIC] if "published" in models else None,
        metric=GATE_METRIC,
        min_lift_vs_popularity=config.min_lift_vs_popularity,
        min_lift_vs_live=config.min_lift_vs_live,
        confidence=config.gate_confidence,
        hold_unless_better=config.hold_unless_better,
    )
    evaluated_alone = decision  # before the reason names the reuse
    if reused_live:  # judged against popularity only: it is the live model
        decision = decision._replace(
            reason=f"the live model {lightfm_model}, reused (trained on the same inputs): "
            + decision.reason.removesuffix("; no live model yet")
        )

    rows = with_baseline(evaluation, "candidate")
    rows["model"] = candidate.kind
    rows["selected"] = True
    selection = registry.get(lightfm_model).metrics.get("selection", {})
    baseline = metrics_dict(evaluation, "popularity")
    others = [
        {"model": name, "metric": key.partition("@")[0], "k": float(key.partition("@")[2]), "value": value}
        for name, figures in selection.get("candidates", {}).items()
        if name != selection.get("winner")
        for key, value in figures.items()
        if "@" in key
        and not key.endswith(":stderr")
        and key.partition("@")[0] in ("precision", "recall", "ndcg", "map")
    ]
    if others:
        other_rows = pd.DataFrame(others)
        other_rows["baseline_value"] = [
            baseline.get(f"{m}@{int(k)}") for m, k in zip(other_rows["metric"], other_rows["k"], strict=True)
        ]
        other_rows["selected"] = False
        rows = pd.concat([rows.astype({"k": "float64"}), other_rows], ignore_index=True)
    rows.insert(0, "model_version", lightfm_model)
    published_rows = evaluation[evaluation["model"] == "published"][["metric", "k", "value"]].astype({"k": "float64"})
    rows["k"] = rows["k"].astype("float64")  # AUC has no cut-off (null k)
    rows = rows.merge(published_rows.rename(columns={"value": "published_value"}), on=["metric", "k"], how="left")
    rows.loc[~rows["selected"].astype(bool), "published_value"] = None
    rows["published_version"] = pd.Series(
        [published.version if "published" in models else None] * len(rows), dtype="string"
    )
    rows["gate_decision"] = pd.Series([decision.decision] * len(rows), dtype="string")
    rows["evaluated_at"] = pd.Timestamp(utc_now())
    rows["selected"] = rows["selected"].astype(bool)
    wh = warehouse.get_warehouse()
    _ensure_columns(wh, "model_evaluation", {"selected": "boolean", "gate_decision": "varchar"})
    wh.replace_partition(ML, "model_evaluation", rows, "model_version", [lightfm_model])

    candidate_metrics = metrics_dict(evaluation, "candidate")
    test_users = int(evaluation["users"].max())
    registry.update_metrics(
        lightfm_model,
        {
            "holdout": {k: round(v, 6) for k, v in candidate_metrics.items()},
            "popularity": {k: round(v, 6) for k, v in baseline.items()},
            "gate": {
                **decision.as_dict(),
                "metric": GATE_METRIC,
                "live_version": published.version if "published" in models else None,
            },
            # Judged against popularity alone: the outcome stands for this key (training_reuse.py).
            **(
                {
                    EVALUATION_RECORD_KEY: {
                        "key": key,
                        "evaluated_at": _utc_text(rows["evaluated_at"].iloc[0]),
                        "test_users": test_users,
                        **evaluated_alone.as_dict(),
                    }
                }
                if "published" not in models
                else {EVALUATION_RECORD_KEY: None}  # judged beside the live model: nothing stands
            ),
        },
    )
    # The live model itself (reused by lightfm_model: trained on the same inputs) stays published
    # unless the gate now rejects it; any other candidate waits for the publication step.
    if not (reused_live and decision.decision != REJECT):
        registry.set_status(lightfm_model, "rejected" if decision.decision == REJECT else "candidate")
    comparison_metadata = _comparison_metadata(
        {name: comparison._asdict() for name, comparison in decision.comparisons.items()}
    )
    yield dg.MaterializeResult(
        metadata={
            **_evaluation_rows_metadata(rows),
            "data_source": dg.MetadataValue.text(
                f"model {lightfm_model}, the popularity baseline"
                + (f" and the published model {published.version}" if "published" in models else "")
                + f", on the stable {config.test_fraction:.0%} hold-out of ml/training_data"
            ),
            "selected_model": dg.MetadataValue.text(str(selection.get("winner", candidate.kind))),
            "gate_decision": dg.MetadataValue.text(decision.decision),
            **{f"candidate_{k}": dg.MetadataValue.float(round(v, 5)) for k, v in candidate_metrics.items()},
            # every metric beside the popularity baseline's (plotted side by side in the UI)
            **{f"baseline_{k}": dg.MetadataValue.float(round(v, 5)) for k, v in baseline.items()},
            "test_users": dg.MetadataValue.int(test_users),
            "evaluation": dg.MetadataValue.text(f"computed on {rows['evaluated_at'].iloc[0].isoformat()}"),
        }
    )
    yield dg.AssetCheckResult(
        check_name=GATE,
        passed=decision.decision == PUBLISH,
        # A held candidate is not an alarm: the live model keeps serving (its recommendations are
        # refreshed downstream). A rejected one is: nothing downstream runs.
        severity=dg.AssetCheckSeverity.WARN if decision.decision == HOLD else dg.AssetCheckSeverity.ERROR,
        description=decision.reason,
        metadata={
            "model_version": dg.MetadataValue.text(lightfm_model),
            "decision": dg.MetadataValue.text(decision.decision),
            "reason": dg.MetadataValue.text(decision.reason),
            "metric": dg.MetadataValue.text(GATE_METRIC),
            "live_version": dg.MetadataValue.text(published.version if "published" in models else "(none)"),
            **comparison_metadata,
        },
    )


def _evaluation_rows_metadata(rows: pd.DataFrame) -> dict[str, dg.MetadataValue]:
    """Row count, schema and previews of the rows written to ml.model_evaluation."""
    return {
        "dagster/row_count": dg.MetadataValue.int(len(rows)),
        "dagster/column_schema": column_schema(rows),
        "metrics": dg.MetadataValue.md(
            preview_markdown(rows[["model", "selected", "metric", "k", "value", "baseline_value"]], rows=30)
        ),
        "preview": dg.MetadataValue.md(preview_markdown(rows)),
    }


def _comparison_metadata(comparisons: dict[str, dict]) -> dict[str, dg.MetadataValue]:
    """The gate's paired comparisons (against popularity, the live model) as check metadata."""
    return {
        f"{name}_{field}": dg.MetadataValue.float(round(float(value), 6))
        for name, comparison in comparisons.items()
        for field, value in comparison.items()
        if field in ("mean_difference", "stderr", "ci_low", "ci_high", "p_value", "required_lift", "reference_mean")
    }


def _utc_text(value) -> str:
    """A time as UTC text to the second, whether the warehouse gives it back aware or naive."""
    stamp = pd.Timestamp(value)
    if stamp.tzinfo is not None:
        stamp = stamp.tz_convert("UTC").tz_localize(None)
    return stamp.isoformat(timespec="seconds")


def _standing_evaluation_outputs(live, standing: dict, rows: pd.DataFrame, config: ModelConfig):
    """The output and gate check of ``model_evaluation`` for the live model reused by
    ``lightfm_model`` when its evaluation against popularity stands: the rows it wrote then
    (``ml.model_evaluation``) and the decision it recorded in the registry, said to be so."""
    version = live.version
    holdout, baseline = live.metrics.get("holdout", {}), live.metrics.get("popularity", {})
    reason = (
        f"the live model {version}, reused (trained on the same inputs); its evaluation of "
        f"{standing['evaluated_at']} stands (the same model, data, split, configuration and code): "
        + str(standing["reason"]).removesuffix("; no live model yet")
    )
    decision = str(standing["decision"])
    comparison_metadata = _comparison_metadata(standing.get("comparisons") or {})
    selection = live.metrics.get("selection", {})
    yield dg.MaterializeResult(
        metadata={
            **_evaluation_rows_metadata(rows),
            "data_source": dg.MetadataValue.text(
                f"model {version} and the popularity baseline, on the stable {config.test_fraction:.0%} hold-out "
                f"of ml/training_data: the evaluation of {standing['evaluated_at']}, which stands"
            ),
            "selected_model": dg.MetadataValue.text(str(selection.get("winner", live.kind))),
            "gate_decision": dg.MetadataValue.text(decision),
            **{f"candidate_{k}": dg.MetadataValue.float(round(v, 5)) for k, v in holdout.items()},
            **{f"baseline_{k}": dg.MetadataValue.float(round(v, 5)) for k, v in baseline.items()},
            "test_users": dg.MetadataValue.int(int(standing.get("test_users") or 0)),
            "evaluation": dg.MetadataValue.text(f"stands: computed on {standing['evaluated_at']}"),
        }
    )
    yield dg.AssetCheckResult(
        check_name=GATE,
        passed=decision == PUBLISH,
        severity=dg.AssetCheckSeverity.WARN if decision == HOLD else dg.AssetCheckSeverity.ERROR,
        description=reason,
        metadata={
            "model_version": dg.MetadataValue.text(version),
            "decision": dg.MetadataValue.text(decision),
            "reason": dg.MetadataValue.text(reason),
            "metric": dg.MetadataValue.text(GATE_METRIC),
            "live_version": dg.MetadataValue.text("(none)"),
            "evaluated_at": dg.MetadataValue.text(str(standing["evaluated_at"])),
            **comparison_metadata,
        },
    )


def _ensure_columns(wh, table: str, columns: dict[str, str]) -> None:
    """Tables written before these columns existed get them (older rows read as null)."""
    existing = {c.lower() for c in columns_of(wh, ML, table)}
    if not existing:
        return
    for name, sql_type in columns.items():
        if name not in existing:
            wh.execute(f"alter table {wh.qualified(ML, table)} add column {name} {sql_type}")


def _servable_version(registry: ModelRegistry, evaluated_version: str) -> str:
    """The version whose recommendations to write: the evaluated one if the gate said publish,
    else the live one (a held candidate leaves the live model serving, on fresh data)."""
    evaluated = registry.get(evaluated_version)
    decision = evaluated.metrics.get("gate", {}).get("decision")
    if evaluated.status != "rejected" and decision in (PUBLISH, None):  # None: evaluated before the paired gate
        return evaluated_version
    published = registry.latest_published()
    if published is None:
        raise dg.Failure(f"model {evaluated_version} was not published by the gate ({decision}) and none is live yet")
    return published.version


@dg.asset(
    key=RECOMMENDATIONS,
    description=f"Top {STORED_K} tracks per user that the user has not heard, with score and a short reason, "
    "vectorised over user batches. Table ml.user_recommendations, one set of rows per model_version.",
    deps=[EVALUATION],
    ins={"training_data": dg.AssetIn(TRAINING_DATA), "lightfm_model": dg.AssetIn(MODEL)},
    kinds={"python", "lightfm"},
    freshness_policy=RECOMMENDATIONS_FRESHNESS,
    automation_condition=dg.AutomationCondition.eager(),
    check_specs=[
        dg.AssetCheckSpec(
            "completeness",
            asset=RECOMMENDATIONS,
            blocking=True,
            description="At least 95% of rows have every required field present and valid.",
        ),
        dg.AssetCheckSpec(
            "full_lists",
            asset=RECOMMENDATIONS,
            blocking=True,
            description=f"At least 95% of users get exactly {STORED_K} recommendations.",
        ),
        dg.AssetCheckSpec(
            "no_heard_tracks",
            asset=RECOMMENDATIONS,
            blocking=True,
            description="No recommended track is one the user already played.",
        ),
    ],
    **_common,
)
def user_recommendations(
    context: dg.AssetExecutionContext,
    training_data: RecDataset,
    lightfm_model: str,
    warehouse: WarehouseResource,
    artifacts: ArtifactStoreResource,
):
    registry = _registry(artifacts)
    version = _servable_version(registry, lightfm_model)
    model = registry.load(version)
    recs = recommend_top_k(model, training_data, k=STORED_K)
    # Users with a profile but no listens yet get the popularity list (flagged by its reason).
    wh = warehouse.get_warehouse()
    known = set(map(str, training_data.user_ids))
    listeners = [u for u in wh.read_table(MARTS, "dim_users", ["user_id"])["user_id"].astype(str) if u not in known]
    if listeners:
        popular = popularity_recommendations(model, k=STORED_K)
        fallback = pd.concat([popular.assign(user_id=u) for u in listeners], ignore_index=True)
        recs = pd.concat([recs, fallback[recs.columns]], ignore_index=True)
    recs["model_version"] = version
    recs["generated_at"] = pd.Timestamp(utc_now())
    # A new publication every time: the rows of a live publication are never rewritten.
    publication = Publication(version, new_publication_id())
    recs[PUBLICATION_COLUMN] = publication.publication_id
    ensure_publication_column(wh, "user_recommendations")
    wh.replace_partition(ML, "user_recommendations", recs, PUBLICATION_COLUMN, [publication.publication_id])
    where = f"{PUBLICATION_COLUMN} = {sql_text(publication.publication_id)}"
    per_user = recs.groupby("user_id").size()
    all_users = training_data.n_users + len(listeners)
    full_share = float((per_user == STORED_K).sum()) / max(all_users, 1)
    heard = set(
        zip(training_data.user_ids[training_data.user_idx], training_data.item_ids[training_data.item_idx], strict=True)
    )
    heard_hits = int(sum((u, t) in heard for u, t in zip(recs["user_id"], recs["track_id"], strict=True)))
    completeness = measure_completeness(
        wh, ML, "user_recommendations", ML_REQUIRED_FIELDS["user_recommendations"], where=where
    )
    # The output (the publication) is what ml/model_registry publishes.
    yield dg.Output(
        {"model_version": version, "publication_id": publication.publication_id},
        metadata={
            "dagster/row_count": dg.MetadataValue.int(len(recs)),
            "dagster/column_schema": column_schema(recs),
            "preview": dg.MetadataValue.md(preview_markdown(recs)),
            **completeness_metadata(completeness),
            "data_source": dg.MetadataValue.text(f"model {version}"),
            "model_version": dg.MetadataValue.text(version),
            "publication_id": dg.MetadataValue.text(publication.publication_id),
            "model_metrics": dg.MetadataValue.md(_metrics_beside_baseline(wh, version)),
            "users": dg.MetadataValue.int(int(per_user.size)),
            "full_list_share": dg.MetadataValue.float(round(full_share, 5)),
        },
    )
    yield completeness_result(completeness)
    yield dg.AssetCheckResult(
        check_name="full_lists",
        passed=full_share >= 0.95,
        metadata={"full_list_share": dg.MetadataValue.float(full_share)},
        description=f"{full_share:.2%} of {all_users} users have {STORED_K} recommendations",
    )
    yield dg.AssetCheckResult(
        check_name="no_heard_tracks",
        passed=heard_hits == 0,
        metadata={"heard_tracks_recommended": dg.MetadataValue.int(heard_hits)},
        description=f"{heard_hits} recommendations are tracks the user already played",
    )


@dg.asset(
    key=SIMILAR,
    description=f"Top {STORED_K} similar tracks per track (cosine over the model's item embeddings). "
    "Table ml.similar_tracks.",
    deps=[EVALUATION],
    ins={"lightfm_model": dg.AssetIn(MODEL)},
    kinds={"python", "lightfm"},
    freshness_policy=MODEL_FRESHNESS,
    automation_condition=dg.AutomationCondition.eager(),
    check_specs=[
        dg.AssetCheckSpec(
            "completeness",
            asset=SIMILAR,
            blocking=True,
            description="At least 95% of rows have every required field present and valid.",
        ),
        dg.AssetCheckSpec(
            "neighbours_share_genre_or_tag",
            asset=SIMILAR,
            description="Most neighbours share a genre or an artist tag with their seed track.",
        ),
    ],
    **_common,
)
def similar_tracks(
    context: dg.AssetExecutionContext,
    lightfm_model: str,
    warehouse: WarehouseResource,
    artifacts: ArtifactStoreResource,
):
    registry = _registry(artifacts)
    version = _servable_version(registry, lightfm_model)
    model = registry.load(version)
    similar = similar_items(model, k=STORED_K)
    similar["model_version"] = version
    wh = warehouse.get_warehouse()
    wh.replace_partition(ML, "similar_tracks", similar, "model_version", [version])
    completeness = measure_completeness(
        wh, ML, "similar_tracks", ML_REQUIRED_FIELDS["similar_tracks"], where=f"model_version = '{version}'"
    )
    yield dg.MaterializeResult(
        metadata={
            "dagster/row_count": dg.MetadataValue.int(len(similar)),
            "dagster/column_schema": column_schema(similar),
            "preview": dg.MetadataValue.md(preview_markdown(similar)),
            **completeness_metadata(completeness),
            "data_source": dg.MetadataValue.text(f"item embeddings of model {version}"),
            "model_version": dg.MetadataValue.text(version),
        }
    )
    yield completeness_result(completeness)
    share = _shared_genre_or_tag_share(wh, version)
    yield dg.AssetCheckResult(
        check_name="neighbours_share_genre_or_tag",
        passed=share >= 0.5,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"share": dg.MetadataValue.float(round(share, 5))},
        description=f"{share:.2%} of neighbours share a genre or tag with their seed track",
    )


def _metrics_beside_baseline(wh, version: str) -> str:
    """The held-out metrics of the model that wrote these rows, beside the popularity baseline."""
    if not wh.table_exists(ML, "model_evaluation"):
        return "(not evaluated)"
    frame = wh.query_df(
        f"select metric, k, value, baseline_value from {wh.qualified(ML, 'model_evaluation')} "
        f"where model_version = '{version}' and coalesce(selected, true) order by metric"
    )
    frame.columns = [c.lower() for c in frame.columns]
    return preview_markdown(frame.round(5), rows=len(frame)) if len(frame) else "(not evaluated)"


def _shared_genre_or_tag_share(wh, version: str) -> float:
    frame = wh.query_df(
        f"""
        with pairs as (
            select s.track_id, s.similar_track_id, a.genre as genre_a, b.genre as genre_b,
                   a.artist_id as artist_a, b.artist_id as artist_b
            from {wh.qualified(ML, "similar_tracks")} s
            join {wh.qualified(MARTS, "dim_tracks")} a on s.track_id = a.track_id
            join {wh.qualified(MARTS, "dim_tracks")} b on s.similar_track_id = b.track_id
            where s.model_version = '{version}'
        ),
        tagged as (
            select p.*, case when exists (
                select 1 from {wh.qualified(MARTS, "artist_tags")} ta
                join {wh.qualified(MARTS, "artist_tags")} tb on ta.tag_name = tb.tag_name
                where ta.artist_id = p.artist_a and tb.artist_id = p.artist_b
            ) then 1 else 0 end as shares_tag
            from pairs p
        )
        select count(*) as total,
               sum(case when genre_a = genre_b or shares_tag = 1 then 1 else 0 end) as shared
        from tagged
        """
    )
    frame.columns = [c.lower() for c in frame.columns]
    total = int(frame["total"].iloc[0] or 0)
    return (int(frame["shared"].iloc[0] or 0) / total) if total else 0.0


@dg.asset(
    key=REGISTRY,
    description="The published model version (table ml.model_registry, the service's pointer): publishes the "
    "recommendations just written -- copies the display fields of the marts beside them "
    "(ml.published_tracks, ml.published_artists), checks the whole snapshot, then switches the pointer in one "
    "atomic write. The service serves the latest published version's publication; "
    "`music-platform model rollback` returns to the previous one.",
    deps=[SIMILAR],
    ins={"user_recommendations": dg.AssetIn(RECOMMENDATIONS)},
    kinds={"python"},
    freshness_policy=RECOMMENDATIONS_FRESHNESS,
    automation_condition=dg.AutomationCondition.eager(),
    check_specs=[
        dg.AssetCheckSpec(
            "published_version_servable",
            asset=REGISTRY,
            blocking=True,
            description="The publication has recommendations, similar tracks and the display fields of every "
            f"track it serves ({MIN_NAMED_SHARE:.0%} of them named); otherwise it is not published and the "
            "previous one stays live.",
        ),
    ],
    **_common,
)
def model_registry(
    context: dg.AssetExecutionContext,
    user_recommendations: dict,
    warehouse: WarehouseResource,
    artifacts: ArtifactStoreResource,
):
    registry = _registry(artifacts)
    publication = Publication(user_recommendations["model_version"], user_recommendations["publication_id"])
    wh = warehouse.get_warehouse()
    display_tracks, display_artists = write_display_snapshot(wh, publication.publication_id)
    verdict = check_publication(wh, publication)
    if verdict.passed:
        table = publish(wh, registry, publication)  # the switch: one atomic write of ml.model_registry
        outcome = f"version {publication.model_version} is live (publication {publication.publication_id})"
    else:
        table = wh.read_table(ML, "model_registry") if wh.table_exists(ML, "model_registry") else pd.DataFrame()
        outcome = (
            f"version {publication.model_version} NOT published (publication {publication.publication_id}): "
            + "; ".join(verdict.problems)
            + "; the previous publication stays live"
        )
        context.log.error(outcome)
    yield dg.MaterializeResult(
        metadata={
            "published_version": dg.MetadataValue.text(publication.model_version if verdict.passed else "(none)"),
            "publication_id": dg.MetadataValue.text(publication.publication_id),
            "outcome": dg.MetadataValue.text(outcome),
            "display_tracks": dg.MetadataValue.int(display_tracks),
            "display_artists": dg.MetadataValue.int(display_artists),
            "dagster/row_count": dg.MetadataValue.int(len(table)),
            "dagster/column_schema": column_schema(table),
            "preview": dg.MetadataValue.md(
                preview_markdown(table.sort_values("created_at", ascending=False) if len(table) else table)
            ),
            "data_source": dg.MetadataValue.text(
                f"model registry {artifacts.models_dir}; display fields of marts.dim_tracks, marts.dim_artists"
            ),
            "versions": dg.MetadataValue.md(
                preview_markdown(table[["model_version", "status", "created_at", "published_at"]], rows=10)
                if len(table)
                else "(none)"
            ),
        }
    )
    yield dg.AssetCheckResult(
        check_name="published_version_servable",
        passed=verdict.passed,
        metadata={k: dg.MetadataValue.int(v) for k, v in verdict.as_dict().items()},
        description=outcome,
    )
