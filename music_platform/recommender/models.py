"""Trained models behind one interface, and the classical models (popularity, EASE, implicit ALS).

Every model kind ends up as a :class:`TrainedModel` holding a *scorer*:

- ``score(users, history)`` → dense ``len(users) × n_items`` float32 scores for one batch of users
  (``users`` are the model's user indices, ``-1`` for a listener the model has not seen, who is
  scored from ``history`` alone — fold-in); ``-inf`` marks items the model cannot recommend.
- ``affinity(heard, candidates)`` → how strongly each heard item supports each candidate, used for
  the "because you play X" reasons.
- ``item_vectors()`` → item embeddings for cosine similar-items, or ``None`` (EASE uses its weights).

``history`` is always the users' play counts in the model's item space; each scorer turns it into
the input it was trained on.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd
import scipy.linalg.lapack as lapack
import scipy.sparse as sp

from music_platform.recommender.dataset import RecDataset

MODEL_KINDS = ("popularity", "ease", "als", "lightfm", "blend")


# ---------------------------------------------------------------------------------------
# Scorers
# ---------------------------------------------------------------------------------------
def _row_normalise(matrix: sp.csr_matrix) -> sp.csr_matrix:
    sums = np.asarray(matrix.sum(axis=1)).ravel()
    sums[sums == 0] = 1.0
    return sp.diags((1.0 / sums).astype(np.float32)) @ matrix


@dataclass
class PopularityScorer:
    """Every user gets the items with the most distinct listeners."""

    popularity: np.ndarray  # float32 per item
    min_affinity: float = np.inf  # no item-to-item reasons: always the genre reason

    @property
    def n_items(self) -> int:
        return len(self.popularity)

    def score(self, users: np.ndarray, history: sp.csr_matrix) -> np.ndarray:
        return np.broadcast_to(self.popularity, (len(users), self.n_items)).copy()

    def affinity(self, heard: np.ndarray, candidates: np.ndarray) -> np.ndarray:
        return np.zeros(candidates.shape, dtype=np.float32)

    def item_vectors(self) -> np.ndarray | None:
        return None


@dataclass
class FactorScorer:
    """Dot-product models (LightFM, ALS): ``score = user_vector · item_vector + item_bias``.

    ``fold_in`` says how a listener unknown to the model gets a vector from the items they played:
    ``"mean"`` averages those items' embeddings and rescales to the typical trained-user norm;
    ``"softmax"`` (LightFM, whose item embeddings already contain the item features) starts there
    and takes ``fold_in_steps`` gradient steps (size 0.5) on the log-likelihood of the played
    items under a softmax over all items' scores, pulled back towards the start by
    ``fold_in_l2``; ``"least_squares"`` solves the ALS normal equations for that user with the
    item factors fixed (exact ALS fold-in). The softmax fold-in ranks a new listener's other
    artists better than the mean alone (+0.011 P@10 for LightFM alone on the cold-start splits of
    tuning seeds 101-104 and of seeds 11-13; docs/recommender.md, round three).
    """

    user_vectors: np.ndarray  # (n_users, d) float32
    item_embeddings: np.ndarray  # (n_items, d) float32
    item_bias: np.ndarray  # (n_items,) float32
    fold_in: str = "mean"
    regularization: float = 0.01
    confidence_alpha: float = 1.0
    min_affinity: float = 0.2  # cosine below this is no reason to cite a heard item
    fold_in_l2: float = 1.0  # "softmax": pull towards the mean fold-in
    fold_in_steps: int = 10  # "softmax": gradient steps

    def __post_init__(self) -> None:
        norms = np.linalg.norm(self.user_vectors, axis=1)
        self._typical_user_norm = float(np.median(norms[norms > 0])) if (norms > 0).any() else 1.0
        # Bias folded into the product: one GEMM per batch instead of GEMM + broadcast add.
        self._items_aug = np.ascontiguousarray(
            np.hstack([self.item_embeddings, self.item_bias[:, None]]).astype(np.float32).T
        )
        unit = np.linalg.norm(self.item_embeddings, axis=1, keepdims=True)
        unit[unit == 0] = 1.0
        self._unit_items = (self.item_embeddings / unit).astype(np.float32)

    @property
    def n_items(self) -> int:
        return len(self.item_bias)

    def _fold_in(self, history: sp.csr_matrix) -> np.ndarray:
        binary = history.copy()
        binary.data = np.ones_like(binary.data)
        if self.fold_in == "least_squares":
            factors = self.item_embeddings.astype(np.float64)
            gram = factors.T @ factors + self.regularization * np.eye(factors.shape[1])
            out = np.zeros((history.shape[0], factors.shape[1]), dtype=np.float32)
            for row in range(history.shape[0]):  # only unknown listeners: a handful per request
                lo, hi = history.indptr[row], history.indptr[row + 1]
                if lo == hi:
                    continue
                items = history.indices[lo:hi]
                confidence = 1.0 + self.confidence_alpha * np.log1p(history.data[lo:hi])
                sub = factors[items]
                lhs = gram + (sub.T * (confidence - 1.0)) @ sub
                out[row] = np.linalg.solve(lhs, sub.T @ confidence)
            return out
        vectors = np.asarray(_row_normalise(binary) @ self.item_embeddings, dtype=np.float32)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        norms[norms == 0] = 1.0
        start = vectors / norms * self._typical_user_norm
        if self.fold_in != "softmax":
            return start
        return self._softmax_fold_in(vectors, start, np.diff(binary.indptr) > 0)

    def _softmax_fold_in(self, target: np.ndarray, start: np.ndarray, played: np.ndarray) -> np.ndarray:
        """Gradient ascent from ``start`` on Σ log softmax(v · items + bias)[played] / |played|
        − ``fold_in_l2``/2 · ‖v − start‖² (``target`` is the played items' mean embedding, the
        likelihood's positive part). Item embeddings are fixed; a few steps per request."""
        # Versions pickled before the softmax fold-in existed never get here (their fold_in is "mean").
        from threadpoolctl import threadpool_limits  # a dependency of implicit

        l2, steps = float(getattr(self, "fold_in_l2", 1.0)), int(getattr(self, "fold_in_steps", 10))
        vectors = start.astype(np.float32, copy=True)
        # A request folds in one listener: its matrix-vector products are too small for BLAS
        # threads, which only spin (on 2 busy cores ~6× the CPU time of one thread).
        with threadpool_limits(1 if len(vectors) <= 16 else None, "blas"):
            self._softmax_steps(vectors, target, start, l2, steps)
        vectors[~played] = 0.0  # no history: no vector (the caller's popularity answer)
        return vectors

    def _softmax_steps(self, vectors: np.ndarray, target: np.ndarray, start: np.ndarray, l2: float, steps: int) -> None:
        items, bias = self.item_embeddings, self.item_bias
        # Rows in chunks: one chunk's rows × items probabilities at a time (≤ 256 × items floats).
        for lo in range(0, len(vectors), 256):
            begin = start[lo : lo + 256].astype(np.float32)
            chunk = begin.copy()
            for _ in range(steps):
                logits = chunk @ items.T + bias[None, :]
                logits -= logits.max(axis=1, keepdims=True)
                prob = np.exp(logits)
                prob /= prob.sum(axis=1, keepdims=True)
                chunk += 0.5 * (target[lo : lo + 256] - prob @ items - l2 * (chunk - begin))
            vectors[lo : lo + 256] = chunk

    def user_batch_vectors(self, users: np.ndarray, history: sp.csr_matrix) -> np.ndarray:
        vectors = np.empty((len(users), self.user_vectors.shape[1]), dtype=np.float32)
        known = users >= 0
        vectors[known] = self.user_vectors[users[known]]
        if (~known).any():
            vectors[~known] = self._fold_in(history[np.flatnonzero(~known)])
        return vectors

    def score(self, users: np.ndarray, history: sp.csr_matrix) -> np.ndarray:
        vectors = self.user_batch_vectors(users, history)
        augmented = np.hstack([vectors, np.ones((len(users), 1), dtype=np.float32)])
        return augmented @ self._items_aug

    def affinity(self, heard: np.ndarray, candidates: np.ndarray) -> np.ndarray:
        """Cosine between each heard item (n,) and the candidates of its user (n, k)."""
        out = np.einsum("nd,nkd->nk", self._unit_items[heard], self._unit_items[np.maximum(candidates, 0)])
        return np.where(candidates >= 0, out, -np.inf).astype(np.float32)

    def item_vectors(self) -> np.ndarray | None:
        return self.item_embeddings


@dataclass
class EaseScorer:
    """EASE (Steck 2019): ``score = x_user @ B`` with a zero-diagonal item-item matrix ``B``.

    ``B`` covers only the ``active_items`` (enough training listeners to learn weights for);
    other items are never recommended by EASE alone. ``weights`` is dense for small catalogues
    and otherwise sparse, keeping each target item's strongest sources by magnitude.
    """

    weights: np.ndarray | sp.csr_matrix  # (n_active, n_active): weights[i, j] = support of source i for target j
    active_items: np.ndarray  # int64 item indices covered by ``weights``
    n_total_items: int
    input_alpha: float | None = None  # None: binary input; else 1 + alpha*log1p(count)
    min_affinity: float = 0.0

    def __post_init__(self) -> None:
        self.position = np.full(self.n_total_items, -1, dtype=np.int64)
        self.position[self.active_items] = np.arange(len(self.active_items))

    @property
    def n_items(self) -> int:
        return self.n_total_items

    @property
    def active(self) -> np.ndarray:
        return self.position >= 0

    def transform(self, history: sp.csr_matrix) -> sp.csr_matrix:
        x = history[:, self.active_items].astype(np.float32)
        x.data = np.ones_like(x.data) if self.input_alpha is None else 1.0 + self.input_alpha * np.log1p(x.data)
        return x

    def _full(self, sub_scores: Any, fill: float) -> np.ndarray:
        if sp.issparse(sub_scores):
            sub_scores = sub_scores.toarray()
        out = np.full((sub_scores.shape[0], self.n_total_items), fill, dtype=np.float32)
        out[:, self.active_items] = sub_scores
        return out

    def raw_score(self, users: np.ndarray, history: sp.csr_matrix) -> np.ndarray:
        """Scores with 0 (no evidence) for items outside the active set, for blending."""
        return self._full(self.transform(history) @ self.weights, 0.0)

    def score(self, users: np.ndarray, history: sp.csr_matrix) -> np.ndarray:
        return self._full(self.transform(history) @ self.weights, -np.inf)

    def affinity(self, heard: np.ndarray, candidates: np.ndarray) -> np.ndarray:
        """``B[heard, candidate]``: the weight the heard item contributes to the candidate's score."""
        source = np.repeat(self.position[heard], candidates.shape[1])
        target = self.position[np.maximum(candidates, 0)].ravel()
        ok = (source >= 0) & (target >= 0)
        values = np.zeros(source.shape, dtype=np.float32)
        if ok.any():
            picked = self.weights[source[ok], target[ok]]
            values[ok] = np.asarray(picked).ravel()
        values = values.reshape(candidates.shape)
        return np.where(candidates >= 0, values, -np.inf).astype(np.float32)

    def item_rows(self, items: np.ndarray) -> np.ndarray:
        """Dense ``B[item, :]`` over all items (``-inf`` outside the active set) for similar items."""
        rows = np.full((len(items), self.n_total_items), -np.inf, dtype=np.float32)
        known = self.position[items] >= 0
        if known.any():
            sub = self.weights[self.position[items[known]]]
            rows[np.flatnonzero(known)[:, None], self.active_items[None, :]] = (
                sub.toarray() if sp.issparse(sub) else sub
            )
        return rows

    def item_vectors(self) -> np.ndarray | None:
        return None


def _standardise_rows(scores: np.ndarray) -> np.ndarray:
    finite = np.isfinite(scores)
    filled = np.where(finite, scores, np.nan)
    mean = np.nanmean(filled, axis=1, keepdims=True)
    std = np.nanstd(filled, axis=1, keepdims=True)
    std[~(std > 0)] = 1.0
    return np.where(finite, (scores - mean) / std, -np.inf).astype(np.float32)


@dataclass
class BlendScorer:
    """Weighted sum of per-user standardised scores of several models (z-scores per row).

    Standardising per user makes scores of different scales (LightFM dot products, EASE
    weights) comparable without a global calibration. An item is unrecommendable only when no
    component can score it; EASE contributes its raw score (0 for items it has no weights for).

    Listeners the model has never seen (``users == -1``: cold start, a few named artists folded
    in) get ``cold_weights`` instead of ``weights`` when set, plus ``cold_prior_weight`` × the
    standardised log popularity ``prior``. The folds-in differ in quality from the trained user
    vectors (LightFM's is a mean of item representations, ALS's an exact least-squares solve), so
    the mix that ranks best for a five-artist history is not the warm one (docs/recommender.md).
    """

    components: list[Any]
    weights: list[float]
    explainer: int = 0  # which component's affinity explains recommendations
    similarity: int = 0  # which component's embeddings give similar items
    cold_weights: list[float] | None = None  # per component, for listeners folded in from history
    cold_prior_weight: float = 0.0
    prior_weight: float = 0.0  # for trained listeners (negative: a popularity penalty)
    prior: np.ndarray | None = None  # log1p(training listeners) per item
    names: list[str] | None = None  # the components' model kinds (None: pickled before they were kept)

    @property
    def n_items(self) -> int:
        return self.components[0].n_items

    @property
    def min_affinity(self) -> float:
        return self.components[self.explainer].min_affinity

    def _row_weights(self, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(n_users × n_components weights, n_users prior weights); versions pickled before the
        cold-start weights existed have no such attributes and score every listener alike."""
        warm = np.asarray(self.weights, dtype=np.float32)
        per_row = np.broadcast_to(warm, (len(users), len(warm))).copy()
        # Versions pickled before the warm prior existed have no prior_weight: 0.
        prior = np.full(len(users), float(getattr(self, "prior_weight", 0.0)), dtype=np.float32)
        cold_weights = getattr(self, "cold_weights", None)
        unknown = users < 0
        if cold_weights is not None and unknown.any():
            per_row[unknown] = np.asarray(cold_weights, dtype=np.float32)
            prior[unknown] = float(getattr(self, "cold_prior_weight", 0.0))
        return per_row, prior

    def score(self, users: np.ndarray, history: sp.csr_matrix) -> np.ndarray:
        per_row, prior_weight = self._row_weights(users)
        total = np.zeros((len(users), self.n_items), dtype=np.float32)
        for slot, component in enumerate(self.components):
            column = per_row[:, slot]
            if not column.any():
                continue  # e.g. a component only the warm or only the cold mix uses
            raw = (
                component.raw_score(users, history)
                if isinstance(component, EaseScorer)
                else component.score(users, history)
            )
            total += column[:, None] * _standardise_rows(raw)
        prior = getattr(self, "prior", None)
        if prior is not None and prior_weight.any():
            std = float(prior.std()) or 1.0
            total += prior_weight[:, None] * ((prior - prior.mean()) / std)[None, :].astype(np.float32)
        return total

    def affinity(self, heard: np.ndarray, candidates: np.ndarray) -> np.ndarray:
        return self.components[self.explainer].affinity(heard, candidates)

    def item_vectors(self) -> np.ndarray | None:
        return self.components[self.similarity].item_vectors()

    def similarity_scorer(self) -> Any:
        return self.components[self.similarity]


# ---------------------------------------------------------------------------------------
# The trained model
# ---------------------------------------------------------------------------------------
@dataclass
class TrainedModel:
    """A fitted model with everything needed to score without the training dataset:
    id mappings, item catalogue (names for cold start and reasons), train popularity, params."""

    kind: str
    scorer: Any
    user_ids: np.ndarray
    item_ids: np.ndarray
    catalog: pd.DataFrame
    item_popularity: np.ndarray  # distinct training listeners per item
    params: dict[str, Any]
    fit_seconds: float
    training_info: dict[str, Any] = field(default_factory=dict)
    estimator: Any = None  # the underlying LightFM / implicit object, kept for inspection
    version: str | None = None

    @cached_property
    def user_index(self) -> dict[str, int]:
        return {str(u): i for i, u in enumerate(self.user_ids)}

    @cached_property
    def item_index(self) -> dict[str, int]:
        return {str(t): i for i, t in enumerate(self.item_ids)}

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        for cached in ("user_index", "item_index", "_catalog_lookup"):
            state.pop(cached, None)  # cached lookups are rebuilt after unpickling
        return state


def _base_model(kind: str, train: RecDataset, scorer: Any, params: Any, started: float, **extra: Any) -> TrainedModel:
    return TrainedModel(
        kind=kind,
        scorer=scorer,
        user_ids=train.user_ids,
        item_ids=train.item_ids,
        catalog=train.catalog,
        item_popularity=train.item_user_counts.copy(),
        params=asdict(params) if params is not None else {},
        fit_seconds=time.perf_counter() - started,
        **extra,
    )


# ---------------------------------------------------------------------------------------
# Popularity
# ---------------------------------------------------------------------------------------
def train_popularity(train: RecDataset) -> TrainedModel:
    started = time.perf_counter()
    return _base_model("popularity", train, PopularityScorer(train.item_user_counts.copy()), None, started)


# ---------------------------------------------------------------------------------------
# EASE
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class EaseParams:
    """EASE hyperparameters.

    Chosen on validation splits inside HetRec training data (outer seeds 101-102,
    benchmarks/recommender_tuning.py): ``l2=100`` was best on a 50..800 grid; binary input beat
    log play counts; items need ``min_item_users=2`` training listeners (an item heard by one user
    has no co-occurrence to learn from, and dropping those makes the O(n³) inverse ~10× cheaper).
    Up to ``dense_up_to`` active items ``B`` stays dense (≤ 256 MB); beyond, each item keeps its
    ``top_neighbours`` strongest weights by magnitude (1024 cost ~1% of validation P@10).
    """

    l2: float = 100.0
    min_item_users: int = 2
    max_items: int | None = 20_000  # the dense Gram inverse is O(n³): cap the catalogue it covers
    dense_up_to: int = 8_000
    top_neighbours: int = 1024
    input_alpha: float | None = None  # None: binary interactions (best on validation)


def _ease_weights(x: sp.csr_matrix, l2: float) -> np.ndarray:
    gram = np.asarray((x.T @ x).toarray(), dtype=np.float32)
    gram[np.diag_indices_from(gram)] += l2
    # Cholesky-based inverse (potrf + potri): half the flops of LU, and G + λI is positive definite.
    factor, info = lapack.spotrf(gram, lower=False, overwrite_a=True, clean=False)
    if info != 0:
        raise np.linalg.LinAlgError(f"EASE Gram matrix is not positive definite (potrf info={info})")
    inverse, info = lapack.spotri(factor, lower=False, overwrite_c=True)
    if info != 0:
        raise np.linalg.LinAlgError(f"EASE Gram inverse failed (potri info={info})")
    inverse = np.triu(inverse)
    inverse += np.triu(inverse, 1).T
    weights = inverse / (-np.diag(inverse))[None, :]
    np.fill_diagonal(weights, 0.0)
    return weights


def _keep_top_per_column(dense: np.ndarray, top: int) -> sp.csr_matrix:
    n = dense.shape[0]
    # Strongest sources per target by magnitude: EASE's negative weights matter as much as its positive ones.
    rows = np.argpartition(-np.abs(dense), top - 1, axis=0)[:top]  # (top, n)
    cols = np.broadcast_to(np.arange(n), rows.shape)
    values = dense[rows, cols]
    return sp.csr_matrix((values.ravel(), (rows.ravel(), cols.ravel())), shape=dense.shape, dtype=np.float32)


def train_ease(train: RecDataset, params: EaseParams | None = None) -> TrainedModel:
    params = params or EaseParams()
    started = time.perf_counter()
    listeners = train.item_user_counts
    active = listeners >= params.min_item_users
    if params.max_items is not None and active.sum() > params.max_items:
        # The most-listened items: all of them clear min_item_users since more than max_items do.
        active = np.zeros_like(active)
        active[np.argsort(-listeners, kind="stable")[: params.max_items]] = True
    active_items = np.flatnonzero(active)
    x = train.interactions if params.input_alpha is None else train.confidence(params.input_alpha)
    weights: np.ndarray | sp.csr_matrix = _ease_weights(x[:, active_items].tocsr(), params.l2)
    if len(active_items) > params.dense_up_to and params.top_neighbours < len(active_items):
        weights = _keep_top_per_column(weights, params.top_neighbours)
    scorer = EaseScorer(
        weights=weights, active_items=active_items, n_total_items=train.n_items, input_alpha=params.input_alpha
    )
    return _base_model("ease", train, scorer, params, started, training_info={"active_items": len(active_items)})


# ---------------------------------------------------------------------------------------
# Top-artist co-occurrence (for listeners folded in from a few named favourites)
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CooccurrenceParams:
    """How strongly each item's *favourite* status predicts the rest of a library.

    A new listener names their favourite artists, not a random sample of what they play. The
    weight of source ``i`` for target ``j`` estimates P(j in a library | i among that library's
    ``top_k`` most played), smoothed towards P(j in a library | i in it) and damped by ``j``'s
    popularity::

        w[i, j] = (T[i, j] + smoothing · C[i, j]) / (t[i] + smoothing · n[i]) / n[j] ** popularity_exponent

    with ``C`` co-listeners, ``T`` listeners having ``i`` among their top ``top_k`` and ``j`` in
    their library, ``n`` listeners and ``t`` top-``top_k`` listeners per item (training data only).
    Chosen on the cold-start splits of tuning seeds 101 and 102 (docs/recommender.md, "A model for
    the cold-start task"): top 10, smoothing 0.3 and exponent 0.3 at weight 0.1 in the cold-start
    mix gained on both seeds with each of three LightFM fits (mean +0.009 P@10); weight 0.2, or
    exponent 0.5 at weight 0.2, lost.

    Like EASE it covers the ``max_items`` most-listened items (its cost is one pass of
    co-listening counts over them, in blocks of ``block_items`` sources) and keeps each source's
    ``top_neighbours`` largest weights.
    """

    top_k: int = 10
    smoothing: float = 0.3
    popularity_exponent: float = 0.3
    max_items: int | None = 8_000
    top_neighbours: int = 512
    block_items: int = 1_024

    def __post_init__(self) -> None:
        if self.top_k < 1 or self.top_neighbours < 1 or self.block_items < 1:
            raise ValueError("top_k, top_neighbours and block_items must be >= 1")
        if not self.smoothing > 0:
            raise ValueError(f"smoothing must be > 0 (an item nobody has among their favourites), got {self.smoothing}")


@dataclass
class CooccurrenceScorer(EaseScorer):
    """Scores like EASE (binary history × item-item ``weights``), with top-artist co-occurrence
    weights (``CooccurrenceParams``): all non-negative, diagonal zero, sparse."""


def top_items_per_user(counts: sp.csr_matrix, k: int) -> sp.csr_matrix:
    """Binary matrix of each user's ``k`` most-played items (ties: lower item index first), the
    rule ``cold_start_split`` uses for the artists a new listener names."""
    coo = counts.tocoo()
    order = np.lexsort((coo.col, -coo.data, coo.row))
    rows, cols = coo.row[order], coo.col[order]
    starts = np.searchsorted(rows, rows, side="left")
    keep = (np.arange(len(rows)) - starts) < k
    return sp.csr_matrix((np.ones(int(keep.sum()), dtype=np.float32), (rows[keep], cols[keep])), shape=counts.shape)


def cooccurrence_weights(
    library: sp.csr_matrix, favourites: sp.csr_matrix, params: CooccurrenceParams
) -> sp.csr_matrix:
    """``w[i, j]`` of ``CooccurrenceParams`` over the items (columns) of ``library`` (users × items,
    any non-zero is a listen) and ``favourites`` (the users' top items, ``top_items_per_user``)."""
    x = library.tocsr().astype(np.float32)
    x.data = np.ones_like(x.data)
    top = favourites.tocsr().astype(np.float32)
    top.data = np.ones_like(top.data)
    listeners = np.asarray(x.sum(axis=0)).ravel()
    favoured = np.asarray(top.sum(axis=0)).ravel()
    denominator = favoured + params.smoothing * listeners
    denominator[denominator == 0] = 1.0  # an item nobody plays: its row is all zero anyway
    target_scale = (1.0 / np.maximum(listeners, 1.0) ** params.popularity_exponent).astype(np.float32)
    x_t, top_t = x.T.tocsr(), top.T.tocsr()
    n = x.shape[1]
    keep = min(params.top_neighbours, n)
    rows, cols, values = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)], [np.zeros(0, np.float32)]
    for begin in range(0, n, params.block_items):
        block = np.arange(begin, min(begin + params.block_items, n))
        numerator = (top_t[block] @ x).toarray() + params.smoothing * (x_t[block] @ x).toarray()
        weights = numerator / denominator[block, None] * target_scale[None, :]
        weights[np.arange(len(block)), block] = 0.0
        if keep < n:
            picked = np.argpartition(-weights, keep - 1, axis=1)[:, :keep]
        else:
            picked = np.broadcast_to(np.arange(n), (len(block), n))
        chosen = np.take_along_axis(weights, picked, axis=1)
        nonzero = chosen > 0
        rows.append(np.repeat(block, nonzero.sum(axis=1)))
        cols.append(picked[nonzero])
        values.append(chosen[nonzero])
    return sp.csr_matrix(
        (np.concatenate(values).astype(np.float32), (np.concatenate(rows), np.concatenate(cols))),
        shape=(n, n),
    )


def train_cooccurrence(train: RecDataset, params: CooccurrenceParams | None = None) -> TrainedModel:
    params = params or CooccurrenceParams()
    started = time.perf_counter()
    listeners = train.item_user_counts
    active = listeners > 0
    if params.max_items is not None and active.sum() > params.max_items:
        active = np.zeros_like(active)
        active[np.argsort(-listeners, kind="stable")[: params.max_items]] = True
    active_items = np.flatnonzero(active)
    # Favourites are ranked over the whole library, then restricted to the covered items.
    top = top_items_per_user(train.play_counts, params.top_k)[:, active_items]
    weights = cooccurrence_weights(train.interactions[:, active_items], top, params)
    scorer = CooccurrenceScorer(weights=weights, active_items=active_items, n_total_items=train.n_items)
    return _base_model(
        "cooccurrence", train, scorer, params, started, training_info={"active_items": len(active_items)}
    )


# ---------------------------------------------------------------------------------------
# Tag similarity (content; for listeners folded in from a few named items)
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TagSimilarityParams:
    """The tf-idf cosine between the named items' tag profile and every item's.

    Items' tag weights are the ``feature_prefix`` columns of the training data's item features
    (the LightFM hybrid's leak-free tags), each tag weighted by log((1 + items) / (1 + items
    carrying it)), rows L2-normalised. A new listener's score for item j is Σ over the named items
    i of cos(i, j). Weight 0.05 in the cold-start mix was chosen with the softmax fold-in on the
    cold-start splits of tuning seeds 101-104 (docs/recommender.md, round three).
    """

    feature_prefix: str = "tag:"


@dataclass
class TagSimilarityScorer:
    """Scores by tag-profile cosine: ``(history @ tags) @ tags.T`` with ``tags`` items × tags (tf-idf,
    rows of unit length); 0 for items without tags. Reasons: the cosine of two items' profiles."""

    tags: sp.csr_matrix
    min_affinity: float = 0.2

    @property
    def n_items(self) -> int:
        return self.tags.shape[0]

    def score(self, users: np.ndarray, history: sp.csr_matrix) -> np.ndarray:
        binary = history.astype(np.float32)
        binary.data = np.ones_like(binary.data)
        profile = binary @ self.tags
        return np.asarray((profile @ self.tags.T).todense(), dtype=np.float32)

    def affinity(self, heard: np.ndarray, candidates: np.ndarray) -> np.ndarray:
        rows = self.tags[np.repeat(heard, candidates.shape[1])]
        others = self.tags[np.maximum(candidates, 0).ravel()]
        values = np.asarray(rows.multiply(others).sum(axis=1)).ravel().reshape(candidates.shape)
        return np.where(candidates >= 0, values, -np.inf).astype(np.float32)

    def item_vectors(self) -> np.ndarray | None:
        return None


def train_tag_similarity(train: RecDataset, params: TagSimilarityParams | None = None) -> TrainedModel:
    params = params or TagSimilarityParams()
    started = time.perf_counter()
    names = np.asarray(train.item_feature_names).astype(str)
    columns = np.flatnonzero(np.char.startswith(names, params.feature_prefix))
    tags = train.item_features.tocsc()[:, columns].tocsr().astype(np.float32)
    carriers = np.asarray((tags > 0).sum(axis=0)).ravel()
    tags = sp.csr_matrix(tags @ sp.diags(np.log((1.0 + tags.shape[0]) / (1.0 + carriers)).astype(np.float32)))
    norms = np.sqrt(np.asarray(tags.multiply(tags).sum(axis=1)).ravel())
    tags = sp.csr_matrix(sp.diags((1.0 / np.where(norms > 0, norms, 1.0)).astype(np.float32)) @ tags)
    return _base_model(
        "tags", train, TagSimilarityScorer(tags), params, started, training_info={"tags": int(len(columns))}
    )


# ---------------------------------------------------------------------------------------
# implicit ALS
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ALSParams:
    """implicit ALS.

    Chosen on validation splits inside HetRec training data (outer seeds 101-102,
    benchmarks/recommender_tuning.py; grid factors 16-128 × regularization 0.01-10 × alpha
    0.5-4): few factors win on data this small (24 ≈ 32 > 64 > 128); regularization barely
    matters; alpha 1 on log play counts.
    """

    factors: int = 24
    regularization: float = 1.0
    iterations: int = 15
    confidence_alpha: float = 1.0  # confidence = 1 + alpha*log1p(count)
    num_threads: int = 2
    random_state: int = 42


def train_als(train: RecDataset, params: ALSParams | None = None) -> TrainedModel:
    from implicit.cpu.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits  # a dependency of implicit

    params = params or ALSParams()
    started = time.perf_counter()
    # implicit parallelises over users itself; a threaded BLAS underneath only oversubscribes the cores.
    with threadpool_limits(1, "blas"):
        model = AlternatingLeastSquares(
            factors=params.factors,
            regularization=params.regularization,
            alpha=1.0,  # the confidence matrix below already carries the weighting
            iterations=params.iterations,
            random_state=params.random_state,
            num_threads=params.num_threads,
            calculate_training_loss=False,
        )
        model.fit(train.confidence(params.confidence_alpha), show_progress=False)
    scorer = FactorScorer(
        user_vectors=np.asarray(model.user_factors, dtype=np.float32),
        item_embeddings=np.asarray(model.item_factors, dtype=np.float32),
        item_bias=np.zeros(train.n_items, dtype=np.float32),
        fold_in="least_squares",
        regularization=params.regularization,
        confidence_alpha=params.confidence_alpha,
    )
    return _base_model("als", train, scorer, params, started, estimator=model)
