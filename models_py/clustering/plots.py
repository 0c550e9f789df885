"""The picture of a clustering run: its 2-D embedding coloured by cluster.

Drawn here, beside the model that made the coordinates, so that the orchestration
only writes the bytes and shows them; matplotlib's non-interactive backend, so it
runs in a worker with no display.
"""

from __future__ import annotations

import io

import pandas as pd

from models_py.clustering.preprocess import ID_COLUMN


def embedding_png(embedding: pd.DataFrame, labels: pd.DataFrame) -> bytes:
    """A PNG scatter of ``embedding`` (customer_id, x, y) coloured by the cluster of
    ``labels`` (customer_id, cluster_id, cluster_name), one legend entry per cluster."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = embedding.merge(labels, on=ID_COLUMN)
    fig, ax = plt.subplots(figsize=(7, 5), dpi=100)
    try:
        for (cluster_id, name), group in data.groupby(["cluster_id", "cluster_name"]):
            ax.scatter(group["x"], group["y"], s=4, alpha=0.6, label=f"{cluster_id}: {name}")
        ax.set_title("Customers by cluster")
        ax.legend(markerscale=3, fontsize=7, loc="best")
        ax.set_xticks([])
        ax.set_yticks([])
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", bbox_inches="tight")
    finally:
        plt.close(fig)
    return buffer.getvalue()
