"""Cluster ids that stay the same from one run to the next.

Clustering algorithms number their clusters arbitrarily, so a re-run on next
month's data could call the Insiders "3" instead of "0" and every downstream
report, campaign list and trend chart would silently mix up segments. Each run
therefore stores its cluster centroids, and the next run matches its clusters to
them (Hungarian assignment on Euclidean distance) and inherits their ids.

Centroids are the mean of the *preprocessed* (scaled) features per cluster: that
makes them independent of the space the clusters were found in (UMAP coordinates
are not comparable between two UMAP fits), and comparable between runs as long as
the preprocessing is similar (the robust scaler is refitted each run, so
centroids drift slightly when the base itself changes).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist

ID = "cluster_id"


def centroids_frame(
    cluster_ids: Sequence[int] | np.ndarray,
    sums: np.ndarray,
    counts: np.ndarray,
    features: Sequence[str],
) -> pd.DataFrame:
    """Centroid table (cluster_id + one column per feature) from per-cluster sums."""
    means = np.asarray(sums, dtype=float) / np.asarray(counts, dtype=float)[:, None]
    frame = pd.DataFrame(means, columns=list(features))
    frame.insert(0, ID, np.asarray(cluster_ids, dtype=np.int64))
    return frame.sort_values(ID, kind="stable").reset_index(drop=True)


def _feature_columns(frame: pd.DataFrame, what: str) -> list[str]:
    if ID not in frame.columns:
        raise ValueError(f"{what} has no {ID!r} column")
    if frame[ID].duplicated().any():
        raise ValueError(f"{what} has duplicate {ID} values")
    return [c for c in frame.columns if c != ID]


def match_cluster_ids(
    new_centroids: pd.DataFrame,
    previous_centroids: pd.DataFrame | None = None,
    order: Sequence[int] | None = None,
) -> dict[int, int]:
    """Map each new (provisional) cluster id to its stable id.

    * No previous centroids: ids ``0..K-1`` in ``order`` (the pipeline passes the
      clusters most valuable first, ``naming.value_order``, so id 0 is the Insiders on a
      first run);
      without ``order``, by descending centroid ``monetary`` column.
    * Otherwise new and previous clusters are paired by minimum total Euclidean
      distance between centroids; a paired new cluster takes the previous id, and
      new clusters left over (K grew) get ids above the previous maximum, in
      ``order``. Previous ids left over (K shrank) are simply not used.
    """
    features = _feature_columns(new_centroids, "new_centroids")
    new_ids = [int(i) for i in new_centroids[ID]]
    if order is None:
        if "monetary" in new_centroids.columns:
            ranked = new_centroids.sort_values("monetary", ascending=False, kind="stable")
            order = [int(i) for i in ranked[ID]]
        else:
            order = new_ids
    order = [int(i) for i in order]
    if sorted(order) != sorted(new_ids):
        raise ValueError("order must list every new cluster id exactly once")
    if previous_centroids is None or previous_centroids.empty:
        return {cluster: rank for rank, cluster in enumerate(order)}

    previous_features = _feature_columns(previous_centroids, "previous_centroids")
    missing = [f for f in features if f not in previous_features]
    if missing:
        raise ValueError(
            f"previous_centroids lack feature columns {missing}: they were computed with a "
            "different feature set and cannot be matched"
        )
    new_matrix = new_centroids[features].to_numpy(dtype=float)
    previous_matrix = previous_centroids[features].to_numpy(dtype=float)
    if not (np.isfinite(new_matrix).all() and np.isfinite(previous_matrix).all()):
        raise ValueError("centroids must be finite numbers")
    previous_ids = [int(i) for i in previous_centroids[ID]]
    rows, cols = linear_sum_assignment(cdist(new_matrix, previous_matrix))
    mapping = {new_ids[r]: previous_ids[c] for r, c in zip(rows, cols, strict=True)}
    next_id = max(previous_ids) + 1
    for cluster in order:
        if cluster not in mapping:
            mapping[cluster] = next_id
            next_id += 1
    return mapping
