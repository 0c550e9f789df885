"""The evidence's bootstrap draws in batches bounded in values, not only in resamples.

At 100x the real store (433,000 customers) a batch of 250 resamples of the larger group
held 108 million floats and as many indices (1.7 GB at once); a batch now holds at most
BOOTSTRAP_BATCH_VALUES values per group. Below 40,000 customers (the real data and its
10x) nothing changes, so the intervals there stay what a seed reproduced before.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import bootstrap

from models_py.evidence import (
    BOOTSTRAP_BATCH,
    BOOTSTRAP_BATCH_VALUES,
    bootstrap_batch,
    group_differences,
)


@pytest.mark.parametrize(
    ("customers", "batch"),
    [(1, 250), (4_329, 250), (40_000, 250), (43_299, 230), (433_000, 23), (10**9, 1)],
)
def test_a_batch_holds_at_most_the_stated_values(customers: int, batch: int) -> None:
    assert BOOTSTRAP_BATCH == 250 and BOOTSTRAP_BATCH_VALUES == 10_000_000
    assert bootstrap_batch(customers) == batch
    assert batch * customers <= BOOTSTRAP_BATCH_VALUES or batch == 1


def test_a_large_base_is_resampled_in_the_smaller_batches() -> None:
    """The interval is scipy's percentile bootstrap drawn in the bounded batch of the
    larger group (95,000 others: 105 resamples per batch); the old batch of 250 draws
    differently, so this fails before the change."""
    rng = np.random.default_rng(3)
    n = 100_000
    flags = np.zeros(n, dtype=bool)
    flags[rng.choice(n, 5_000, replace=False)] = True
    customers = pd.DataFrame({"monetary": rng.gamma(2.0, 50.0, n) + flags * 30})
    result = group_differences(
        customers, flags, metrics=("monetary",), n_bootstrap=300, confidence=0.9, seed=5
    ).iloc[0]
    values = customers["monetary"].to_numpy()
    assert bootstrap_batch(int((~flags).sum())) == 105
    expected = bootstrap(
        (values[flags], values[~flags]),
        lambda a, b, axis: a.mean(axis=axis) - b.mean(axis=axis),
        n_resamples=300,
        batch=105,
        vectorized=True,
        paired=False,
        confidence_level=0.9,
        method="percentile",
        rng=np.random.default_rng(5),
    ).confidence_interval
    assert result["ci_low"] == pytest.approx(expected.low, rel=1e-12)
    assert result["ci_high"] == pytest.approx(expected.high, rel=1e-12)
