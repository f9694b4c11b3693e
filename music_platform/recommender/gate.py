"""The model gate: may a candidate model be published?

All metric dicts must come from the *same* split (``evaluate_model`` of the candidate, the
popularity baseline and the currently published model on one train/test pair); comparing
figures from different splits would reward a lucky split, not a better model.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import NamedTuple


class GateDecision(NamedTuple):
    publish: bool
    reason: str


def should_publish(
    candidate_metrics: Mapping[str, float],
    baseline_metrics: Mapping[str, float],
    published_metrics: Mapping[str, float] | None = None,
    tolerance: float = 0.02,
    metric: str = "precision@10",
    min_lift: float = 0.0,
    candidate_stderr: float = 0.0,
    published_stderr: float = 0.0,
    noise_sigmas: float = 2.0,
) -> GateDecision:
    """Publish only if the candidate beats popularity and does not regress the published model.

    - ``candidate[metric] > baseline[metric] * (1 + min_lift)`` (strictly better than popularity);
    - if a model is published: ``candidate[metric] >= published[metric] - margin``, where the margin
      is the larger of the relative ``tolerance`` (2% by default) and ``noise_sigmas`` standard
      errors of the difference between the two (from the metrics' standard errors over test users).
      On a small test set two trainings of the same model on the same data differ by more than 2%
      (LightFM trains with several threads, asynchronously); only a drop beyond that noise is
      evidence of a worse model.

    Returns ``GateDecision(publish, reason)``; it unpacks as ``(bool, str)``.
    """
    if tolerance < 0 or min_lift < 0:
        raise ValueError("tolerance and min_lift must be >= 0")
    candidate = _value(candidate_metrics, metric, "candidate")
    baseline = _value(baseline_metrics, metric, "baseline")
    if not math.isfinite(candidate):
        return GateDecision(False, f"candidate {metric} is not a number ({candidate})")
    required = baseline * (1.0 + min_lift)
    if not candidate > required:
        return GateDecision(
            False, f"candidate {metric} {candidate:.4f} does not beat the popularity baseline {baseline:.4f}"
        )
    if published_metrics is not None:
        published = _value(published_metrics, metric, "published")
        noise = noise_sigmas * math.sqrt(candidate_stderr**2 + published_stderr**2)
        margin = max(published * tolerance, noise if math.isfinite(noise) else 0.0)
        floor = published - margin
        allowance = (
            f"the {tolerance:.0%} tolerance" if margin == published * tolerance else f"{noise_sigmas:g} standard errors"
        )
        if candidate < floor:
            return GateDecision(
                False,
                f"candidate {metric} {candidate:.4f} regresses the published model {published:.4f} "
                f"beyond {allowance} (floor {floor:.4f})",
            )
        return GateDecision(
            True,
            f"candidate {metric} {candidate:.4f} beats popularity {baseline:.4f} and is within "
            f"{allowance} of or above the published model {published:.4f} (floor {floor:.4f})",
        )
    return GateDecision(
        True, f"candidate {metric} {candidate:.4f} beats popularity {baseline:.4f}; no published model yet"
    )


def _value(metrics: Mapping[str, float], metric: str, role: str) -> float:
    if metric not in metrics:
        raise KeyError(f"{role} metrics lack {metric!r} (have: {', '.join(sorted(metrics)) or 'none'})")
    return float(metrics[metric])
