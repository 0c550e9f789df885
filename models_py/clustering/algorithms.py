"""The clustering algorithms of the sweep, written so that the K sweep is cheap.

Four families, each with a different idea of what a cluster is: K-Means (convex,
similar-sized blobs), Gaussian mixtures (ellipses of different sizes and
orientations), agglomerative Ward (nested merges, so one tree serves every K) and
HDBSCAN (dense regions of any shape; K is an outcome, not a parameter).

Every function returns labels ``0..K-1`` for *every* point (HDBSCAN's noise points
are handed to the nearest clustered point: a loyalty programme must put every
customer somewhere) plus a *predictor* with ``predict(points)`` that places new
points in the same clusters: the model itself for K-Means and mixtures, and the
nearest labelled point for Ward and HDBSCAN, which have no native ``predict``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol

import numpy as np
from scipy.cluster.hierarchy import fcluster, linkage
from sklearn.cluster import HDBSCAN, KMeans
from sklearn.mixture import GaussianMixture
from sklearn.neighbors import KNeighborsClassifier
from threadpoolctl import threadpool_limits

from models_py.clustering.config import ClusteringConfig


class Predictor(Protocol):
    def predict(self, points: np.ndarray) -> np.ndarray: ...


@dataclass
class Partition:
    """One clustering of the sample: a candidate of the sweep.

    ``k_requested`` is None for HDBSCAN, whose K is whatever it finds; for the
    others ``k`` (distinct labels actually used) can be smaller than requested when
    a mixture leaves a component empty or Ward's tree has ties.
    """

    algorithm: str
    k_requested: int | None
    labels: np.ndarray
    model: Any = None

    @property
    def k(self) -> int:
        return len(np.unique(self.labels))


class NearestLabelled:
    """Predict the label of the nearest fitted point (1-NN), for algorithms with no
    ``predict`` of their own. Pickleable; memory is one copy of the fitted points."""

    def __init__(self, points: np.ndarray, labels: np.ndarray) -> None:
        self.knn_ = KNeighborsClassifier(n_neighbors=1).fit(points, labels)

    def predict(self, points: np.ndarray) -> np.ndarray:
        return self.knn_.predict(points)


def _contiguous(labels: np.ndarray) -> np.ndarray:
    """Relabel to 0..K-1 in order of first label value, as int32."""
    _, inverse = np.unique(labels, return_inverse=True)
    return inverse.astype(np.int32)


def min_cluster_size(n_points: int, config: ClusteringConfig) -> int:
    """HDBSCAN's minimum cluster size: the smallest cluster the business accepts."""
    return max(5, math.ceil(config.min_cluster_share * n_points))


def kmeans(points: np.ndarray, k: int, config: ClusteringConfig, seed: int) -> Partition:
    model = KMeans(n_clusters=k, n_init=config.kmeans_n_init, random_state=seed).fit(points)
    return Partition("kmeans", k, model.labels_.astype(np.int32), model)


def gmm(points: np.ndarray, k: int, config: ClusteringConfig, seed: int) -> Partition:
    # One BLAS thread: the matrices are tiny (n x d with d <= 9), and on a 2-core
    # machine handing them to a second BLAS thread made the sweep twice as SLOW.
    with threadpool_limits(limits=1, user_api="blas"):
        model = GaussianMixture(
            n_components=k,
            covariance_type="full",
            reg_covar=config.gmm_reg_covar,
            random_state=seed,
        )
        labels = model.fit_predict(points)
    return Partition("gmm", k, labels.astype(np.int32), model)


def ward_tree(points: np.ndarray) -> np.ndarray:
    """The full Ward merge tree (scipy linkage matrix).

    Memory is quadratic (a condensed distance matrix: 1.6 GB at 20,000 points),
    which is why selection runs on a bounded sample.
    """
    return linkage(points, method="ward")


def ward_cut(tree: np.ndarray, k: int) -> Partition:
    """Cut an existing Ward tree into (at most) k clusters: no refit per K."""
    labels = fcluster(tree, t=k, criterion="maxclust")
    return Partition("ward", k, _contiguous(labels))


def hdbscan(points: np.ndarray, config: ClusteringConfig) -> Partition:
    """HDBSCAN, then every noise point joins the cluster of its nearest clustered point."""
    labels = (
        HDBSCAN(min_cluster_size=min_cluster_size(len(points), config), copy=True)
        .fit(points)
        .labels_
    )
    return Partition("hdbscan", None, assign_noise(points, labels))


def assign_noise(points: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Replace label -1 by the label of the nearest non-noise point (all 0 if none)."""
    noise = labels < 0
    if noise.all():
        return np.zeros(len(labels), dtype=np.int32)
    labels = labels.copy()
    if noise.any():
        labels[noise] = NearestLabelled(points[~noise], labels[~noise]).predict(points[noise])
    return _contiguous(labels)


def sweep_tasks(
    algorithm: str, points: np.ndarray, ks: range, config: ClusteringConfig
) -> list[Callable[[], list[Partition]]]:
    """The partitions of one algorithm in one space, as independent units of work.

    One task per K for K-Means and mixtures (so they can run in parallel), one task
    for Ward (build the tree once, cut it at every K) and one for HDBSCAN.
    """
    if algorithm == "kmeans":
        return [partial(lambda k: [kmeans(points, k, config, config.seed)], k) for k in ks]
    if algorithm == "gmm":
        return [partial(lambda k: [gmm(points, k, config, config.seed)], k) for k in ks]
    if algorithm == "ward":

        def ward_all() -> list[Partition]:
            tree = ward_tree(points)
            return [ward_cut(tree, k) for k in ks]

        return [ward_all]
    if algorithm == "hdbscan":
        return [lambda: [hdbscan(points, config)]]
    raise ValueError(f"unknown algorithm {algorithm!r}")


def fit_with_predictor(
    algorithm: str, points: np.ndarray, k: int, config: ClusteringConfig, seed: int
) -> tuple[np.ndarray, Predictor]:
    """Fit one algorithm at one K and return (labels of ``points``, predictor).

    Used for the bootstrap refits. For HDBSCAN ``k`` is ignored; duplicated points
    are removed first because a bootstrap copy of a point is a zero-distance
    neighbour that makes it look artificially dense.
    """
    if algorithm == "kmeans":
        part = kmeans(points, k, config, seed)
        return part.labels, part.model
    if algorithm == "gmm":
        part = gmm(points, k, config, seed)
        return part.labels, part.model
    if algorithm == "ward":
        part = ward_cut(ward_tree(points), k)
        return part.labels, NearestLabelled(points, part.labels)
    if algorithm == "hdbscan":
        unique_points = np.unique(points, axis=0)
        part = hdbscan(unique_points, config)
        predictor = NearestLabelled(unique_points, part.labels)
        return predictor.predict(points), predictor
    raise ValueError(f"unknown algorithm {algorithm!r}")


def predictor_for(partition: Partition, points: np.ndarray) -> Predictor:
    """The predictor that reproduces ``partition`` on ``points`` and extends it to new ones."""
    if partition.model is not None:
        return partition.model
    return NearestLabelled(points, partition.labels)
