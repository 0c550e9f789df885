"""Candidate definitions of the Insiders, and their rolling-origin evaluation.

A loyalty budget is spent on the customers who will bring the most revenue NEXT,
so a definition is judged by what its members spent in the months after the date
it was applied at, never by how tidy its clusters look. At every evaluation origin
each definition picks the same number of customers (the size of the clustering's
Insiders cluster at that date) using only data before the origin, and is scored on
the horizon's net revenue, beside two baselines: the same number of top customers
by past net revenue (the one-line rule anybody could apply) and random groups.

Which definition becomes the Insiders is decided in dbt (``insiders.definition_choice``)
from these rows, so that the rule and an analyst's override live in one place.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

import numpy as np
import pandas as pd

from models_py.settings import RANDOM_GROUPS_CONFIDENCE

BASELINE = "top_past_revenue"
CLUSTER = "insiders_cluster"
EXPECTED = "expected_revenue"
TRAINED = "trained_revenue_model"
RANDOM = "random"

# Every definition the product tries, in the order the report lists them, with the
# sentence a marketing manager reads. Random is a baseline, never a candidate.
DEFINITIONS: dict[str, str] = {
    CLUSTER: "the clustering's Insiders cluster (the clustering refitted on the data before "
    "the date)",
    BASELINE: "the customers with the highest net revenue before the date",
    "rfm_champions": "RFM Champions first, then the highest R + F + M score",
    EXPECTED: "the highest expected revenue over the horizon (BG/NBD + Gamma-Gamma fitted "
    "on the data before the date)",
    "recency_weighted_revenue": "past net revenue times exp(-days since the last purchase "
    "/ 365): a big spender who stopped buying counts less",
    "past_plus_recent_revenue": "past net revenue plus the net revenue of the last horizon: "
    "recent spend counts twice",
    TRAINED: "the highest next-horizon revenue predicted by a model (gradient boosting) "
    "trained on the earlier dates whose horizon was over by the date",
}

# What each ranking definition sorts on (descending; ties: past net revenue, then id).
SCORES: dict[str, str] = {
    BASELINE: "past_net_revenue",
    "rfm_champions": "rfm_points",
    EXPECTED: "expected_revenue",
    "recency_weighted_revenue": "recency_weighted_revenue",
    "past_plus_recent_revenue": "past_plus_recent_revenue",
    TRAINED: TRAINED,
}

EVALUATION_COLUMNS: tuple[str, ...] = (
    "definition",
    "members",
    "customers_known",
    "horizon_revenue",
    "total_horizon_revenue",
    "share_of_horizon_revenue",
    "share_low",
    "share_high",
    "confidence",
)


def with_derived_scores(scores: pd.DataFrame) -> pd.DataFrame:
    """Add the scores that are arithmetic over the SQL ones."""
    out = scores.copy()
    out["past_net_revenue"] = out["past_net_revenue"].astype(float)
    out["past_plus_recent_revenue"] = out["past_net_revenue"] + out["recent_net_revenue"].astype(
        float
    )
    return out


def top_n(scores: pd.DataFrame, column: str, n: int) -> list[str]:
    """The ``n`` customers with the highest ``column``; ties by past net revenue, then
    customer id, so the result never depends on row order."""
    if n <= 0:
        return []
    frame = pd.DataFrame(
        {
            "customer_id": scores["customer_id"].astype(str).to_numpy(),
            "score": scores[column].astype(float).fillna(-np.inf).to_numpy(),
            "tiebreak": scores["past_net_revenue"].astype(float).to_numpy(),
        }
    )
    ordered = frame.sort_values(
        ["score", "tiebreak", "customer_id"], ascending=[False, False, True], kind="stable"
    )
    return ordered["customer_id"].head(n).tolist()


def select_members(
    scores: pd.DataFrame,
    cluster_members: Collection[str],
    expected_revenue: pd.Series | None = None,
    model_scores: Mapping[str, pd.Series] | None = None,
) -> dict[str, list[str]]:
    """Every definition's members at one date, all of the cluster's size.

    ``scores``: one row per customer known at the date (int_customer_scores__evaluations).
    ``cluster_members``: the clustering's Insiders cluster at that date.
    ``expected_revenue``: BG/NBD + Gamma-Gamma per customer_id at that date, or None
    where the model was not fitted (that definition is then skipped).
    ``model_scores``: other fitted scores per customer_id by definition name (the
    trained revenue model); a definition without one is skipped at this date.
    """
    known = set(scores["customer_id"].astype(str))
    cluster = sorted({str(c) for c in cluster_members})
    unknown = set(cluster) - known
    if unknown:
        raise ValueError(f"{len(unknown)} cluster members are not among the customers known")
    frame = with_derived_scores(scores)
    if expected_revenue is not None:
        frame[SCORES[EXPECTED]] = (
            frame["customer_id"].astype(str).map(expected_revenue.rename(index=str)).fillna(0.0)
        )
    for definition, values in (model_scores or {}).items():
        frame[SCORES[definition]] = (
            frame["customer_id"].astype(str).map(values.rename(index=str)).fillna(0.0)
        )
    n = len(cluster)
    members = {CLUSTER: cluster}
    for definition, column in SCORES.items():
        if column in frame.columns:
            members[definition] = top_n(frame, column, n)
    return members


def evaluate_definitions(
    scores: pd.DataFrame,
    members: Mapping[str, Collection[str]],
    n_random: int = 1000,
    confidence: float = RANDOM_GROUPS_CONFIDENCE,
    seed: int = 42,
) -> pd.DataFrame:
    """Each definition's share of the horizon's net revenue at one origin.

    The denominator is the horizon revenue of every customer known at the origin (the
    customers a definition could have picked). ``random`` is the mean of ``n_random``
    groups of the same size, with the central ``confidence`` interval of their share;
    the level is a column of the table, so that whoever shows the range says the level
    it was computed at.
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence}")
    if scores["horizon_net_revenue"].isna().any():
        raise ValueError("the horizon after this origin is not over: nothing to evaluate")
    ids = scores["customer_id"].astype(str).to_numpy()
    after = scores["horizon_net_revenue"].astype(float).to_numpy()
    total = float(after.sum())
    by_id = pd.Series(after, index=ids)
    rows = []
    size = 0
    for definition, chosen in members.items():
        picked = [str(c) for c in chosen]
        size = max(size, len(picked))
        revenue = float(by_id.reindex(picked).fillna(0.0).sum())
        rows.append(definition_row(definition, len(picked), revenue))
    rng = np.random.default_rng(seed)
    draws = np.array(
        [after[rng.choice(len(ids), size, replace=False)].sum() for _ in range(n_random)]
    )
    tail = (1 - confidence) / 2
    low, high = (np.quantile(draws, [tail, 1 - tail]) / total) if total else (None, None)
    rows.append(
        definition_row(
            RANDOM,
            size,
            float(draws.mean()),
            None if low is None else float(low),
            None if high is None else float(high),
        )
    )
    return evaluation_frame(rows, len(ids), total, confidence)


