"""Group statistics on bases with a known answer."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models_py.evidence import group_differences


def base(shift: float, n: int = 600, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    flags = np.arange(n) < n // 5
    monetary = rng.lognormal(6, 1, n) + np.where(flags, shift, 0)
    frequency = rng.poisson(3, n) + np.where(flags, int(shift > 0) * 5, 0)
    return pd.DataFrame({"monetary": monetary, "frequency": frequency}), flags


def test_a_real_difference_is_found_and_bracketed():
    customers, flags = base(shift=2000)
    result = group_differences(customers, flags, n_bootstrap=500).set_index("metric")
    money = result.loc["monetary"]
    assert money["difference"] == pytest.approx(
        customers["monetary"][flags].mean() - customers["monetary"][~flags].mean()
    )
    assert 0 < money["ci_low"] < money["difference"] < money["ci_high"]
    assert money["ci_low"] > 1500  # the true shift is 2000
    assert money["p_value"] < 1e-6
    assert result.loc["frequency", "p_value"] < 1e-6
    assert (money["insiders"], money["others"]) == (120, 480)


def test_no_difference_gives_an_interval_around_zero():
    customers, flags = base(shift=0, seed=3)
    result = group_differences(customers, flags, n_bootstrap=500).set_index("metric")
    money = result.loc["monetary"]
    assert money["ci_low"] < 0 < money["ci_high"]
    assert money["p_value"] > 0.01


def test_same_seed_same_interval_and_bad_input():
    customers, flags = base(shift=500)
    first = group_differences(customers, flags, n_bootstrap=200, seed=7)
    pd.testing.assert_frame_equal(
        first, group_differences(customers, flags, n_bootstrap=200, seed=7)
    )
    with pytest.raises(ValueError, match="at least two Insiders"):
        group_differences(customers, np.zeros(len(customers), dtype=bool))
    with pytest.raises(ValueError, match="metric column 'ticket'"):
        group_differences(customers, flags, metrics=("ticket",))
