"""The time backtest: do Insiders chosen in the past bring the revenue that came after?

Choosing customers who spent a lot and then showing that they spent a lot proves
nothing. The honest test chooses the group with data before a cut-off only and
measures its share of the revenue after it (the hold-out), against two baselines
of the same size: random customers (many draws, for an interval) and the top
customers by past monetary, the rule anyone could apply without a model.
"""

from __future__ import annotations

from collections.abc import Collection

import numpy as np
import pandas as pd

BACKTEST_COLUMNS: tuple[str, ...] = (
    "customer_group",
    "customers",
    "holdout_revenue",
    "share_of_holdout_revenue",
    "share_ci_low",
    "share_ci_high",
    "random_groups_at_least_as_good",
)


def holdout_share_comparison(
    past: pd.DataFrame,
    holdout_revenue: pd.Series,
    chosen: Collection[str],
    n_random: int = 1000,
    confidence: float = 0.95,
    seed: int = 42,
) -> pd.DataFrame:
    """Share of the hold-out revenue taken by the chosen group and its two baselines.

    ``past``: the customers known at the cut-off, with ``customer_id`` and
    ``monetary`` (before the cut-off). ``holdout_revenue``: revenue after the
    cut-off per customer_id, for every customer who bought then, new ones included:
    its sum is the denominator. ``chosen``: the group chosen at the cut-off.
    Rows: ``insiders``, ``random`` (mean of ``n_random`` draws with a percentile
    interval) and ``top_monetary``; the Insiders' row also says which share of the
    random groups did at least as well (an empirical one-sided p-value).
    """
    if not {"customer_id", "monetary"} <= set(past.columns):
        raise ValueError("past customers need customer_id and monetary columns")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence}")
    known = past["customer_id"].astype(str).to_numpy()
    chosen_ids = {str(c) for c in chosen}
    unknown = chosen_ids - set(known)
    if unknown:
        raise ValueError(f"{len(unknown)} chosen customers are not among the past customers")
    size = len(chosen_ids)
    if not 0 < size < len(known):
        raise ValueError("the chosen group must hold some, but not all, past customers")
    total = float(holdout_revenue.sum())
    if total <= 0:
        raise ValueError("no revenue after the cut-off: nothing to share")
    revenue = holdout_revenue.groupby(holdout_revenue.index.astype(str)).sum()
    after = revenue.reindex(known, fill_value=0.0).to_numpy(dtype=float)

    insiders = after[np.isin(known, list(chosen_ids))].sum()
    order = np.argsort(-past["monetary"].astype(float).to_numpy(), kind="stable")
    top = after[order[:size]].sum()
    rng = np.random.default_rng(seed)
    draws = np.array(
        [after[rng.choice(len(known), size, replace=False)].sum() for _ in range(n_random)]
    )
    tail = (1 - confidence) / 2
    low, high = np.quantile(draws / total, [tail, 1 - tail])
    rows = [
        {
            "customer_group": "insiders",
            "customers": size,
            "holdout_revenue": float(insiders),
            "share_of_holdout_revenue": float(insiders / total),
            "share_ci_low": None,
            "share_ci_high": None,
            "random_groups_at_least_as_good": float((draws >= insiders).mean()),
        },
        {
            "customer_group": "random",
            "customers": size,
            "holdout_revenue": float(draws.mean()),
            "share_of_holdout_revenue": float(draws.mean() / total),
            "share_ci_low": float(low),
            "share_ci_high": float(high),
            "random_groups_at_least_as_good": None,
        },
        {
            "customer_group": "top_monetary",
            "customers": size,
            "holdout_revenue": float(top),
            "share_of_holdout_revenue": float(top / total),
            "share_ci_low": None,
            "share_ci_high": None,
            "random_groups_at_least_as_good": float((draws >= top).mean()),
        },
    ]
    return pd.DataFrame(rows, columns=list(BACKTEST_COLUMNS))
