"""The clustering step behind the ``customer_segmentation`` asset.

Reads ``marts.dim_customers`` and the previous run's centroids, fits (or, with
``refit: false``, reuses the last saved model), saves the model beside the
warehouse, writes ``ml.*`` in one transaction, and returns the metadata Dagster
shows: the chosen configuration, scores, cluster sizes and the Insiders' shares.
"""

from __future__ import annotations

import base64
import io
import logging
from pathlib import Path
from typing import Any

import pandas as pd
from dagster import Config, MetadataValue

from models_py.clustering import (
    ClusteringConfig,
    fit_segmentation,
    load_segmenter,
    save_segmenter,
    score_with_model,
)
from orchestration.ml_tables import (
    SegmentationWrite,
    latest_model_path,
    read_customers,
    read_previous_centroids,
    write_segmentation,
)
from orchestration.warehouse import connect

_DEFAULTS = ClusteringConfig()


class SegmentationConfig(Config):
    """Run configuration of the clustering (recorded with every run)."""

    refit: bool = True
    scaler: str = _DEFAULTS.scaler
    spaces: list[str] = list(_DEFAULTS.spaces)  # noqa: RUF012 (pydantic copies defaults)
    algorithms: list[str] = list(_DEFAULTS.algorithms)  # noqa: RUF012
    k_min: int = _DEFAULTS.k_min
    k_max: int = _DEFAULTS.k_max
    business_k_min: int = _DEFAULTS.business_k_min
    business_k_max: int = _DEFAULTS.business_k_max
    min_cluster_share: float = _DEFAULTS.min_cluster_share
    sample_size: int = _DEFAULTS.sample_size
    bootstrap_runs: int = _DEFAULTS.bootstrap_runs
    seed: int = _DEFAULTS.seed

    def clustering_config(self) -> ClusteringConfig:
        return ClusteringConfig(
            scaler=self.scaler,
            spaces=tuple(self.spaces),
            algorithms=tuple(self.algorithms),
            k_min=self.k_min,
            k_max=self.k_max,
            business_k_min=self.business_k_min,
            business_k_max=self.business_k_max,
            min_cluster_share=self.min_cluster_share,
            sample_size=self.sample_size,
            bootstrap_runs=self.bootstrap_runs,
            seed=self.seed,
        )


def run_segmentation(
    warehouse: Path, config: SegmentationConfig, run_id: str, log: logging.Logger | Any
) -> dict[str, Any]:
    """Fit or score, write ``ml.*`` atomically, and return Dagster metadata."""
    con = connect(warehouse, read_only=False)
    try:
        customers = read_customers(con)
        previous = read_previous_centroids(con)
        saved_path = latest_model_path(con)
    finally:
        con.close()
    if customers.empty:
        raise ValueError("marts.dim_customers is empty: load data and build dbt first")
    as_of = pd.Timestamp(customers["as_of"].max()).date()
    models_dir = warehouse.parent / "models"

    if config.refit or saved_path is None:
        clustering = config.clustering_config()
        result = fit_segmentation(customers, clustering, previous_centroids=previous)
        segmenter = result.segmenter
        labels, embedding = result.labels, result.embedding
        candidates, chosen = result.candidates, dict(result.chosen)
        stability, centroids, profile = result.stability_ari, result.centroids, result.profile
        timings = result.timings
        model_path = models_dir / f"{run_id}.joblib"
        save_segmenter(segmenter, model_path)
        log.info(f"fitted {chosen} in {timings.get('total', 0):.1f} s; saved to {model_path}")
    else:
        if not config.refit:
            log.info(f"refit: false, scoring with the saved model {saved_path}")
        segmenter = load_segmenter(Path(saved_path))
        scored = score_with_model(customers, segmenter)
        labels, embedding = scored.labels, scored.embedding
        candidates, chosen, stability = None, dict(segmenter.chosen), None
        centroids, profile, timings = scored.centroids, scored.profile, scored.timings
        model_path = Path(saved_path)
        clustering = segmenter.config or config.clustering_config()

    model_name = f"{chosen['algorithm']} k={chosen['k']} on {chosen['space']}"
    con = connect(warehouse)
    try:
        write_segmentation(
            con,
            SegmentationWrite(
                run_id=run_id,
                as_of=as_of,
                model=model_name,
                model_path=str(model_path),
                refit=config.refit,
                labels=labels,
                candidates=candidates,
                embedding=embedding,
                centroids=centroids,
                config=clustering.to_dict(),
                chosen=chosen,
                stability_ari=stability,
            ),
        )
    finally:
        con.close()
    metadata = _metadata(
        labels, profile, embedding, chosen, stability, timings, model_name, as_of, model_path
    )
    return metadata


def _metadata(
    labels: pd.DataFrame,
    profile: pd.DataFrame,
    embedding: pd.DataFrame,
    chosen: dict[str, Any],
    stability: float | None,
    timings: dict[str, float],
    model_name: str,
    as_of: Any,
    model_path: Path,
) -> dict[str, Any]:
    insiders = profile[profile["is_insider"]].iloc[0]
    table = profile[
        [
            "cluster_id",
            "cluster_name",
            "customers",
            "share_of_customers",
            "share_of_revenue",
            "mean_recency_days",
            "mean_frequency",
            "mean_monetary",
        ]
    ]
    plot = _embedding_plot(embedding, labels)
    plot_path = model_path.with_suffix(".png")
    plot_path.write_bytes(plot)
    metadata: dict[str, Any] = {
        "as_of": str(as_of),
        "model": model_name,
        "space": chosen.get("space"),
        "algorithm": chosen.get("algorithm"),
        "k": int(chosen.get("k", 0)),
        "silhouette": _float(chosen.get("silhouette")),
        "silhouette_features": _float(chosen.get("silhouette_features")),
        "stability_ari": _float(stability),
        "customers": len(labels),
        "insiders": int(labels["is_insider"].sum()),
        "insiders_share_of_customers": float(insiders["share_of_customers"]),
        "insiders_share_of_revenue": float(insiders["share_of_revenue"]),
        "clusters": MetadataValue.md(table.to_markdown(index=False, floatfmt=".3f")),
        "embedding_plot": MetadataValue.md(
            f"![embedding](data:image/png;base64,{base64.b64encode(plot).decode()})"
        ),
        "embedding_plot_path": MetadataValue.path(str(plot_path)),
        "seconds": MetadataValue.json({k: round(v, 2) for k, v in timings.items()}),
    }
    return {k: v for k, v in metadata.items() if v is not None}


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def _embedding_plot(embedding: pd.DataFrame, labels: pd.DataFrame) -> bytes:
    """A PNG scatter of the 2-D embedding coloured by cluster."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = embedding.merge(labels, on="customer_id")
    fig, ax = plt.subplots(figsize=(7, 5), dpi=100)
    for (cluster_id, name), group in data.groupby(["cluster_id", "cluster_name"]):
        ax.scatter(group["x"], group["y"], s=4, alpha=0.6, label=f"{cluster_id}: {name}")
    ax.set_title("Customers by cluster")
    ax.legend(markerscale=3, fontsize=7, loc="best")
    ax.set_xticks([])
    ax.set_yticks([])
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()
