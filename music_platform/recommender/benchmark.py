"""``music-platform benchmark``: models × metrics on a public dataset.

Protocol (the one the ``ml/model_evaluation`` asset uses): per seed, a random 20% of each
user's interactions is held out; every model is fitted on the rest with its default
hyperparameters (chosen on validation splits inside training data, never on these test
folds) and ranks all unheard items; metrics at ``k`` as in :mod:`.evaluation`. Tag features
are rebuilt without the held-out pairs' tag assignments (``benchmark_split``).

``production`` is the configuration the pipeline publishes by default
(``training.PRODUCTION``): candidates selected on the pipeline's stable hold-out *inside* the
training part, the winner refitted on the whole training part. ``production-norefit`` is the
same winner without the refit (what refitting buys). The table shows each metric's mean over
seeds ± the per-user standard error (mean over seeds of the standard error over test users),
and each model's paired per-user difference to ``production`` (mean ± paired standard error).
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from music_platform.recommender.dataset import RecDataset
from music_platform.recommender.evaluation import METRICS, STDERR_SUFFIX, evaluate_model, metric_key
from music_platform.recommender.hetrec import (
    DATASET_NAME,
    MissingDatasetError,
    leak_free_side_features,
    load_hetrec_lastfm,
)
from music_platform.recommender.lightfm_model import ids_only, train_lightfm
from music_platform.recommender.models import (
    ALSParams,
    EaseParams,
    TrainedModel,
    train_als,
    train_cooccurrence,
    train_ease,
    train_popularity,
    train_tag_similarity,
)
from music_platform.recommender.splits import split_holdout
from music_platform.recommender.training import PRODUCTION, BlendParams, blend_models, train_production

# name → what it is (printed by --help and in docs/recommender.md)
BENCHMARK_MODELS = {
    "popularity": "most listeners first (baseline)",
    "als": "implicit ALS on log play-count confidence",
    "ease": "EASE item-item (closed form)",
    "lightfm-ids": "LightFM WARP, ids only",
    "lightfm": "LightFM WARP hybrid: ids + weighted tag features",
    "blend": "LightFM hybrid + EASE + ALS, per-user standardised scores (BlendParams weights)",
    "production": "what the pipeline publishes: best of its candidates on a stable inner hold-out, refitted",
    "production-norefit": "the production winner trained on the inner training split only (no refit)",
}
PRODUCTION_MODEL = "production"
PAIRED_METRICS = ("precision", "ndcg")
DATASETS = (DATASET_NAME,)
DEFAULT_DATA_DIRS = {
    DATASET_NAME: Path(__file__).resolve().parents[2].parent / "shared" / "data" / "hetrec2011-lastfm-2k"
}
TEST_FRACTION = 0.2


class BenchmarkError(ValueError):
    """Bad benchmark arguments; the message says which and what is allowed."""


def parse_seeds(seeds: str) -> list[int]:
    try:
        values = [int(s) for s in seeds.split(",") if s.strip()]
    except ValueError as exc:
        raise BenchmarkError(f"--seeds must be comma-separated integers, got {seeds!r}") from exc
    if not values:
        raise BenchmarkError("--seeds is empty")
    return values


def parse_models(models: str | None) -> list[str]:
    if not models:
        return list(BENCHMARK_MODELS)
    chosen = [m.strip() for m in models.split(",") if m.strip()]
    unknown = [m for m in chosen if m not in BENCHMARK_MODELS]
    if unknown:
        raise BenchmarkError(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(BENCHMARK_MODELS)}")
    return list(dict.fromkeys(chosen))


def fit_models(train: RecDataset, names: list[str], log: Callable[[str], None]) -> dict[str, TrainedModel]:
    """Fit the requested models; the blend reuses the fits of its components where the params agree."""
    fitted: dict[str, TrainedModel] = {}
    blend_params = BlendParams()
    standalone = {"lightfm": blend_params.lightfm, "ease": EaseParams(), "als": ALSParams()}
    blend_parts = set(blend_params.components())
    # A blend component with its own params (the blend's ALS has more factors) is fitted apart.
    own = {n for n in blend_parts if n not in standalone or getattr(blend_params, n) != standalone[n]}
    needs = set(names) | ({n for n in blend_parts - own} if "blend" in names else set())
    trainers: dict[str, Callable[[], TrainedModel]] = {
        "popularity": lambda: train_popularity(train),
        "als": lambda: train_als(train, standalone["als"]),
        "ease": lambda: train_ease(train, standalone["ease"]),
        "lightfm-ids": lambda: train_lightfm(train, ids_only(blend_params.lightfm)),
        "lightfm": lambda: train_lightfm(train, blend_params.lightfm),
    }
    production = {"production", "production-norefit"} & set(names)
    for name in [n for n in BENCHMARK_MODELS if n in needs and n not in ("blend", *production)]:
        cpu_started = time.process_time()
        fitted[name] = trainers[name]()
        # CPU seconds (all threads) do not grow when other jobs share the cores; wall seconds do.
        fitted[name].training_info["fit_cpu_seconds"] = time.process_time() - cpu_started
        cpu = fitted[name].training_info["fit_cpu_seconds"]
        log(f"  fitted {name} in {fitted[name].fit_seconds:.1f}s ({cpu:.1f} CPU s)")
    if "blend" in names:
        cpu_started = time.process_time()
        parts = {n: fitted[n] for n in blend_parts - own}
        component_trainers = {
            "lightfm": train_lightfm,
            "ease": train_ease,
            "als": train_als,
            "cooccurrence": train_cooccurrence,
            "tags": train_tag_similarity,
        }
        parts.update({n: component_trainers[n](train, getattr(blend_params, n)) for n in own})
        own_cpu = time.process_time() - cpu_started
        fitted["blend"] = blend_models(parts, blend_params.weights, blend_params.cold_start_weights)
        fitted["blend"].training_info["fit_cpu_seconds"] = own_cpu + sum(
            fitted[n].training_info["fit_cpu_seconds"] for n in blend_parts - own
        )
    if production:
        cpu_started = time.process_time()
        selection, holdout_model, served = train_production(train, PRODUCTION)
        cpu = time.process_time() - cpu_started
        served.training_info = {**served.training_info, "selected": selection.winner}
        holdout_model.training_info = {**holdout_model.training_info, "selected": selection.winner}
        fitted["production"], fitted["production-norefit"] = served, holdout_model
        for model in (served, holdout_model):
            model.training_info["fit_cpu_seconds"] = cpu
        served.fit_seconds = sum(m.fit_seconds for m in selection.models.values()) + (
            served.fit_seconds if served is not holdout_model else 0.0
        )
        log(
            f"  production: selected {selection.winner} ("
            + ", ".join(f"{n} {m['ndcg@10']:.4f}" for n, m in selection.metrics.items())
            + f" NDCG@10 on the inner hold-out); fitted in {served.fit_seconds:.1f}s ({cpu:.1f} CPU s)"
        )
    return {name: fitted[name] for name in names}


def _summary(values: list[float]) -> dict[str, float]:
    array = np.asarray(values, dtype=np.float64)
    return {"mean": float(array.mean()), "std": float(array.std(ddof=1)) if len(array) > 1 else 0.0}


def format_table(results: dict, metric_keys: list[str]) -> str:
    """mean ± per-user standard error (std over seeds when no stderr); Δ columns: paired difference
    to the production configuration (mean ± paired standard error)."""
    paired_key = f"paired_difference_to_{PRODUCTION_MODEL}"
    paired_cols = [key for key in metric_keys if key.split("@")[0] in PAIRED_METRICS]
    has_paired = any(paired_key in r for r in results["models"].values())
    header = [
        "model",
        *metric_keys,
        *([f"Δ{key} vs {PRODUCTION_MODEL}" for key in paired_cols] if has_paired else []),
        "fit s",
        "fit CPU s",
    ]
    lines = []
    for name, result in results["models"].items():
        cells = [name]
        for key in metric_keys:
            stat = result["metrics"][key]
            cells.append(f"{stat['mean']:.4f} ± {stat.get('stderr', stat['std']):.4f}")
        if has_paired:
            for key in paired_cols:
                diff = result.get(paired_key, {}).get(key)
                cells.append(f"{diff['mean']:+.4f} ± {diff['stderr']:.4f}" if diff else "-")
        for key in ("fit_seconds", "fit_cpu_seconds"):
            fit = result[key]
            cells.append(f"{fit['mean']:.1f} ± {fit['std']:.1f}")
        lines.append(cells)
    widths = [max(len(row[i]) for row in [header, *lines]) for i in range(len(header))]

    def render(row: list[str]) -> str:
        cells = zip(row, widths, strict=True)
        return "  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(cells))

    return "\n".join([render(header), render(["-" * w for w in widths]), *(render(r) for r in lines)])


def benchmark_split(dataset: RecDataset, seed: int) -> tuple[RecDataset, RecDataset]:
    """(train, test) of one seed; train's tag features never see a test pair's tag assignments."""
    train, test = split_holdout(dataset, "random", TEST_FRACTION, seed=seed)
    return leak_free_side_features(train, test), test


def benchmark_dataset(
    dataset: RecDataset, seeds: list[int], names: list[str], k: int, log: Callable[[str], None]
) -> dict:
    per_model: dict[str, dict[str, list[float]]] = {n: {} for n in names}
    paired: dict[str, dict[str, list[tuple[float, float]]]] = {n: {} for n in names}
    selected: list[str] = []
    for seed in seeds:
        log(f"seed {seed}: splitting ({TEST_FRACTION:.0%} of each user's interactions held out)")
        train, test = benchmark_split(dataset, seed)
        per_user: dict[str, dict[str, np.ndarray]] = {}
        for name, model in fit_models(train, names, log).items():
            started = time.perf_counter()
            per_user[name] = {}
            metrics = evaluate_model(model, train, test, k=k, per_user=per_user[name])
            precision = metrics[metric_key("precision", k)]
            log(f"  evaluated {name} in {time.perf_counter() - started:.1f}s: P@{k} {precision:.4f}")
            metrics.pop("users")
            metrics["fit_seconds"] = model.fit_seconds
            metrics["fit_cpu_seconds"] = model.training_info["fit_cpu_seconds"]
            if name == PRODUCTION_MODEL:
                selected.append(str(model.training_info.get("selected")))
            for key, value in metrics.items():
                per_model[name].setdefault(key, []).append(value)
        if PRODUCTION_MODEL in per_user:
            reference = per_user[PRODUCTION_MODEL]
            for name, values in per_user.items():
                for metric in PAIRED_METRICS:
                    key = metric_key(metric, k)
                    diff = values[key] - reference[key]  # same test users, same order
                    diff = diff[np.isfinite(diff)]
                    stderr = float(diff.std(ddof=1) / np.sqrt(len(diff))) if len(diff) > 1 else 0.0
                    paired[name].setdefault(key, []).append((float(diff.mean()), stderr))
    metric_keys = [metric_key(m, k) for m in METRICS]

    def stat(values: dict[str, list[float]], key: str) -> dict[str, float]:
        summary = _summary(values[key])
        if key + STDERR_SUFFIX in values:  # the per-user standard error, one split at a time
            summary["stderr"] = float(np.mean(values[key + STDERR_SUFFIX]))
        return summary

    return {
        "protocol": {
            "split": "random per-user holdout",
            "test_fraction": TEST_FRACTION,
            "relevance": "binary (any plays)",
            "excluded": "training items",
            "side_features": "tags without the assignments of held-out (user, artist) pairs",
            "stderr": "per-user standard error of each split's mean, averaged over seeds",
            "paired_difference": f"per-user difference to {PRODUCTION_MODEL} on the same split, mean over seeds",
            "k": k,
        },
        "seeds": seeds,
        "k": k,
        "production_model": {
            "name": PRODUCTION_MODEL,
            "description": BENCHMARK_MODELS[PRODUCTION_MODEL],
            "candidates": list(PRODUCTION.candidates),
            "refit_on_full": PRODUCTION.refit_on_full,
            "selected_per_seed": selected,
            "measured": PRODUCTION_MODEL in names,
        },
        "models": {
            name: {
                "description": BENCHMARK_MODELS[name],
                "metrics": {key: stat(values, key) for key in metric_keys},
                "fit_seconds": _summary(values["fit_seconds"]),
                "fit_cpu_seconds": _summary(values["fit_cpu_seconds"]),
                **(
                    {
                        f"paired_difference_to_{PRODUCTION_MODEL}": {
                            key: {
                                "mean": float(np.mean([d for d, _ in pairs])),
                                "stderr": float(np.mean([e for _, e in pairs])),
                            }
                            for key, pairs in paired[name].items()
                        }
                    }
                    if paired[name]
                    else {}
                ),
            }
            for name, values in per_model.items()
        },
    }


def run_benchmark(
    dataset: str,
    data_dir: Path | None,
    seeds: str,
    models: str | None,
    k: int,
    json_path: Path | None,
) -> int:
    """CLI entry point: print the table (and write JSON); returns the exit code."""

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    try:
        if dataset not in DATASETS:
            raise BenchmarkError(f"unknown dataset {dataset!r}; available: {', '.join(DATASETS)}")
        if k < 1:
            raise BenchmarkError(f"k must be >= 1, got {k}")
        seed_list = parse_seeds(seeds)
        names = parse_models(models)
        folder = Path(data_dir) if data_dir is not None else DEFAULT_DATA_DIRS[dataset]
        started = time.perf_counter()
        data = load_hetrec_lastfm(folder)
        log(f"loaded {dataset} from {folder}: {data.n_users} users, {data.n_items} items, {data.n_interactions} pairs")
    except (BenchmarkError, MissingDatasetError) as exc:
        log(f"error: {exc}")
        if isinstance(exc, MissingDatasetError) and data_dir is None:
            log("pass --data-dir with the folder holding the HetRec 2011 Last.fm 2K files")
        return 2
    results = benchmark_dataset(data, seed_list, names, k, log)
    results["dataset"] = dataset
    results["data_dir"] = str(folder)
    results["elapsed_seconds"] = round(time.perf_counter() - started, 1)
    print(
        f"{dataset}: {data.n_users} users, {data.n_items} items, {data.n_interactions} interactions; "
        f"seeds {','.join(map(str, seed_list))}; mean over seeds ± per-user standard error; "
        f"production model (what the pipeline publishes): {PRODUCTION_MODEL}"
    )
    print(format_table(results, [metric_key(m, k) for m in METRICS]))
    print(f"total {results['elapsed_seconds']}s")
    if json_path is not None:
        json_path = Path(json_path)
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(_finite(results), indent=2, allow_nan=False), encoding="utf-8")
        log(f"wrote {json_path}")
    return 0


def _finite(value: object) -> object:
    """JSON has no NaN/inf: they become null."""
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
