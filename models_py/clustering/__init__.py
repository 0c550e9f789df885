"""Customer segmentation: find the Insiders (and name every other segment).

Input is one row per customer from ``marts.dim_customers``. :func:`fit_segmentation`
sweeps feature spaces x algorithms x K on a bounded sample, picks one by an
explicit rule, checks its bootstrap stability and labels every customer;
:func:`label_with_model` scores customers with a saved :class:`Segmenter`;
:func:`segment` does either for the clustering step. Nothing here does I/O (models are
saved and loaded by ``models_py.model_store``, which checks names and checksums) and
nothing depends on Dagster: orchestration lives elsewhere.
"""

from importlib import import_module
from typing import Any

from models_py.clustering.config import ClusteringConfig

# Where each public name lives. The config is light and imported at once; the rest
# (scikit-learn, UMAP, matplotlib) is imported when first used, so that importing the
# Dagster definitions or reading a run's settings does not load them (about 1 s).
_LAZY = {
    "Segmenter": "labelling",
    "cluster_profile": "naming",
    "insider_cluster": "naming",
    "name_clusters": "naming",
    "ScoringResult": "pipeline",
    "Segmentation": "pipeline",
    "SegmentationResult": "pipeline",
    "fit_segmentation": "pipeline",
    "label_with_model": "pipeline",
    "score_with_model": "pipeline",
    "segment": "pipeline",
    "embedding_png": "plots",
    "Preprocessor": "preprocess",
    "validate_customers": "preprocess",
    "silhouette_from_distances": "selection",
    "match_cluster_ids": "stable_ids",
}


def __getattr__(name: str) -> Any:
    """Import the submodule that defines ``name`` on first use (PEP 562)."""
    if name in _LAZY:
        value = getattr(import_module(f"{__name__}.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
