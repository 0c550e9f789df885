"""Which cluster is the Insiders, readable names for the others, and cluster profiles.

Cluster numbers mean nothing to the marketing team, so every cluster gets a name
derived *only* from its profile relative to the whole customer base, by fixed
rules (below) rather than by hand: the names must be reproducible on every run
and must change when, and only when, a cluster's behaviour does.

The Insiders are the most valuable cluster: among the clusters whose mean net
revenue (monetary) is at least half the highest cluster mean, the one with the
largest total net revenue; ties go to the higher mean, then the lower mean
recency_days, then the lower cluster id.

"Half" is ``INSIDER_MEAN_FLOOR``. The cluster with the highest mean always
qualifies, even in the degenerate case where that mean is not positive (then half
of it would lie above it). ``value_order`` ranks every cluster the same way: the
qualifying clusters first, by the rule above (so the Insiders come first), then
the others by mean monetary descending, ties to the lower mean recency_days, then
the lower cluster id.

Naming rule. For each cluster take the MEDIAN of recency_days, frequency,
monetary, avg_basket_size and tenure_days and express it as a percentile rank
within the whole base (mid-rank, so ties such as the many one-purchase customers
count half): >= 0.65 is "high", <= 0.35 is "low". The first matching rule wins:

1. the Insiders cluster -> "Insiders"
2. median return_rate > 0 and at or above the base's 85th percentile -> "High returns"
3. low frequency:
   recency high -> "Lapsed one-timers" (median frequency 1) / "Lapsed occasionals";
   recency low and tenure low -> "Recent newcomers";
   basket high -> "Big baskets, rare"; otherwise "Occasional buyers"
4. high frequency:
   recency high -> "Fading regulars"; basket low -> "Frequent, small baskets";
   monetary high -> "High spenders"; otherwise "Loyal regulars"
5. otherwise: recency high -> "Cooling off"; recency low and tenure low ->
   "Recent newcomers"; basket high -> "Big baskets"; basket low -> "Small baskets";
   monetary high -> "Solid spenders"; otherwise "Mainstream"

Names are made unique by suffixing " 2", " 3", ... in ``value_order`` (the more
valuable cluster keeps the plain name).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

HIGH = 0.65
LOW = 0.35
HIGH_RETURNS_PERCENTILE = 0.85
INSIDERS = "Insiders"
# A cluster qualifies for the Insiders if its mean monetary is at least this share
# of the highest cluster mean; the largest total revenue among those wins. Ranking
# by mean alone lets a cluster of a few extreme spenders outrank a cluster bringing
# twice the revenue at a similar mean; ranking by total alone lets a huge low-value
# cluster win on size alone. The floor keeps the Insiders high-value per customer.
INSIDER_MEAN_FLOOR = 0.5

PROFILE_FEATURES: tuple[str, ...] = (
    "recency_days",
    "frequency",
    "monetary",
    "avg_ticket",
    "avg_basket_size",
    "return_rate",
)
_NAMING_COLUMNS: tuple[str, ...] = (
    "recency_days",
    "frequency",
    "monetary",
    "avg_basket_size",
    "tenure_days",
    "return_rate",
)


def _labels_series(customers: pd.DataFrame, labels: Sequence[int] | np.ndarray) -> pd.Series:
    values = np.asarray(labels)
    if len(values) != len(customers):
        raise ValueError(
            f"labels has {len(values)} entries but customers has {len(customers)} rows"
        )
    return pd.Series(values.astype(np.int64), index=customers.index, name="cluster_id")


def insider_cluster(customers: pd.DataFrame, labels: Sequence[int] | np.ndarray) -> int:
    """The Insiders cluster id: among the clusters whose mean monetary is at least
    ``INSIDER_MEAN_FLOOR`` times the highest cluster mean, the one with the largest
    total monetary (ties: higher mean, lower mean recency, lower id)."""
    return value_order(customers, labels)[0]


def value_order(customers: pd.DataFrame, labels: Sequence[int] | np.ndarray) -> list[int]:
    """Every cluster id from most to least valuable; the first one is the Insiders.

    First the qualifying clusters (mean monetary at least ``INSIDER_MEAN_FLOOR`` times
    the highest cluster mean): total monetary descending, then mean monetary
    descending, mean recency ascending, id ascending. Then the other clusters: mean
    monetary descending, then mean recency ascending, id ascending.
    """
    series = _labels_series(customers, labels)
    grouped = customers[["monetary", "recency_days"]].groupby(series)
    stats = pd.DataFrame(
        {
            "total": grouped["monetary"].sum(),
            "mean": grouped["monetary"].mean(),
            "recency": grouped["recency_days"].mean(),
        }
    )
    stats.index.name = "cluster_id"
    stats = stats.reset_index()
    top = float(stats["mean"].max())
    # min(): with a non-positive top mean, half of it would exclude every cluster.
    qualifies = stats["mean"] >= min(top, INSIDER_MEAN_FLOOR * top)
    leaders = stats[qualifies].sort_values(
        ["total", "mean", "recency", "cluster_id"],
        ascending=[False, False, True, True],
        kind="stable",
    )
    rest = stats[~qualifies].sort_values(
        ["mean", "recency", "cluster_id"], ascending=[False, True, True], kind="stable"
    )
    return [int(c) for c in pd.concat([leaders, rest])["cluster_id"]]


def _mid_rank(base: np.ndarray, value: float) -> float:
    """Share of the base below ``value`` plus half the share equal to it."""
    below = np.searchsorted(base, value, side="left")
    upto = np.searchsorted(base, value, side="right")
    return float((below + upto) / 2 / len(base))


def _name(ranks: Mapping[str, float], median_frequency: float, high_returns: bool) -> str:
    recency, frequency = ranks["recency_days"], ranks["frequency"]
    monetary, basket, tenure = ranks["monetary"], ranks["avg_basket_size"], ranks["tenure_days"]
    if high_returns:
        return "High returns"
    if frequency <= LOW:
        if recency >= HIGH:
            return "Lapsed one-timers" if median_frequency <= 1 else "Lapsed occasionals"
        if recency <= LOW and tenure <= LOW:
            return "Recent newcomers"
        if basket >= HIGH:
            return "Big baskets, rare"
        return "Occasional buyers"
    if frequency >= HIGH:
        if recency >= HIGH:
            return "Fading regulars"
        if basket <= LOW:
            return "Frequent, small baskets"
        if monetary >= HIGH:
            return "High spenders"
        return "Loyal regulars"
    if recency >= HIGH:
        return "Cooling off"
    if recency <= LOW and tenure <= LOW:
        return "Recent newcomers"
    if basket >= HIGH:
        return "Big baskets"
    if basket <= LOW:
        return "Small baskets"
    if monetary >= HIGH:
        return "Solid spenders"
    return "Mainstream"


def name_clusters(customers: pd.DataFrame, labels: Sequence[int] | np.ndarray) -> dict[int, str]:
    """A unique readable name per cluster id, by the rule in the module docstring."""
    series = _labels_series(customers, labels)
    columns = list(_NAMING_COLUMNS)
    data = customers[columns].astype(float)
    medians = data.groupby(series).median()
    sorted_base = {c: np.sort(data[c].to_numpy()) for c in columns}
    returns_cut = float(np.quantile(sorted_base["return_rate"], HIGH_RETURNS_PERCENTILE))
    insider = insider_cluster(customers, labels)
    names: dict[int, str] = {}
    for cluster_id in value_order(customers, labels):
        row = medians.loc[cluster_id]
        if cluster_id == insider:
            names[cluster_id] = INSIDERS
            continue
        ranks = {c: _mid_rank(sorted_base[c], float(row[c])) for c in columns}
        high_returns = bool(row["return_rate"] > 0 and row["return_rate"] >= returns_cut)
        names[cluster_id] = _name(ranks, float(row["frequency"]), high_returns)
    return _unique(names)


def _unique(names: dict[int, str]) -> dict[int, str]:
    """Suffix repeated names with " 2", " 3", ... in the given (value) order."""
    used: set[str] = set()
    out: dict[int, str] = {}
    for cluster_id, name in names.items():
        candidate, count = name, 1
        while candidate in used:
            count += 1
            candidate = f"{name} {count}"
        used.add(candidate)
        out[cluster_id] = candidate
    return out


def cluster_profile(
    customers: pd.DataFrame,
    labels: Sequence[int] | np.ndarray,
    names: Mapping[int, str] | None = None,
) -> pd.DataFrame:
    """One row per cluster: size, revenue and typical behaviour, ordered by cluster_id.

    ``revenue`` is the sum of net ``monetary``; ``share_of_revenue`` is relative to
    the whole base's net revenue (NaN if that is not positive).
    """
    series = _labels_series(customers, labels)
    if names is None:
        names = name_clusters(customers, labels)
    insider = insider_cluster(customers, labels)
    data = customers[list(PROFILE_FEATURES)].astype(float)
    grouped = data.groupby(series)
    means = grouped.mean().add_prefix("mean_")
    medians = grouped.median().add_prefix("median_")
    sizes = series.value_counts().sort_index()
    revenue = data["monetary"].groupby(series).sum()
    total_revenue = float(data["monetary"].sum())
    profile = pd.DataFrame({"customers": sizes, "revenue": revenue})
    profile["share_of_customers"] = profile["customers"] / len(customers)
    profile["share_of_revenue"] = (
        profile["revenue"] / total_revenue if total_revenue > 0 else float("nan")
    )
    profile = profile.join(means).join(medians)
    profile.index.name = "cluster_id"
    profile = profile.reset_index()
    profile.insert(1, "cluster_name", [names[int(c)] for c in profile["cluster_id"]])
    profile.insert(2, "is_insider", profile["cluster_id"] == insider)
    stat_columns = [f"{s}_{f}" for f in PROFILE_FEATURES for s in ("mean", "median")]
    ordered = [
        "cluster_id",
        "cluster_name",
        "is_insider",
        "customers",
        "share_of_customers",
        "revenue",
        "share_of_revenue",
        *stat_columns,
    ]
    return profile.loc[:, ordered].astype({"customers": "int64", "cluster_id": "int64"})
