"""Model versions on disk: ``<models_dir>/<version>/`` with

- ``model.pkl``     the pickled :class:`TrainedModel` (scorer, estimator, catalogue);
- ``mappings.json`` user and item id lists (index ``i`` = row/column ``i`` of the model);
- ``params.json``   hyperparameters; ``metrics.json`` evaluation figures (candidates compared
  at selection, held-out metrics, the gate's decision and numbers);
- ``holdout_model.pkl`` (optional) the same configuration trained on the stable training split
  only, when ``model.pkl`` was refitted on all data: the gate evaluates this one, since the
  refitted model has seen the held-out interactions;
- ``meta.json``     version, kind, status, created_at, published_at, data_snapshot_id.

Statuses follow ``ml.model_registry``: candidate → published | rejected, published → retired.
Several versions may be ``published``; the live one is the published version with the greatest
``published_at``. Rolling back retires the live version, so the previous published one is live
again. A version directory is written under a temporary name and renamed into place, so a
reader never sees half a version. Pickles are only ever loaded from this directory, which the
platform itself writes.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from music_platform.recommender.models import TrainedModel

STATUSES = ("candidate", "published", "rejected", "retired")
_FILES = ("model.pkl", "mappings.json", "params.json", "metrics.json", "meta.json")


class RegistryError(RuntimeError):
    """A version is missing, malformed or in the wrong state; the message says which."""


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, datetime | Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _dump(path: Path, payload: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=True, default=_json_default), encoding="utf-8")
    os.replace(tmp, path)


def _parse_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


@dataclass(frozen=True)
class ModelVersion:
    version: str
    kind: str
    status: str
    created_at: datetime
    published_at: datetime | None
    data_snapshot_id: str | None
    path: Path
    params: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)

    def registry_row(self) -> dict[str, Any]:
        """The ``ml.model_registry`` row of this version (params and metrics as JSON text)."""
        return {
            "model_version": self.version,
            "created_at": self.created_at,
            "status": self.status,
            "published_at": self.published_at,
            "params": json.dumps(self.params, sort_keys=True, default=_json_default),
            "data_snapshot_id": self.data_snapshot_id,
            "artifact_path": str(self.path),
            "metrics": json.dumps(self.metrics, sort_keys=True, default=_json_default),
        }


class ModelRegistry:
    def __init__(self, models_dir: Path | str) -> None:
        self.models_dir = Path(models_dir)

    # -- writing --------------------------------------------------------------------------
    def save(
        self,
        model: TrainedModel,
        metrics: dict[str, float] | None = None,
        data_snapshot_id: str | None = None,
        status: str = "candidate",
        version: str | None = None,
        created_at: datetime | None = None,
        holdout_model: TrainedModel | None = None,
    ) -> ModelVersion:
        """Write a new version; returns it. ``version`` defaults to a sortable UTC timestamp id."""
        _check_status(status)
        created = created_at or datetime.now(UTC)
        version = version or f"{created:%Y%m%dT%H%M%S}Z-{uuid.uuid4().hex[:6]}"
        if "/" in version or version.startswith("."):
            raise RegistryError(f"invalid version name {version!r}")
        target = self.models_dir / version
        if target.exists():
            raise RegistryError(f"version {version} already exists at {target}")
        self.models_dir.mkdir(parents=True, exist_ok=True)
        staging = self.models_dir / f".tmp-{version}-{uuid.uuid4().hex[:6]}"
        staging.mkdir()
        try:
            model.version = version
            with open(staging / "model.pkl", "wb") as handle:
                pickle.dump(model, handle, protocol=pickle.HIGHEST_PROTOCOL)
            if holdout_model is not None:
                holdout_model.version = version
                with open(staging / "holdout_model.pkl", "wb") as handle:
                    pickle.dump(holdout_model, handle, protocol=pickle.HIGHEST_PROTOCOL)
            _dump(
                staging / "mappings.json",
                {"user_ids": list(map(str, model.user_ids)), "item_ids": list(map(str, model.item_ids))},
            )
            _dump(staging / "params.json", {"kind": model.kind, **model.params})
            _dump(staging / "metrics.json", metrics or {})
            published = created if status == "published" else None
            _dump(
                staging / "meta.json",
                {
                    "version": version,
                    "kind": model.kind,
                    "status": status,
                    "created_at": created.isoformat(),
                    "published_at": published.isoformat() if published else None,
                    "data_snapshot_id": data_snapshot_id,
                    "fit_seconds": model.fit_seconds,
                    "training_info": model.training_info,
                },
            )
            os.rename(staging, target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return self.get(version)

    def set_status(self, version: str, status: str, at: datetime | None = None) -> ModelVersion:
        _check_status(status)
        meta_path = self._dir(version) / "meta.json"
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        meta["status"] = status
        if status == "published":
            meta["published_at"] = (at or datetime.now(UTC)).isoformat()
        _dump(meta_path, meta)
        return self.get(version)

    def update_metrics(self, version: str, updates: dict[str, Any]) -> ModelVersion:
        """Merge ``updates`` into the version's metrics.json (atomic replace)."""
        path = self._dir(version) / "metrics.json"
        metrics = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
        metrics.update(updates)
        _dump(path, metrics)
        return self.get(version)

    def publish(self, version: str, at: datetime | None = None) -> ModelVersion:
        """Make ``version`` the live model (it keeps its history if it was published before)."""
        return self.set_status(version, "published", at=at)

    def reject(self, version: str) -> ModelVersion:
        return self.set_status(version, "rejected")

    def rollback(self) -> ModelVersion:
        """Retire the live version; the previous published version becomes live and is returned."""
        live = self.latest_published()
        if live is None:
            raise RegistryError("nothing to roll back: no published version")
        previous = self.previous_published()
        if previous is None:
            raise RegistryError(f"cannot roll back {live.version}: no earlier published version to return to")
        self.set_status(live.version, "retired")
        return previous

    def prune(self, keep_last: int = 5) -> list[str]:
        """Delete all but the ``keep_last`` newest versions, never a published one. Returns the deleted ids."""
        removable = [v for v in self.list_versions() if v.status != "published"]
        doomed = removable[: max(0, len(self.list_versions()) - keep_last)]
        for version in doomed:
            shutil.rmtree(version.path)
        return [v.version for v in doomed]

    # -- reading --------------------------------------------------------------------------
    def _dir(self, version: str) -> Path:
        path = self.models_dir / version
        if not (path / "meta.json").is_file():
            raise RegistryError(f"model version {version!r} not found under {self.models_dir}")
        return path

    def get(self, version: str) -> ModelVersion:
        path = self._dir(version)
        meta = json.loads((path / "meta.json").read_text(encoding="utf-8"))
        params = (
            json.loads((path / "params.json").read_text(encoding="utf-8")) if (path / "params.json").exists() else {}
        )
        metrics = (
            json.loads((path / "metrics.json").read_text(encoding="utf-8")) if (path / "metrics.json").exists() else {}
        )
        return ModelVersion(
            version=meta["version"],
            kind=meta["kind"],
            status=meta["status"],
            created_at=datetime.fromisoformat(meta["created_at"]),
            published_at=_parse_time(meta.get("published_at")),
            data_snapshot_id=meta.get("data_snapshot_id"),
            path=path,
            params=params,
            metrics=metrics,
        )

    def list_versions(self, status: str | None = None) -> list[ModelVersion]:
        """All versions, oldest first (by creation time); optionally only one status."""
        if not self.models_dir.is_dir():
            return []
        versions = [
            self.get(p.name)
            for p in self.models_dir.iterdir()
            if p.is_dir() and not p.name.startswith(".") and (p / "meta.json").is_file()
        ]
        if status is not None:
            _check_status(status)
            versions = [v for v in versions if v.status == status]
        return sorted(versions, key=lambda v: (v.created_at, v.version))

    def _published_newest_first(self) -> list[ModelVersion]:
        published = [v for v in self.list_versions("published") if v.published_at is not None]
        return sorted(published, key=lambda v: (v.published_at, v.version), reverse=True)

    def latest_published(self) -> ModelVersion | None:
        published = self._published_newest_first()
        return published[0] if published else None

    def previous_published(self, before: str | None = None) -> ModelVersion | None:
        """The published version live before ``before`` (default: before the live one)."""
        published = self._published_newest_first()
        if not published:
            return None
        anchor = self.get(before) if before else published[0]
        anchor_key = (anchor.published_at or anchor.created_at, anchor.version)
        older = [v for v in published if v.version != anchor.version and (v.published_at, v.version) < anchor_key]
        return older[0] if older else None

    def load(self, version: str) -> TrainedModel:
        with open(self._dir(version) / "model.pkl", "rb") as handle:
            model = pickle.load(handle)
        if not isinstance(model, TrainedModel):
            raise RegistryError(f"{version}/model.pkl does not hold a TrainedModel")
        model.version = version
        return model

    def load_holdout(self, version: str) -> TrainedModel:
        """The model to evaluate on the stable hold-out: trained without it (see the module doc)."""
        path = self._dir(version) / "holdout_model.pkl"
        if not path.is_file():
            return self.load(version)
        with open(path, "rb") as handle:
            model = pickle.load(handle)
        if not isinstance(model, TrainedModel):
            raise RegistryError(f"{version}/holdout_model.pkl does not hold a TrainedModel")
        model.version = version
        return model

    def load_latest_published(self) -> TrainedModel | None:
        live = self.latest_published()
        return self.load(live.version) if live else None

    def load_last(self, n: int, status: str | None = "published") -> list[tuple[ModelVersion, TrainedModel]]:
        """The ``n`` newest versions (published ones by default, newest first) with their models, for rollback."""
        if status == "published":
            chosen = self._published_newest_first()[:n]
        else:
            chosen = list(reversed(self.list_versions(status)))[:n]
        return [(v, self.load(v.version)) for v in chosen]


