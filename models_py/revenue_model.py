"""A model of next-period revenue, trained only on horizons that were over by the date.

The learned candidate among the definitions of the Insiders: a gradient-boosted
regression (scikit-learn's ``HistGradientBoostingRegressor``, Poisson loss, since
revenue is non-negative and heavy-tailed) from a customer's point-in-time features
and scores to the net revenue of the horizon after a date. At a date it is trained
on the customers of every EARLIER date whose horizon ended on or before it, never
on the date's own future, and then ranks the customers known at the date.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingRegressor
from threadpoolctl import threadpool_limits

FEATURES: tuple[str, ...] = (
    "past_net_revenue",
    "recent_net_revenue",
    "recency_weighted_revenue",
    "recency_days",
    "tenure_days",
    "frequency",
    "avg_ticket",
    "avg_basket_size",
    "distinct_products",
    "return_rate",
    "purchase_rate",
)
# Money and counts span orders of magnitude: a signed log keeps the trees' splits on
# a sensible scale and does not let a few extreme customers own the loss.
_LOGGED = frozenset(
    {
        "past_net_revenue",
        "recent_net_revenue",
        "recency_weighted_revenue",
        "frequency",
        "avg_ticket",
        "avg_basket_size",
        "distinct_products",
    }
)


def _matrix(frame: pd.DataFrame) -> np.ndarray:
    missing = [c for c in FEATURES if c not in frame.columns]
    if missing:
        raise ValueError(f"the revenue model lacks the features: {', '.join(missing)}")
    columns = []
    for name in FEATURES:
        values = frame[name].astype(float).fillna(0.0).to_numpy()
        columns.append(np.sign(values) * np.log1p(np.abs(values)) if name in _LOGGED else values)
    return np.column_stack(columns)


def fit_revenue_model(training: pd.DataFrame, seed: int = 42) -> Any | None:
    """The model fitted on ``training`` (rows with ``horizon_net_revenue``), or None
    when there is nothing to train on. Kept apart from :func:`predict_with` so that a
    model fitted on a sample can score every customer where they live (Spark's tasks)."""
    training = training[training["horizon_net_revenue"].notna()]
    if training.empty:
        return None
    model = HistGradientBoostingRegressor(
        loss="poisson", max_iter=150, learning_rate=0.05, min_samples_leaf=40, random_state=seed
    )
    # One thread: on tens of thousands of rows OpenMP's start-up and, on a busy machine,
    # oversubscription cost more than the parallel histogram building saves.
    with threadpool_limits(1):
        model.fit(_matrix(training), training["horizon_net_revenue"].clip(lower=0).to_numpy(float))
    return model


def predict_with(model: Any, target: pd.DataFrame) -> pd.Series:
    """``model``'s expected horizon revenue per customer of ``target`` (by customer_id)."""
    with threadpool_limits(1):
        predicted = model.predict(_matrix(target))
    return pd.Series(predicted, index=target["customer_id"].astype(str).to_numpy())
