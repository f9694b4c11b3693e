"""The model gate: may a candidate model be published?

``paired_gate`` is the pipeline's gate: a paired t-test over test users of per-user NDCG@10
against popularity and against the live model, with minimum lifts; it answers publish, hold
(kept as a candidate) or reject. ``should_publish`` is the older mean-only comparison, kept for
callers that only have aggregate metrics.

All metric dicts must come from the *same* split (``evaluate_model`` of the candidate, the
popularity baseline and the currently published model on one train/test pair); comparing
figures from different splits would reward a lucky split, not a better model.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import NamedTuple

import numpy as np
from scipy import stats


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


# ---------------------------------------------------------------------------------------
# The paired gate: per-user differences on one split
# ---------------------------------------------------------------------------------------
PUBLISH, HOLD, REJECT = "publish", "hold", "reject"


class PairedComparison(NamedTuple):
    """Candidate minus reference, per user, on the same test users."""

    reference: str
    users: int
    candidate_mean: float
    reference_mean: float
    mean_difference: float
    stderr: float
    ci_low: float
    ci_high: float
    t_statistic: float
    p_value: float  # two-sided, paired t-test
    required_lift: float  # the absolute difference the candidate must clear

    def as_dict(self) -> dict[str, float | int | str]:
        return {key: (round(value, 6) if isinstance(value, float) else value) for key, value in self._asdict().items()}


def paired_comparison(
    candidate: np.ndarray, reference: np.ndarray, name: str, min_relative_lift: float = 0.0, confidence: float = 0.95
) -> PairedComparison:
    """Paired t-test over users of ``candidate - reference`` (e.g. per-user NDCG@10).

    ``required_lift`` = ``min_relative_lift`` × the reference's mean: the lower confidence bound of
    the mean difference must clear it for the candidate to count as clearly better.
    """
    candidate = np.asarray(candidate, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    if candidate.shape != reference.shape:
        raise ValueError(f"paired values must align per user: {candidate.shape} vs {reference.shape}")
    ok = np.isfinite(candidate) & np.isfinite(reference)
    diff = candidate[ok] - reference[ok]
    n = int(diff.size)
    if n < 2:
        raise ValueError(f"a paired test needs at least 2 users with finite values, got {n}")
    mean = float(diff.mean())
    stderr = float(diff.std(ddof=1) / math.sqrt(n))
    critical = float(stats.t.ppf(0.5 + confidence / 2, df=n - 1))
    if stderr > 0:
        t_stat = mean / stderr
        p_value = float(2 * stats.t.sf(abs(t_stat), df=n - 1))
    else:  # identical rankings for every user (or a constant shift)
        t_stat = 0.0 if mean == 0 else math.copysign(math.inf, mean)
        p_value = 1.0 if mean == 0 else 0.0
    return PairedComparison(
        reference=name,
        users=n,
        candidate_mean=float(candidate[ok].mean()),
        reference_mean=float(reference[ok].mean()),
        mean_difference=mean,
        stderr=stderr,
        ci_low=mean - critical * stderr,
        ci_high=mean + critical * stderr,
        t_statistic=float(t_stat),
        p_value=p_value,
        required_lift=float(min_relative_lift * reference[ok].mean()),
    )


class PairedGateDecision(NamedTuple):
    decision: str  # publish | hold | reject
    reason: str
    comparisons: dict[str, PairedComparison]

    @property
    def publish(self) -> bool:
        return self.decision == PUBLISH

    def as_dict(self) -> dict:
        return {
            "decision": self.decision,
            "reason": self.reason,
            "comparisons": {name: c.as_dict() for name, c in self.comparisons.items()},
        }


def paired_gate(
    candidate: np.ndarray,
    popularity: np.ndarray,
    live: np.ndarray | None = None,
    metric: str = "ndcg@10",
    min_lift_vs_popularity: float = 0.10,
    min_lift_vs_live: float = 0.0,
    confidence: float = 0.95,
    hold_unless_better: bool = True,
) -> PairedGateDecision:
    """publish / hold / reject from per-user ``metric`` values of the candidate, popularity and the
    live model, all on the same test users.

    - **reject** unless the candidate beats popularity clearly: the lower ``confidence`` bound of
      the mean per-user difference exceeds ``min_lift_vs_popularity`` × popularity's mean;
    - no live model: **publish**;
    - **reject** when clearly worse than the live model (upper bound below 0);
    - **publish** when clearly better than the live model (lower bound above
      ``min_lift_vs_live`` × the live mean); otherwise **hold**: kept as a candidate, not
      published (``hold_unless_better=False`` publishes such a candidate instead, e.g. to
      refresh a model on new data without demanding a lift).
    """
    comparisons = {
        "popularity": paired_comparison(candidate, popularity, "popularity", min_lift_vs_popularity, confidence)
    }
    pop = comparisons["popularity"]
    level = f"{confidence:.0%}"
    if not pop.ci_low > pop.required_lift:
        return PairedGateDecision(
            REJECT,
            f"candidate {metric} {pop.candidate_mean:.4f} vs popularity {pop.reference_mean:.4f}: the {level} lower "
            f"bound of the paired difference ({pop.ci_low:+.4f}) does not clear the minimum lift "
            f"{pop.required_lift:+.4f} ({min_lift_vs_popularity:.0%}) over {pop.users} users",
            comparisons,
        )
    beats = (
        f"beats popularity by {pop.mean_difference:+.4f} {metric} (lower bound {pop.ci_low:+.4f}, "
        f"p={pop.p_value:.2g}, {pop.users} users)"
    )
    if live is None:
        return PairedGateDecision(PUBLISH, f"candidate {beats}; no live model yet", comparisons)
    comparisons["live"] = paired_comparison(candidate, live, "live", min_lift_vs_live, confidence)
    cmp = comparisons["live"]
    versus = (
        f"vs live {cmp.reference_mean:.4f}: difference {cmp.mean_difference:+.4f} "
        f"[{cmp.ci_low:+.4f}, {cmp.ci_high:+.4f}] ({level}), p={cmp.p_value:.2g}"
    )
    if cmp.ci_high < 0:
        return PairedGateDecision(
            REJECT, f"candidate {metric} is clearly worse than the live model: {versus}", comparisons
        )
    if cmp.ci_low > cmp.required_lift:
        return PairedGateDecision(
            PUBLISH, f"candidate {beats}, and is clearly better than the live model: {versus}", comparisons
        )
    if not hold_unless_better:
        return PairedGateDecision(
            PUBLISH, f"candidate {beats}, and is not clearly worse than the live model: {versus}", comparisons
        )
    return PairedGateDecision(
        HOLD,
        f"candidate {beats}, but is not clearly better than the live model (needs lower bound > "
        f"{cmp.required_lift:+.4f}): {versus}; kept as a candidate, the live model stays",
        comparisons,
    )
