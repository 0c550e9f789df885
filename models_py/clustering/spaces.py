"""The feature spaces in which clusters are searched for.

The reference projects clustered in several spaces (raw scaled features, PCA,
UMAP, and a UMAP of random-forest leaves) and kept whichever scored best; this
module provides the same spaces as fitted, pickleable objects with a
``transform`` so that customers who were not in the fitting sample (or arrive
next month) can be placed in the chosen space without refitting it.

Every space takes the *scaled* features (output of the Preprocessor) and exposes
``embedding_`` (coordinates of the fitting points) and ``transform(X_scaled)``.
UMAP is seeded, which makes it single-threaded; that is the price of identical
labels on identical input.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol

import numpy as np
from sklearn.decomposition import PCA
from sklearn.ensemble import RandomForestRegressor

from models_py.clustering.config import ClusteringConfig


class Space(Protocol):
    name: str
    embedding_: np.ndarray

    def fit(self, scaled: np.ndarray) -> Space: ...

    def transform(self, scaled: np.ndarray) -> np.ndarray: ...


class ScaledSpace:
    """The preprocessed features themselves: the most interpretable space."""

    name = "scaled"

    def fit(self, scaled: np.ndarray) -> ScaledSpace:
        self.embedding_ = np.ascontiguousarray(scaled, dtype=np.float64)
        return self

    def transform(self, scaled: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(scaled, dtype=np.float64)


class PCASpace:
    """PCA keeping enough components for ``variance`` of the variance (at least 2).

    Correlated features (frequency, distinct products, monetary all measure "size")
    are otherwise counted several times in every Euclidean distance.
    """

    name = "pca"

    def __init__(self, variance: float = 0.9, seed: int = 42) -> None:
        self.variance = variance
        self.seed = seed

    def fit(self, scaled: np.ndarray) -> PCASpace:
        full = PCA(svd_solver="full", random_state=self.seed).fit(scaled)
        cumulative = np.cumsum(full.explained_variance_ratio_)
        wanted = int(np.searchsorted(cumulative, self.variance - 1e-12) + 1)
        n_components = min(max(wanted, 2), scaled.shape[1])
        self.pca_ = PCA(n_components=n_components, svd_solver="full", random_state=self.seed)
        self.embedding_ = np.ascontiguousarray(self.pca_.fit_transform(scaled))
        return self

    def transform(self, scaled: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(self.pca_.transform(scaled))


def _umap(n_points: int, config: ClusteringConfig, metric: str) -> Any:
    # Imported here: umap pulls in numba and pynndescent (seconds of import time),
    # which callers that only use the scaled/PCA spaces should not pay for.
    import umap

    return umap.UMAP(
        n_neighbors=max(2, min(config.umap_n_neighbors, n_points - 1)),
        n_components=config.umap_n_components,
        min_dist=config.umap_min_dist,
        n_epochs=config.umap_n_epochs,
        metric=metric,
        random_state=config.seed,
        n_jobs=1,
    )


@contextmanager
def _quiet_umap() -> Iterator[None]:
    """Silence UMAP's warnings that are expected here and say nothing about the data."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*n_jobs value .* overridden.*")
        warnings.filterwarnings("ignore", message=".*gradient function is not yet implemented.*")
        # Leaf-index graphs often have tiny eigengaps; UMAP then falls back to a
        # (seeded, hence reproducible) random initial layout, which is fine here.
        warnings.filterwarnings("ignore", message=".*Spectral initialisation failed.*")
        yield


class UMAPSpace:
    """UMAP of the scaled features (default 2-D): keeps local neighbourhoods, so
    density-separated groups that are not convex in feature space become blobs."""

    name = "umap"

    def __init__(self, config: ClusteringConfig) -> None:
        self.config = config

    def fit(self, scaled: np.ndarray) -> UMAPSpace:
        with _quiet_umap():
            self.umap_ = _umap(len(scaled), self.config, "euclidean")
            self.embedding_ = np.ascontiguousarray(
                self.umap_.fit_transform(np.ascontiguousarray(scaled)), dtype=np.float64
            )
        return self

    def transform(self, scaled: np.ndarray) -> np.ndarray:
        # UMAP returns the fit-time embedding when given exactly the fitting matrix
        # (it compares a hash), and otherwise places new points among the old ones.
        with _quiet_umap():
            out = self.umap_.transform(np.ascontiguousarray(scaled))
        return np.ascontiguousarray(out, dtype=np.float64)


class TreeSpace:
    """UMAP (Hamming metric) of the leaves a random forest puts each customer in.

    The forest predicts scaled ``target`` (monetary) from the other scaled
    features, as in the reference projects: two customers are close when the trees
    route them to the same leaves, i.e. when they look alike *in the ways that
    matter for revenue*. Leaf indices are categories, not magnitudes, hence the
    Hamming metric (share of trees in which the leaves differ).
    """

    name = "tree"

    def __init__(self, config: ClusteringConfig) -> None:
        self.config = config
        self.target_index = config.features.index(config.tree_target)

    def _inputs(self, scaled: np.ndarray) -> np.ndarray:
        return np.delete(scaled, self.target_index, axis=1)

    def fit(self, scaled: np.ndarray) -> TreeSpace:
        self.forest_ = RandomForestRegressor(
            n_estimators=self.config.tree_n_estimators,
            max_depth=self.config.tree_max_depth,
            random_state=self.config.seed,
            n_jobs=-1,
        ).fit(self._inputs(scaled), scaled[:, self.target_index])
        leaves = self.forest_.apply(self._inputs(scaled))
        with _quiet_umap():
            self.umap_ = _umap(len(scaled), self.config, "hamming")
            self.embedding_ = np.ascontiguousarray(
                self.umap_.fit_transform(leaves), dtype=np.float64
            )
        return self

    def transform(self, scaled: np.ndarray) -> np.ndarray:
        leaves = self.forest_.apply(self._inputs(scaled))
        with _quiet_umap():
            out = self.umap_.transform(leaves)
        return np.ascontiguousarray(out, dtype=np.float64)


def build_space(name: str, config: ClusteringConfig) -> Space:
    """An unfitted space by name (one of ``config.SPACES``)."""
    if name == "scaled":
        return ScaledSpace()
    if name == "pca":
        return PCASpace(config.pca_variance, config.seed)
    if name == "umap":
        return UMAPSpace(config)
    if name == "tree":
        return TreeSpace(config)
    raise ValueError(f"unknown space {name!r}")
