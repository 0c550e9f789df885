"""Evidence that the Insiders are better than the rest, not just labelled so.

A mean difference alone can be luck or a few giants. For each metric this reports
the difference of means with a percentile bootstrap confidence interval (resampling
both groups, seeded) and a two-sided Mann-Whitney U test, which compares whole
distributions and does not care about outliers' size.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy.stats import mannwhitneyu

EVIDENCE_METRICS: tuple[str, ...] = ("monetary", "frequency")

EVIDENCE_COLUMNS: tuple[str, ...] = (
    "metric",
    "insiders",
    "others",
    "insiders_mean",
    "others_mean",
    "difference",
    "ci_low",
    "ci_high",
    "confidence",
    "mann_whitney_u",
    "p_value",
)


def group_differences(
    customers: pd.DataFrame,
    is_insider: Sequence[bool] | np.ndarray | pd.Series,
    metrics: Sequence[str] = EVIDENCE_METRICS,
    n_bootstrap: int = 2000,
    confidence: float = 0.95,
    seed: int = 42,
) -> pd.DataFrame:
    """One row per metric: Insiders against the rest, with a CI and a test."""
    flags = np.asarray(is_insider, dtype=bool)
    if len(flags) != len(customers):
        raise ValueError(f"{len(flags)} labels for {len(customers)} customers")
    if flags.sum() < 2 or (~flags).sum() < 2:
        raise ValueError("need at least two Insiders and two other customers to compare")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence}")
    rng = np.random.default_rng(seed)
    tail = (1 - confidence) / 2
    rows = []
    for metric in metrics:
        if metric not in customers.columns:
            raise ValueError(f"customers lack the metric column {metric!r}")
        values = customers[metric].astype(float).to_numpy()
        inside, outside = values[flags], values[~flags]
        boot = np.array(
            [
                rng.choice(inside, inside.size).mean() - rng.choice(outside, outside.size).mean()
                for _ in range(n_bootstrap)
            ]
        )
        test = mannwhitneyu(inside, outside, alternative="two-sided")
        rows.append(
            {
                "metric": metric,
                "insiders": int(inside.size),
                "others": int(outside.size),
                "insiders_mean": float(inside.mean()),
                "others_mean": float(outside.mean()),
                "difference": float(inside.mean() - outside.mean()),
                "ci_low": float(np.quantile(boot, tail)),
                "ci_high": float(np.quantile(boot, 1 - tail)),
                "confidence": confidence,
                "mann_whitney_u": float(test.statistic),
                "p_value": float(test.pvalue),
            }
        )
    return pd.DataFrame(rows, columns=list(EVIDENCE_COLUMNS))
