"""Entry points: fit a segmentation, score customers with a saved one, save/load it.

:func:`fit_segmentation` is the monthly job: choose the best clustering on a
bounded, seeded sample (so the cost does not grow with the customer base), check
its stability, then label EVERY customer with the chosen model in bounded-memory
batches, give the clusters stable ids and readable names, and return everything a
caller needs to store and explain the run. :func:`label_with_model` is the cheap
daily job: place customers in the clusters of a saved model, no refit.
:func:`segment` is the one entry point of the clustering step: it fits, or scores with
a saved model when one is given, and returns the same record either way. Saving and
loading models is ``models_py.model_store``'s (checked names and checksums).

Determinism: the input is put in ``customer_id`` order before anything else, and
every random step is seeded from ``config.seed``, so the same customers and seed
give identical labels regardless of row order.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.decomposition import PCA

from models_py.clustering import algorithms, naming, selection, stable_ids
from models_py.clustering.config import ClusteringConfig
from models_py.clustering.labelling import Segmenter, labels_frame
from models_py.clustering.preprocess import ID_COLUMN, Preprocessor, validate_customers
from models_py.clustering.spaces import Space, build_space


@dataclass
class SegmentationResult:
    """Everything one segmentation run produced; see :func:`fit_segmentation`."""

    labels: pd.DataFrame
    candidates: pd.DataFrame
    embedding: pd.DataFrame
    profile: pd.DataFrame
    centroids: pd.DataFrame
    chosen: dict[str, Any]
    stability_ari: float
    segmenter: Segmenter
    timings: dict[str, float]
    config: ClusteringConfig = field(default_factory=ClusteringConfig)


def _selection_sample(customers: pd.DataFrame, config: ClusteringConfig) -> pd.DataFrame:
    """At most ``sample_size`` customers, seeded, drawn from the customer_id-sorted base
    (so the draw does not depend on the input's row order)."""
    order = np.argsort(customers[ID_COLUMN].astype(str).to_numpy(), kind="stable")
    if len(order) > config.sample_size:
        rng = np.random.default_rng(config.seed)
        order = order[np.sort(rng.choice(len(order), size=config.sample_size, replace=False))]
    return customers.iloc[order]


def _chosen_summary(candidates: pd.DataFrame, index: int) -> dict[str, Any]:
    row = candidates.iloc[index]
    return {
        "space": str(row["space"]),
        "algorithm": str(row["algorithm"]),
        "k": int(row["k"]),
        "silhouette": float(row["silhouette"]),
        "silhouette_features": float(row["silhouette_features"]),
        "davies_bouldin": float(row["davies_bouldin"]),
        "calinski_harabasz": float(row["calinski_harabasz"]),
        "min_cluster_share": float(row["min_cluster_share"]),
    }


def fit_segmentation(
    customers: pd.DataFrame,
    config: ClusteringConfig = ClusteringConfig(),  # noqa: B008 (frozen, immutable)
    previous_centroids: pd.DataFrame | None = None,
) -> SegmentationResult:
    """Choose, fit and apply the customer segmentation.

    ``customers`` has one row per customer with ``customer_id`` and the
    ``config.features`` columns (other columns are ignored). ``previous_centroids``
    is the ``centroids`` table of an earlier run: clusters that match one of its
    rows keep that row's ``cluster_id``. Raises ``ValueError`` on unusable input
    or when no candidate satisfies the business constraints.
    """
    timings: dict[str, float] = {}
    started = clock = time.perf_counter()

    def lap(phase: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[phase] = round(now - clock, 3)
        clock = now

    validate_customers(customers, config.features, config.min_customers)
    sample = _selection_sample(customers, config)
    preprocessor = Preprocessor.from_config(config).fit(sample)
    scaled = preprocessor.transform(sample)
    lap("preprocess")

    spaces: dict[str, Space] = {
        name: build_space(name, config).fit(scaled) for name in config.spaces
    }
    embeddings = {name: space.embedding_ for name, space in spaces.items()}
    lap("spaces")

    sweep = selection.run_sweep(scaled, embeddings, config)
    chosen_index = sweep.chosen_index
    chosen = _chosen_summary(sweep.candidates, chosen_index)
    partition = sweep.partitions[chosen_index]
    points = embeddings[chosen["space"]]
    lap("sweep")

    stability = selection.bootstrap_stability(
        points, partition.labels, chosen["algorithm"], chosen["k"], config
    )
    lap("stability")

    segmenter = Segmenter(
        preprocessor=preprocessor,
        space=spaces[chosen["space"]],
        algorithm=chosen["algorithm"],
        predictor=algorithms.predictor_for(partition, points),
        plot_projection=None
        if points.shape[1] == 2
        else PCA(n_components=2, svd_solver="full").fit(scaled),
        batch_size=config.label_batch_size,
        chosen=chosen,
        config=config,
    )
    raw, coordinates, sums, counts = _label_everyone(segmenter, customers, len(config.features))
    present = np.flatnonzero(counts)
    new_centroids = stable_ids.centroids_frame(
        present, sums[present], counts[present], config.features
    )
    mapping = stable_ids.match_cluster_ids(
        new_centroids, previous_centroids, order=naming.value_order(customers, raw)
    )
    segmenter.cluster_ids = mapping
    cluster_ids = segmenter.stable_ids(raw)
    names = naming.name_clusters(customers, cluster_ids)
    insider = naming.insider_cluster(customers, cluster_ids)
    segmenter.cluster_names = names
    segmenter.insider_id = insider
    centroids = new_centroids.assign(cluster_id=new_centroids["cluster_id"].map(mapping))
    centroids = centroids.sort_values("cluster_id", kind="stable").reset_index(drop=True)
    labels = labels_frame(customers[ID_COLUMN], cluster_ids, names, insider)
    embedding = pd.DataFrame(
        {ID_COLUMN: customers[ID_COLUMN].to_numpy(), "x": coordinates[:, 0], "y": coordinates[:, 1]}
    )
    profile = naming.cluster_profile(customers, cluster_ids, names)
    lap("labelling")
    timings["total"] = round(time.perf_counter() - started, 3)
    return SegmentationResult(
        labels=labels,
        candidates=sweep.candidates,
        embedding=embedding,
        profile=profile,
        centroids=centroids,
        chosen=chosen,
        stability_ari=stability,
        segmenter=segmenter,
        timings=timings,
        config=config,
    )


def _label_everyone(
    segmenter: Segmenter, customers: pd.DataFrame, n_features: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Raw labels and plot coordinates for every customer (input order), plus the
    per-raw-label sums and counts of the scaled features for the centroids, all in
    one batched pass so that memory stays bounded."""
    raw = np.empty(len(customers), dtype=np.int64)
    coordinates = np.empty((len(customers), 2), dtype=np.float64)
    sums = np.zeros((0, n_features))
    counts = np.zeros(0, dtype=np.int64)
    for batch in segmenter.iter_batches(customers, with_coordinates=True):
        raw[batch.positions] = batch.raw_labels
        coordinates[batch.positions] = batch.coordinates
        size = int(batch.raw_labels.max()) + 1
        if size > len(counts):
            sums = np.vstack([sums, np.zeros((size - len(counts), n_features))])
            counts = np.concatenate([counts, np.zeros(size - len(counts), dtype=np.int64)])
        for j in range(n_features):
            sums[:, j] += np.bincount(batch.raw_labels, weights=batch.scaled[:, j], minlength=size)[
                : len(counts)
            ]
        counts += np.bincount(batch.raw_labels, minlength=len(counts))
    return raw, coordinates, sums, counts


def label_with_model(customers: pd.DataFrame, segmenter: Segmenter) -> pd.DataFrame:
    """Label customers with a fitted (e.g. loaded) Segmenter, without any refit.

    Returns customer_id, cluster_id, cluster_name, is_insider in input order.
    """
    return segmenter.label(customers)


@dataclass
class ScoringResult:
    """What :func:`score_with_model` produces: the fit's outputs minus the sweep."""

    labels: pd.DataFrame
    embedding: pd.DataFrame
    profile: pd.DataFrame
    centroids: pd.DataFrame
    timings: dict[str, float]


def score_with_model(customers: pd.DataFrame, segmenter: Segmenter) -> ScoringResult:
    """Labels plus plot coordinates, profile and centroids from a saved model, no refit.

    For scheduled runs that reuse a model instead of refitting: the same tables as
    :func:`fit_segmentation` produces for storage, in one batched pass. Cluster ids
    and names are the model's; the Insiders flag is the model's Insiders cluster.
    """
    started = time.perf_counter()
    features = segmenter.preprocessor.features
    raw, coordinates, sums, counts = _label_everyone(segmenter, customers, len(features))
    cluster_ids = segmenter.stable_ids(raw)
    present = np.flatnonzero(counts)
    centroids = stable_ids.centroids_frame(present, sums[present], counts[present], features)
    centroids = centroids.assign(cluster_id=segmenter.stable_ids(present))
    centroids = centroids.sort_values("cluster_id", kind="stable").reset_index(drop=True)
    names = segmenter.cluster_names
    labels = labels_frame(customers[ID_COLUMN], cluster_ids, names, segmenter.insider_id)
    embedding = pd.DataFrame(
        {ID_COLUMN: customers[ID_COLUMN].to_numpy(), "x": coordinates[:, 0], "y": coordinates[:, 1]}
    )
    profile = naming.cluster_profile(customers, cluster_ids, names)
    # The model's Insiders cluster stays the Insiders, even if today's means differ.
    profile["is_insider"] = profile["cluster_id"] == segmenter.insider_id
    timings = {"labelling": round(time.perf_counter() - started, 3)}
    return ScoringResult(labels, embedding, profile, centroids, timings)


@dataclass
class Segmentation:
    """One clustering step's outputs, fitted or scored with a saved model alike.

    ``candidates`` and ``stability_ari`` are None when a saved model was reused (no
    sweep ran); ``profile`` is the run's own per-cluster summary for its log and
    metadata (the published profile is dbt's ``insiders.cluster_profile``).
    """

    labels: pd.DataFrame
    embedding: pd.DataFrame
    profile: pd.DataFrame
    centroids: pd.DataFrame
    chosen: dict[str, Any]
    config: ClusteringConfig
    segmenter: Segmenter
    timings: dict[str, float]
    refitted: bool
    candidates: pd.DataFrame | None = None
    stability_ari: float | None = None

    @property
    def model_name(self) -> str:
        """What the runs table calls the model: ``kmeans k=5 on pca``."""
        return f"{self.chosen['algorithm']} k={self.chosen['k']} on {self.chosen['space']}"


def segment(
    customers: pd.DataFrame,
    config: ClusteringConfig,
    previous_centroids: pd.DataFrame | None = None,
    saved: Segmenter | None = None,
) -> Segmentation:
    """Fit the segmentation (``saved`` None), or label with the saved model, no refit.

    A reused model keeps its own configuration, chosen candidate, cluster ids and
    names: its configuration is the one returned (``config`` only if it records none).
    """
    if saved is None:
        fitted = fit_segmentation(customers, config, previous_centroids=previous_centroids)
        return Segmentation(
            labels=fitted.labels,
            embedding=fitted.embedding,
            profile=fitted.profile,
            centroids=fitted.centroids,
            chosen=dict(fitted.chosen),
            config=fitted.config,
            segmenter=fitted.segmenter,
            timings=fitted.timings,
            refitted=True,
            candidates=fitted.candidates,
            stability_ari=fitted.stability_ari,
        )
    scored = score_with_model(customers, saved)
    return Segmentation(
        labels=scored.labels,
        embedding=scored.embedding,
        profile=scored.profile,
        centroids=scored.centroids,
        chosen=dict(saved.chosen),
        config=saved.config or config,
        segmenter=saved,
        timings=scored.timings,
        refitted=False,
    )
