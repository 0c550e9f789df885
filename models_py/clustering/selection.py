"""The model sweep: score every (space, algorithm, K) and pick one by an explicit rule.

Each candidate gets two silhouettes. The *own-space* one is what the reference
projects reported; it flatters UMAP-style spaces, which are built to pull
neighbours together, so the silhouette *in the scaled feature space* is reported
beside it as the honest measure of how separated the customers really are.
Davies-Bouldin and Calinski-Harabasz (own space) are reported for context.

Speed: silhouettes are quadratic, so they are computed from one pairwise distance
matrix per space on a fixed-seed sample of at most ``silhouette_sample_size``
points (the SAME points for every candidate, so the comparison is fair), with a
vectorised formula (one matrix product per candidate) instead of scikit-learn's
per-call chunked loop. Ward's tree is built once per space and only cut per K.

Selection rule: among *eligible* candidates (K in the business range, smallest
cluster at least ``min_cluster_share`` of the customers, and for the K-driven
algorithms exactly the requested K), the highest ``selection_metric``; ties go to
the earlier row (spaces and algorithms in config order, then smaller K).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from scipy.spatial.distance import cdist
from sklearn.metrics import adjusted_rand_score, calinski_harabasz_score, davies_bouldin_score
from threadpoolctl import threadpool_limits

from models_py.clustering import algorithms
from models_py.clustering.algorithms import Partition
from models_py.clustering.config import ClusteringConfig

CANDIDATE_COLUMNS: tuple[str, ...] = (
    "space",
    "algorithm",
    "k_requested",
    "k",
    "silhouette",
    "silhouette_features",
    "davies_bouldin",
    "calinski_harabasz",
    "min_cluster_share",
    "eligible",
    "chosen",
)


def silhouette_from_distances(distances: np.ndarray, labels: np.ndarray) -> float:
    """Mean silhouette from a square distance matrix; same definition as scikit-learn.

    Per point: a = mean distance to its own cluster (excluding itself), b = lowest
    mean distance to another cluster, s = (b - a) / max(a, b), and s = 0 for
    points alone in their cluster. NaN when there are fewer than 2 clusters or as
    many clusters as points (silhouette undefined).
    """
    n = len(labels)
    clusters, inverse = np.unique(labels, return_inverse=True)
    k = len(clusters)
    if k < 2 or k >= n:
        return float("nan")
    onehot = np.zeros((n, k))
    onehot[np.arange(n), inverse] = 1.0
    sums = distances @ onehot  # distance of each point to all points of each cluster
    counts = onehot.sum(axis=0)
    rows = np.arange(n)
    own_size = counts[inverse]
    a = sums[rows, inverse] / np.maximum(own_size - 1, 1)
    means = sums / counts
    means[rows, inverse] = np.inf
    b = means.min(axis=1)
    denominator = np.maximum(a, b)
    with np.errstate(invalid="ignore", divide="ignore"):
        s = np.where(denominator > 0, (b - a) / denominator, 0.0)
    s[own_size == 1] = 0.0
    return float(s.mean())


@dataclass
class Sweep:
    """Outcome of :func:`run_sweep`: the scored table and each candidate's partition."""

    candidates: pd.DataFrame
    partitions: list[Partition]

    @property
    def chosen_index(self) -> int:
        return int(np.flatnonzero(self.candidates["chosen"].to_numpy())[0])


def silhouette_sample(n_points: int, config: ClusteringConfig) -> np.ndarray:
    """Fixed-seed, sorted indices of the points used for every silhouette."""
    if n_points <= config.silhouette_sample_size:
        return np.arange(n_points)
    rng = np.random.default_rng(config.seed)
    return np.sort(rng.choice(n_points, size=config.silhouette_sample_size, replace=False))


def _score(
    partition: Partition,
    points: np.ndarray,
    own_distances: np.ndarray,
    feature_distances: np.ndarray,
    sil_index: np.ndarray,
) -> dict[str, float]:
    labels = partition.labels
    k = partition.k
    counts = np.bincount(_dense(labels))
    scores = {
        "silhouette": float("nan"),
        "silhouette_features": float("nan"),
        "davies_bouldin": float("nan"),
        "calinski_harabasz": float("nan"),
        "min_cluster_share": float(counts.min() / len(labels)),
    }
    if 2 <= k < len(labels):
        sample_labels = labels[sil_index]
        scores["silhouette"] = silhouette_from_distances(own_distances, sample_labels)
        scores["silhouette_features"] = silhouette_from_distances(feature_distances, sample_labels)
        scores["davies_bouldin"] = float(davies_bouldin_score(points, labels))
        scores["calinski_harabasz"] = float(calinski_harabasz_score(points, labels))
    return scores


def _dense(labels: np.ndarray) -> np.ndarray:
    return np.unique(labels, return_inverse=True)[1]


