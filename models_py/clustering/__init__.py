"""Customer segmentation: find the Insiders (and name every other segment).

Input is one row per customer from ``marts.dim_customers``. :func:`fit_segmentation`
sweeps feature spaces x algorithms x K on a bounded sample, picks one by an
explicit rule, checks its bootstrap stability and labels every customer;
:func:`label_with_model` scores customers with a saved :class:`Segmenter`;
:func:`segment` does either for the clustering step. Nothing here does I/O (models are
saved and loaded by ``models_py.model_store``, which checks names and checksums) and
nothing depends on Dagster: orchestration lives elsewhere.
"""

from models_py.clustering.config import ClusteringConfig
from models_py.clustering.labelling import Segmenter
from models_py.clustering.naming import cluster_profile, insider_cluster, name_clusters
from models_py.clustering.pipeline import (
    ScoringResult,
    Segmentation,
    SegmentationResult,
    fit_segmentation,
    label_with_model,
    score_with_model,
    segment,
)
from models_py.clustering.plots import embedding_png
from models_py.clustering.preprocess import Preprocessor, validate_customers
from models_py.clustering.selection import silhouette_from_distances
from models_py.clustering.stable_ids import match_cluster_ids

__all__ = [
    "ClusteringConfig",
    "Preprocessor",
    "ScoringResult",
    "Segmentation",
    "SegmentationResult",
    "Segmenter",
    "cluster_profile",
    "embedding_png",
    "fit_segmentation",
    "insider_cluster",
    "label_with_model",
    "match_cluster_ids",
    "name_clusters",
    "score_with_model",
    "segment",
    "silhouette_from_distances",
    "validate_customers",
]