def _check_status(status: str) -> None:
    if status not in STATUSES:
        raise RegistryError(f"status must be one of {', '.join(STATUSES)}, got {status!r}")


def describe_versions(registry: ModelRegistry) -> list[str]:
    """``music-platform model list``: a header, one line per version (newest last) with its status,
    a ``*`` on the live one, held-out P@10 / NDCG@10 (popularity beside them), what selection picked
    among which candidates, and an indented line with the gate's decision and reason."""
    live = registry.latest_published()
    header = (
        f"{'':2}{'version':<24} {'kind':<10} {'status':<9} {'created':<16} "
        f"{'P@10':>6} {'NDCG@10':>7} {'pop NDCG':>8}  selected / gate"
    )
    lines = [header, "-" * len(header)]
    for v in registry.list_versions():
        holdout = v.metrics.get("holdout", {})
        popularity = v.metrics.get("popularity", {})
        gate = v.metrics.get("gate", {})
        selection = v.metrics.get("selection", {})

        def figure(values: dict, key: str, width: int) -> str:
            value = values.get(key)
            return f"{value:>{width}.4f}" if isinstance(value, int | float) else f"{'-':>{width}}"

        candidates = selection.get("candidates", {})
        metric = selection.get("metric", "ndcg@10")
        chosen = (
            f"{selection.get('winner')} of "
            + ", ".join(f"{n} {m.get(metric, float('nan')):.4f}" for n, m in candidates.items())
            if candidates
            else "-"
        )
        mark = "* " if live is not None and v.version == live.version else "  "
        lines.append(
            f"{mark}{v.version:<24} {v.kind:<10} {v.status:<9} {v.created_at:%Y-%m-%d %H:%M} "
            f"{figure(holdout, 'precision@10', 6)} {figure(holdout, 'ndcg@10', 7)} {figure(popularity, 'ndcg@10', 8)}  "
            f"{chosen}"
        )
        published = f"published {v.published_at:%Y-%m-%d %H:%M}; " if v.published_at else ""
        live_note = "LIVE; " if mark == "* " else ""
        if gate:
            lines.append(f"    {live_note}{published}gate: {gate.get('decision')}: {gate.get('reason')}")
        elif published or live_note:
            lines.append(f"    {live_note}{published}gate: not recorded (evaluated before the paired gate)")
        else:
            lines.append("    gate: not evaluated yet")
    lines.append("* = live (the published version the service serves)")
    return lines