def definition_row(
    definition: str,
    members: int,
    revenue: float,
    share_low: float | None = None,
    share_high: float | None = None,
) -> dict[str, object]:
    """One group's row of an origin's evaluation (before the origin's totals)."""
    return {
        "definition": definition,
        "members": members,
        "horizon_revenue": revenue,
        "share_low": share_low,
        "share_high": share_high,
    }


def evaluation_frame(
    rows: list[dict[str, object]], customers_known: int, total: float, confidence: float
) -> pd.DataFrame:
    """An origin's evaluation table: the groups' rows with the origin's totals and
    each group's share of the horizon's revenue."""
    table = pd.DataFrame(rows)
    table["customers_known"] = customers_known
    table["total_horizon_revenue"] = total
    table["share_of_horizon_revenue"] = table["horizon_revenue"] / total if total else None
    table["confidence"] = float(confidence)
    return table[list(EVALUATION_COLUMNS)]


def random_groups_normal(
    customers_known: int, total: float, variance: float, size: int, confidence: float
) -> dict[str, object]:
    """The ``random`` row without drawing: groups of ``size`` drawn without replacement
    from ``customers_known`` customers whose horizon revenues sum to ``total`` with
    sample variance ``variance``. Their revenue is ``size`` times the mean; its central
    ``confidence`` interval is the normal one with the finite-population correction
    (the central limit theorem: what the draws of :func:`evaluate_definitions` converge
    to when there are many customers, where a thousand explicit draws of millions of
    customers would be a waste)."""
    from scipy.stats import norm

    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence}")
    known = max(customers_known, 1)
    mean = size * total / known
    spread = np.sqrt(max(variance, 0.0) * size * (known - size) / known)
    z = float(norm.ppf(1 - (1 - confidence) / 2))
    low = (mean - z * spread) / total if total else None
    high = (mean + z * spread) / total if total else None
    return definition_row(RANDOM, size, float(mean), low, high)
