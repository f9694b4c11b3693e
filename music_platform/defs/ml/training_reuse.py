"""Training that has nothing new to learn is not redone (issue 16: the demo's second run).

``ml/lightfm_model`` trains for minutes at the default size. When the live model was trained on
exactly the same inputs -- the same training data, the same model configuration, the same training
code and the same versions of the libraries that fit it -- training again can only produce that
model again (or one that differs by the noise of LightFM's asynchronous threads, which the gate
would then hold as "not clearly better than the live one"). The asset then reuses that version
(the live one, else a held candidate) instead, and the evaluation judges it again on the same split:
the live model against popularity (it stays live unless rejected), a held candidate as before.

The same holds for the evaluation of the live model reused this way (``evaluation_key``): when
the live version was last evaluated against popularity alone on the same training data, split,
configuration and code (the evaluation asset's own source included), evaluating it again would
give the same figures and the same gate decision; ``ml/model_evaluation`` then reports that
evaluation (its rows in ``ml.model_evaluation``, its gate decision from the registry) instead of
computing it again, and says so in its metadata and in the check's description. It stands only
while ``ml.model_evaluation`` still holds that evaluation's rows; an evaluation beside a live
model clears the record.

The inputs are compared by content, never by time: ``training_fingerprint`` hashes every field of
the ``RecDataset`` (ids, interactions, play counts and times, item and user features, the
catalogue, the feature configuration), the ``ModelConfig`` as the run gives it, the source of
``music_platform.recommender`` and the installed versions of ``TRAINING_PACKAGES``. Any change in
any of them trains a new candidate, as before. A live model whose epoch search was cut by the wall-
time budget is never reused: its epoch count depended on the machine's speed, not on the inputs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from functools import cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

import music_platform.recommender as recommender_package
from music_platform.recommender.registry import ModelRegistry, ModelVersion

# What fits the models (rectools-lightfm is imported as lightfm) and what they are built from.
TRAINING_PACKAGES = ("numpy", "scipy", "pandas", "rectools-lightfm", "implicit", "threadpoolctl")
# Where the fingerprint and the way training ended are kept in the registry (metrics.json).
RECORD_KEY = "training"
STOPPED_BY_BUDGET = "time_budget"
# Where the key of the last evaluation against popularity alone, and its outcome, are kept.
EVALUATION_RECORD_KEY = "evaluation"


def training_fingerprint(dataset: Any, config: dict[str, Any], code_dir: Path | None = None) -> str:
    """Content hash of everything training reads: ``dataset`` (a ``RecDataset``), ``config`` (the
    run's model configuration), the training code under ``code_dir`` (default: the
    ``music_platform.recommender`` package) and the library versions."""
    digest = hashlib.sha256()
    for item in dataclasses.fields(dataset):
        digest.update(f"\x1d{item.name}\x1d".encode())
        _update(digest, getattr(dataset, item.name))
    digest.update(b"\x1dconfig\x1d" + json.dumps(config, sort_keys=True, default=str).encode())
    digest.update(b"\x1dcode\x1d" + _code_digest(code_dir or Path(recommender_package.__file__).parent).encode())
    digest.update(b"\x1dpackages\x1d" + json.dumps(_package_versions()).encode())
    return digest.hexdigest()


def training_record(fingerprint: str, training_info: dict[str, Any]) -> dict[str, Any]:
    """What ``lightfm_model`` stores beside a new version's metrics (``RECORD_KEY``): the
    fingerprint, and whether any epoch search (a blend's LightFM component's too) was cut by the
    wall-time budget."""
    endings = set(_stopped_by(training_info))
    stopped_by = STOPPED_BY_BUDGET if STOPPED_BY_BUDGET in endings else ",".join(sorted(endings))
    return {"fingerprint": fingerprint, "stopped_by": stopped_by}


def _stopped_by(info: Any):
    if isinstance(info, dict):
        for key, value in info.items():
            if key == "stopped_by":
                yield str(value)
            else:
                yield from _stopped_by(value)


def reusable_version(registry: ModelRegistry, fingerprint: str) -> ModelVersion | None:
    """A version trained on exactly these inputs, else None: the live (published) one first, else
    the newest held candidate (status ``candidate``). Rejected and retired versions never are."""
    live = registry.latest_published()
    held = list(reversed(registry.list_versions(status="candidate")))
    for candidate in ([live] if live is not None else []) + held:
        record = candidate.metrics.get(RECORD_KEY) or {}
        if record.get("fingerprint") == fingerprint and record.get("stopped_by") != STOPPED_BY_BUDGET:
            return candidate
    return None


def evaluation_key(fingerprint: str, evaluation_code: Path) -> str:
    """Key of an evaluation against popularity alone: the training inputs' ``fingerprint`` (data,
    configuration -- the split and the gate's settings are in it --, training code, libraries) and
    the source of the module that evaluates (``evaluation_code``)."""
    digest = hashlib.sha256(b"evaluation against popularity\x1d" + fingerprint.encode())
    digest.update(b"\x1d" + evaluation_code.read_bytes())
    return digest.hexdigest()


def standing_evaluation(version: ModelVersion, key: str) -> dict[str, Any] | None:
    """The record of ``version``'s last evaluation (``EVALUATION_RECORD_KEY``) when it was made
    with this ``key``, else None."""
    record = version.metrics.get(EVALUATION_RECORD_KEY) or {}
    return record if record.get("key") == key and record.get("decision") else None


def _update(digest, value: Any) -> None:
    if value is None:
        digest.update(b"\x00none")
    elif isinstance(value, np.ndarray):
        digest.update(f"{value.dtype.str}{value.shape}".encode())
        if value.dtype == object:
            digest.update("\x1f".join(map(str, value.ravel())).encode("utf-8"))
        else:
            digest.update(np.ascontiguousarray(value).tobytes())
    elif sp.issparse(value):
        matrix = sp.csr_matrix(value)
        matrix.sort_indices()
        digest.update(f"sparse{matrix.shape}".encode())
        for array in (matrix.data, matrix.indices, matrix.indptr):
            _update(digest, np.asarray(array))
    elif isinstance(value, pd.DataFrame):
        digest.update(("\x1f".join(map(str, value.columns)) + f"|{value.shape}").encode("utf-8"))
        try:
            hashed = pd.util.hash_pandas_object(value, index=True).to_numpy()
            digest.update(hashed.tobytes())
        except TypeError:  # unhashable cells (lists): their text
            digest.update(value.to_json(orient="split", date_format="iso", default_handler=str).encode("utf-8"))
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        digest.update(json.dumps(dataclasses.asdict(value), sort_keys=True, default=str).encode("utf-8"))
    else:
        digest.update(repr(value).encode("utf-8"))


@cache
def _code_digest(code_dir: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(code_dir.rglob("*.py")):
        digest.update(path.relative_to(code_dir).as_posix().encode() + b"\x1f" + path.read_bytes())
    return digest.hexdigest()


def _package_versions() -> dict[str, str]:
    versions = {}
    for name in TRAINING_PACKAGES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = "absent"
    return versions
