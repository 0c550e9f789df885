"""The fitted segmentation model that puts any number of customers into clusters.

Model selection is expensive and runs on a bounded sample; labelling must be
cheap, repeatable and able to score the whole customer base (or next month's new
customers) without refitting. A :class:`Segmenter` bundles exactly what that
needs: the fitted preprocessor, the fitted space, a predictor in that space (the
K-Means / mixture model itself, or for Ward and HDBSCAN a nearest-labelled-point
classifier over the selection sample), the map from the predictor's raw labels to
stable cluster ids, and the cluster names. It pickles with joblib.

Customers are processed in batches of ``batch_size`` rows, so peak memory depends
on the batch size and not on the number of customers. Rows are processed in
``customer_id`` order (and returned in input order): that makes the result
independent of how the input happens to be sorted, and lets UMAP recognise the
exact matrix it was fitted on and return its fit-time embedding for it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.decomposition import PCA

from models_py.clustering.algorithms import Predictor
from models_py.clustering.config import ClusteringConfig
from models_py.clustering.preprocess import ID_COLUMN, Preprocessor, validate_customers
from models_py.clustering.spaces import Space

LABEL_COLUMNS: tuple[str, ...] = (ID_COLUMN, "cluster_id", "cluster_name", "is_insider")


@dataclass
class Batch:
    """One processed batch: row positions in the input, and what was computed for them."""

    positions: np.ndarray
    scaled: np.ndarray
    raw_labels: np.ndarray
    coordinates: np.ndarray | None


@dataclass
class Segmenter:
    """Everything needed to label customers with the chosen segmentation, no refit.

    ``cluster_ids`` maps the predictor's raw labels to stable cluster ids;
    ``cluster_names`` maps stable ids to names; ``plot_projection`` (a 2-component
    PCA of the scaled features) gives plot coordinates when the chosen space is not
    2-D. ``chosen`` and ``config`` record which candidate won and the settings of
    the run that produced the model.
    """

    preprocessor: Preprocessor
    space: Space
    algorithm: str
    predictor: Predictor
    cluster_ids: dict[int, int] = field(default_factory=dict)
    cluster_names: dict[int, str] = field(default_factory=dict)
    insider_id: int = 0
    plot_projection: PCA | None = None
    batch_size: int = 100_000
    # Provenance, so that a loaded model can say what it is and how it was made.
    chosen: dict[str, Any] = field(default_factory=dict)
    config: ClusteringConfig | None = None

    def iter_batches(
        self, customers: pd.DataFrame, with_coordinates: bool = False
    ) -> Iterator[Batch]:
        """Transform and predict ``customers`` in batches of ``batch_size`` rows."""
        validate_customers(customers, self.preprocessor.features)
        order = np.argsort(customers[ID_COLUMN].astype(str).to_numpy(), kind="stable")
        for start in range(0, len(order), self.batch_size):
            positions = order[start : start + self.batch_size]
            scaled = self.preprocessor.transform(customers.iloc[positions])
            points = self.space.transform(scaled)
            raw = np.asarray(self.predictor.predict(points)).astype(np.int64)
            coordinates = None
            if with_coordinates:
                if self.plot_projection is None:
                    coordinates = points[:, :2]
                else:
                    coordinates = self.plot_projection.transform(scaled)[:, :2]
            yield Batch(positions, scaled, raw, coordinates)

    def stable_ids(self, raw_labels: np.ndarray) -> np.ndarray:
        """Map raw predictor labels to stable cluster ids."""
        lookup = _lookup(self.cluster_ids)
        return lookup[raw_labels]

    def label(self, customers: pd.DataFrame) -> pd.DataFrame:
        """customer_id, cluster_id, cluster_name, is_insider for every row, in input order."""
        cluster = np.empty(len(customers), dtype=np.int64)
        for batch in self.iter_batches(customers):
            cluster[batch.positions] = self.stable_ids(batch.raw_labels)
        return labels_frame(customers[ID_COLUMN], cluster, self.cluster_names, self.insider_id)


def _lookup(mapping: Mapping[int, int]) -> np.ndarray:
    if not mapping:
        raise ValueError("Segmenter has no cluster id mapping: it was not fitted")
    lookup = np.full(max(mapping) + 1, -1, dtype=np.int64)
    for raw, stable in mapping.items():
        lookup[raw] = stable
    return lookup


def labels_frame(
    customer_ids: pd.Series,
    cluster_ids: np.ndarray,
    names: Mapping[int, str],
    insider_id: int,
) -> pd.DataFrame:
    """The labels table: one row per customer with id, name and the Insiders flag."""
    name_lookup = pd.Series(names, dtype="str")
    return pd.DataFrame(
        {
            ID_COLUMN: customer_ids.to_numpy(),
            "cluster_id": cluster_ids.astype(np.int64),
            "cluster_name": name_lookup.reindex(cluster_ids).to_numpy(),
            "is_insider": cluster_ids == insider_id,
        }
    )