def run_sweep(
    scaled: np.ndarray, embeddings: dict[str, np.ndarray], config: ClusteringConfig
) -> Sweep:
    """Fit and score every candidate, then mark the eligible ones and the chosen one.

    ``embeddings`` maps space name -> coordinates of the sample in that space (in
    config order). Within a space the fits run on ``config.n_jobs`` threads with
    BLAS/OpenMP limited to one thread each: the matrices are small, so parallel
    candidates use the cores far better than parallel linear algebra does. Results
    do not depend on the number of threads (every fit is seeded and independent).
    Raises ``ValueError`` if no candidate is eligible.
    """
    sil_index = silhouette_sample(len(scaled), config)
    feature_distances = cdist(scaled[sil_index], scaled[sil_index])
    ks = range(config.k_min, min(config.k_max, len(scaled) - 1) + 1)
    rows: list[dict[str, object]] = []
    partitions: list[Partition] = []
    with threadpool_limits(limits=1), Parallel(n_jobs=config.n_jobs, prefer="threads") as pool:
        for space_name, points in embeddings.items():
            own_distances = cdist(points[sil_index], points[sil_index])

            def fit_and_score(
                task: Callable[[], list[Partition]],
                points: np.ndarray = points,
                own_distances: np.ndarray = own_distances,
            ) -> list[tuple[Partition, dict[str, float]]]:
                return [
                    (part, _score(part, points, own_distances, feature_distances, sil_index))
                    for part in task()
                ]

            tasks = [
                (algorithm, task)
                for algorithm in config.algorithms
                for task in algorithms.sweep_tasks(algorithm, points, ks, config)
            ]
            results = pool(delayed(fit_and_score)(task) for _, task in tasks)
            for (algorithm, _), scored in zip(tasks, results, strict=True):
                for partition, scores in scored:
                    rows.append(
                        {
                            "space": space_name,
                            "algorithm": algorithm,
                            "k_requested": partition.k_requested,
                            "k": partition.k,
                            **scores,
                        }
                    )
                    partitions.append(partition)
            del own_distances
    candidates = pd.DataFrame(rows)
    candidates["k_requested"] = candidates["k_requested"].astype("Int64")
    candidates = mark_choice(candidates, config)
    return Sweep(candidates=candidates.loc[:, list(CANDIDATE_COLUMNS)], partitions=partitions)


def mark_choice(candidates: pd.DataFrame, config: ClusteringConfig) -> pd.DataFrame:
    """Add ``eligible`` and ``chosen`` according to the rule in the module docstring."""
    out = candidates.copy()
    metric = out[config.selection_metric]
    exact_k = out["k_requested"].isna() | (out["k_requested"] == out["k"]).fillna(False)
    out["eligible"] = (
        out["k"].between(config.business_k_min, config.business_k_max)
        & (out["min_cluster_share"] >= config.min_cluster_share)
        & exact_k.astype(bool)
        & metric.notna()
    ).astype(bool)
    out["chosen"] = False
    eligible = out.index[out["eligible"]]
    if len(eligible) == 0:
        raise ValueError(
            f"no eligible clustering among {len(out)} candidates: none has K in "
            f"{config.business_k_min}..{config.business_k_max} with every cluster holding at "
            f"least {config.min_cluster_share:.1%} of customers; widen the business range "
            "or lower min_cluster_share"
        )
    best = metric.loc[eligible].idxmax()  # first row among equals
    out.loc[best, "chosen"] = True
    return out


def bootstrap_stability(
    points: np.ndarray,
    labels: np.ndarray,
    algorithm: str,
    k: int,
    config: ClusteringConfig,
) -> float:
    """Mean adjusted Rand index between ``labels`` and refits on bootstrap resamples.

    Each run draws ``len(points)`` points with replacement, refits the chosen
    algorithm at the chosen K (seed varied per run), labels ALL points with the
    refit's predictor and compares with the chosen labels. The resamples are drawn
    from the points *in the chosen space*: the space itself (e.g. UMAP) is not
    refitted, which would take longer than the whole sweep, so this measures the
    stability of the clustering given the space, not of the space. NaN if
    ``bootstrap_runs`` is 0.
    """
    if config.bootstrap_runs == 0:
        return float("nan")
    rng = np.random.default_rng(config.seed)
    draws = [rng.integers(0, len(points), size=len(points)) for _ in range(config.bootstrap_runs)]

    def one_run(run: int) -> float:
        _, predictor = algorithms.fit_with_predictor(
            algorithm, points[draws[run]], k, config, seed=config.seed + 1 + run
        )
        return float(adjusted_rand_score(labels, predictor.predict(points)))

    with threadpool_limits(limits=1):
        scores = Parallel(n_jobs=config.n_jobs, prefer="threads")(
            delayed(one_run)(run) for run in range(config.bootstrap_runs)
        )
    return float(np.mean(scores))
