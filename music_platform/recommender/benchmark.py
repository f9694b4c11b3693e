"""``music-platform benchmark``: models × metrics on a public dataset, mean ± std over seeds.

Protocol (the one the ``ml/model_evaluation`` asset uses): per seed, a random 20% of each
user's interactions is held out; every model is fitted on the rest with its default
hyperparameters (chosen on validation splits inside training data, never on these test
folds) and ranks all unheard items; metrics at ``k`` as in :mod:`.evaluation`.
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
from music_platform.recommender.evaluation import METRICS, evaluate_model, metric_key
from music_platform.recommender.hetrec import (
    DATASET_NAME,
    MissingDatasetError,
    leak_free_side_features,
    load_hetrec_lastfm,
)
from music_platform.recommender.lightfm_model import ids_only, train_lightfm
from music_platform.recommender.models import TrainedModel, train_als, train_ease, train_popularity
from music_platform.recommender.splits import split_holdout
from music_platform.recommender.training import BlendParams, blend_models

# name → what it is (printed by --help and in docs/recommender.md)
BENCHMARK_MODELS = {
    "popularity": "most listeners first (baseline)",
    "als": "implicit ALS on log play-count confidence",
    "ease": "EASE item-item (closed form)",
    "lightfm-ids": "LightFM WARP, ids only",
    "lightfm": "LightFM WARP hybrid: ids + weighted tag features",
    "blend": "LightFM hybrid 0.5 + EASE 0.25 + ALS 0.25, per-user standardised scores",
}
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
    """Fit the requested models; the blend reuses the fits of its components."""
    fitted: dict[str, TrainedModel] = {}
    blend_params = BlendParams()
    blend_parts = {n for n, w in blend_params.weights.items() if w > 0}
    needs = set(names) | (blend_parts if "blend" in names else set())
    trainers: dict[str, Callable[[], TrainedModel]] = {
        "popularity": lambda: train_popularity(train),
        "als": lambda: train_als(train, blend_params.als),
        "ease": lambda: train_ease(train, blend_params.ease),
        "lightfm-ids": lambda: train_lightfm(train, ids_only(blend_params.lightfm)),
        "lightfm": lambda: train_lightfm(train, blend_params.lightfm),
    }
    for name in [n for n in BENCHMARK_MODELS if n in needs and n != "blend"]:
        cpu_started = time.process_time()
        fitted[name] = trainers[name]()
        # CPU seconds (all threads) do not grow when other jobs share the cores; wall seconds do.
        fitted[name].training_info["fit_cpu_seconds"] = time.process_time() - cpu_started
        cpu = fitted[name].training_info["fit_cpu_seconds"]
        log(f"  fitted {name} in {fitted[name].fit_seconds:.1f}s ({cpu:.1f} CPU s)")
    if "blend" in names:
        fitted["blend"] = blend_models({n: fitted[n] for n in blend_parts}, blend_params.weights)
        fitted["blend"].training_info["fit_cpu_seconds"] = sum(
            fitted[n].training_info["fit_cpu_seconds"] for n in blend_parts
        )
    return {name: fitted[name] for name in names}


def _summary(values: list[float]) -> dict[str, float]:
    array = np.asarray(values, dtype=np.float64)
    return {"mean": float(array.mean()), "std": float(array.std(ddof=1)) if len(array) > 1 else 0.0}


def format_table(results: dict, metric_keys: list[str]) -> str:
    header = ["model", *metric_keys, "fit s", "fit CPU s"]
    lines = []
    for name, result in results["models"].items():
        cells = [name]
        for key in metric_keys:
            stat = result["metrics"][key]
            cells.append(f"{stat['mean']:.4f} ± {stat['std']:.4f}")
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
    for seed in seeds:
        log(f"seed {seed}: splitting ({TEST_FRACTION:.0%} of each user's interactions held out)")
        train, test = benchmark_split(dataset, seed)
        for name, model in fit_models(train, names, log).items():
            started = time.perf_counter()
            metrics = evaluate_model(model, train, test, k=k)
            precision = metrics[metric_key("precision", k)]
            log(f"  evaluated {name} in {time.perf_counter() - started:.1f}s: P@{k} {precision:.4f}")
            metrics.pop("users")
            metrics["fit_seconds"] = model.fit_seconds
            metrics["fit_cpu_seconds"] = model.training_info["fit_cpu_seconds"]
            for key, value in metrics.items():
                per_model[name].setdefault(key, []).append(value)
    metric_keys = [metric_key(m, k) for m in METRICS]
    return {
        "protocol": {
            "split": "random per-user holdout",
            "test_fraction": TEST_FRACTION,
            "relevance": "binary (any plays)",
            "excluded": "training items",
            "side_features": "tags without the assignments of held-out (user, artist) pairs",
            "k": k,
        },
        "seeds": seeds,
        "k": k,
        "models": {
            name: {
                "description": BENCHMARK_MODELS[name],
                "metrics": {key: _summary(values[key]) for key in metric_keys},
                "fit_seconds": _summary(values["fit_seconds"]),
                "fit_cpu_seconds": _summary(values["fit_cpu_seconds"]),
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
        f"seeds {','.join(map(str, seed_list))}; mean ± std over seeds"
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
