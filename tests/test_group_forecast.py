"""The group forecast's adjustment (trend, seasonality) and its rolling interval, on
hand-made monthly series whose answers are known in closed form."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from models_py.group_forecast import (
    MIN_TREND_MONTHS,
    PRIOR_LOG_HALF_WIDTH,
    adjustment,
    complete_months,
    log_error,
    rolling_interval,
)


def monthly(start: str, values: list[float] | np.ndarray) -> pd.Series:
    """Revenue per month, indexed by month start, as MONTHLY_REVENUE returns it."""
    index = pd.date_range(start, periods=len(values), freq="MS")
    return pd.Series(np.asarray(values, dtype=float), index=index, name="revenue")


# A seasonal pattern in log revenue, symmetric around mid-year (Jan = Dec, Feb = Nov,
# Mar = Oct, the summer flat) and summing to zero. Over whole years of it, it is
# orthogonal both to the constant and to the month number t (sum of s(t) * (t - mean t)
# is zero by symmetry), so least squares on log revenue = a + b t + s recovers a and b
# exactly and the residuals are s itself.
SEASON = {1: 0.3, 2: -0.1, 3: -0.2, 10: -0.2, 11: -0.1, 12: 0.3}


def seasonal_log(month: int) -> float:
    return SEASON.get(month, 0.0)


# --- trend -----------------------------------------------------------------------------------


def test_exact_growth_of_ten_percent_a_month_gives_half_the_horizon_growth() -> None:
    series = monthly("2011-01-01", [100 * 1.1**t for t in range(6)])  # Jan..Jun
    origin = pd.Timestamp("2011-07-01")
    result = adjustment(series, pd.Timestamp("2011-01-01"), origin, horizon_months=3)
    assert result.months_fitted == 6
    assert result.trend_slope == pytest.approx(math.log(1.1))
    assert result.trend_factor == pytest.approx(math.exp(math.log(1.1) * 3 / 2))
    # Jul-Sep (the horizon) and Apr-Jun (the last horizon) need Jul..Sep of a year
    # before, never observed: no seasonal adjustment.
    assert not result.season_observed
    assert result.seasonal_factor == 1.0
    assert result.factor == pytest.approx(1.1**1.5)


def test_the_trend_factor_grows_with_the_horizon() -> None:
    series = monthly("2011-01-01", [100 * 1.1**t for t in range(6)])
    for horizon in (1, 2, 6):
        result = adjustment(series, pd.Timestamp("2011-01-01"), pd.Timestamp("2011-07-01"), horizon)
        assert result.trend_factor == pytest.approx(1.1 ** (horizon / 2))


def test_a_falling_business_gets_a_factor_below_one() -> None:
    series = monthly("2011-01-01", [100 * 0.9**t for t in range(5)])
    result = adjustment(series, pd.Timestamp("2011-01-01"), pd.Timestamp("2011-06-01"), 3)
    assert result.trend_factor == pytest.approx(0.9**1.5)
    assert result.trend_factor < 1


def test_months_after_the_origin_are_not_read() -> None:
    before = [100 * 1.1**t for t in range(6)]
    series = monthly("2011-01-01", [*before, 1e9, 1.0, 5e6])  # Jul..Sep: wild
    result = adjustment(series, pd.Timestamp("2011-01-01"), pd.Timestamp("2011-07-01"), 3)
    assert result.months_fitted == 6
    assert result.trend_factor == pytest.approx(1.1**1.5)


# --- seasonality -------------------------------------------------------------------------------


def test_seasonal_factor_observed_over_two_years_equals_the_hand_computation() -> None:
    # Jan 2010 .. Dec 2011, log revenue = log 100 + 0.02 t + s(month).
    growth = 0.02
    values = [
        100 * math.exp(growth * t + seasonal_log(month))
        for t, month in enumerate([m for _ in range(2) for m in range(1, 13)])
    ]
    series = monthly("2010-01-01", values)
    origin = pd.Timestamp("2012-01-01")
    result = adjustment(series, pd.Timestamp("2010-01-01"), origin, horizon_months=3)
    assert result.months_fitted == 24
    assert result.trend_slope == pytest.approx(growth)
    assert result.trend_factor == pytest.approx(math.exp(growth * 3 / 2))
    assert result.season_observed
    # The horizon is Jan-Mar 2012 (31 + 29 + 31 = 91 days: 2012 is a leap year), the
    # last horizon Oct-Dec 2011 (31 + 30 + 31 = 92 days); the residual of each month is
    # its seasonal term.
    after = (31 * 0.3 + 29 * -0.1 + 31 * -0.2) / 91
    before = (31 * -0.2 + 30 * -0.1 + 31 * 0.3) / 92
    assert result.seasonal_factor == pytest.approx(math.exp(after - before))
    assert result.factor == pytest.approx(math.exp(growth * 1.5 + after - before))


def test_seasonal_factor_uses_each_months_latest_occurrence() -> None:
    # 14 months, Nov 2010 .. Dec 2011, no pattern except that December 2011 is twice
    # December 2010. A line fitted through them has a residual per month; the factor
    # must use the residuals of the LATEST Nov and Dec (2011), computed here by hand.
    values = [100.0] * 14
    values[1] = 100.0  # Dec 2010
    values[13] = 200.0  # Dec 2011
    values[12] = 150.0  # Nov 2011
    series = monthly("2010-11-01", values)
    origin = pd.Timestamp("2012-01-01")
    first_day = pd.Timestamp("2010-11-01")
    result = adjustment(series, first_day, origin, horizon_months=2)

    t = np.arange(14, dtype=float)
    y = np.log(np.asarray(values))
    slope = np.sum((t - t.mean()) * (y - y.mean())) / np.sum((t - t.mean()) ** 2)
    intercept = y.mean() - slope * t.mean()
    residual = y - (intercept + slope * t)
    month_of = {i: (10 + i) % 12 + 1 for i in range(14)}  # 0 -> Nov, 1 -> Dec, 2 -> Jan
    latest = {month_of[i]: residual[i] for i in range(14)}  # later overwrite earlier
    # Horizon Jan-Feb 2012 (31 + 29 days), last horizon Nov-Dec 2011 (30 + 31 days).
    after = (31 * latest[1] + 29 * latest[2]) / 60
    before = (30 * latest[11] + 31 * latest[12]) / 61
    assert result.season_observed
    assert result.trend_slope == pytest.approx(slope)
    assert result.seasonal_factor == pytest.approx(math.exp(after - before))
    # December 2011 was high: the months ahead look lower than the last two.
    assert result.seasonal_factor < 1


def test_an_origin_inside_a_month_weights_the_months_by_days() -> None:
    # The origin 2011-12-10 (as the pipeline's calendar has it) with Dec 2010 .. Nov 2011
    # complete: the horizon Dec 10 - Mar 10 and the last horizon Sep 10 - Dec 10 need
    # Sep..Mar, all seen in the year before; December 2011 is partial and not fitted.
    values = [100 * math.exp(seasonal_log(m)) for m in [12, *range(1, 12)]]
    series = monthly("2010-12-01", [*values, 10.0])  # Dec 2011 so far: partial
    origin = pd.Timestamp("2011-12-10")
    result = adjustment(series, pd.Timestamp("2010-12-01 08:26"), origin, horizon_months=3)
    assert result.months_fitted == 12
    assert result.season_observed
    t = np.arange(12, dtype=float)
    y = np.log(np.asarray(values))
    slope, intercept = np.polyfit(t, y, 1)
    residual = dict(zip([12, *range(1, 12)], y - (intercept + slope * t), strict=True))
    after = sum(residual[m] * d for m, d in {12: 22, 1: 31, 2: 29, 3: 9}.items()) / 91
    before = sum(residual[m] * d for m, d in {9: 21, 10: 31, 11: 30, 12: 9}.items()) / 91
    assert result.seasonal_factor == pytest.approx(math.exp(after - before))


# --- too little data, partial months -----------------------------------------------------------


def test_fewer_than_three_complete_months_give_factors_of_one() -> None:
    assert MIN_TREND_MONTHS == 3
    series = monthly("2011-01-01", [100.0, 200.0])
    result = adjustment(series, pd.Timestamp("2011-01-01"), pd.Timestamp("2011-03-01"), 3)
    assert (result.trend_factor, result.seasonal_factor, result.factor) == (1.0, 1.0, 1.0)
    assert result.months_fitted == 2
    assert result.trend_slope == 0.0
    assert not result.season_observed


def test_partial_months_do_not_count_towards_the_three() -> None:
    # Jan 15 .. Apr 20: Jan (starts before the first day) and Apr (ends after the
    # origin) are partial; only Feb and Mar are complete.
    series = monthly("2011-01-01", [10.0, 200.0, 400.0, 50.0])
    result = adjustment(series, pd.Timestamp("2011-01-15"), pd.Timestamp("2011-04-20"), 3)
    assert result.months_fitted == 2
    assert result.factor == 1.0


def test_months_without_positive_revenue_are_not_fitted() -> None:
    series = monthly("2011-01-01", [100.0, 0.0, 121.0, -5.0, 133.1])
    result = adjustment(series, pd.Timestamp("2011-01-01"), pd.Timestamp("2011-06-01"), 2)
    assert result.months_fitted == 3
    # Jan 100, Mar 121, May 133.1 on the month axis (t = 0, 2, 4): not exactly
    # exponential, so the slope is least squares on those three points.
    slope = np.polyfit([0.0, 2.0, 4.0], np.log([100.0, 121.0, 133.1]), 1)[0]
    assert result.trend_slope == pytest.approx(slope)


def test_complete_months_keeps_only_months_wholly_inside_the_window() -> None:
    series = monthly("2010-12-01", [1.0, 2.0, 3.0, 4.0, 5.0])  # Dec .. Apr
    kept = complete_months(series, pd.Timestamp("2010-12-01 08:26"), pd.Timestamp("2011-04-01"))
    assert kept.index.tolist() == list(pd.date_range("2010-12-01", "2011-03-01", freq="MS"))
    assert kept.tolist() == [1.0, 2.0, 3.0, 4.0]
    mid = complete_months(series, pd.Timestamp("2010-12-02"), pd.Timestamp("2011-03-31"))
    assert mid.index.tolist() == list(pd.date_range("2011-01-01", "2011-02-01", freq="MS"))
    # The input order does not matter.
    shuffled = series.iloc[[3, 0, 4, 1, 2]]
    again = complete_months(shuffled, pd.Timestamp("2010-12-01"), pd.Timestamp("2011-04-01"))
    assert again.index.tolist() == kept.index.tolist()
    assert again.tolist() == kept.tolist()


# --- the interval ------------------------------------------------------------------------------


def test_without_past_errors_the_interval_has_the_prior_width() -> None:
    low, high, half = rolling_interval(1000.0, [])
    assert half == PRIOR_LOG_HALF_WIDTH
    assert low == pytest.approx(1000.0 * math.exp(-PRIOR_LOG_HALF_WIDTH))
    assert high == pytest.approx(1000.0 * math.exp(PRIOR_LOG_HALF_WIDTH))
    assert rolling_interval(1000.0, [None, None], prior_half_width=0.5)[2] == 0.5


def test_the_interval_spans_the_largest_error_widened_by_n_plus_one_over_n() -> None:
    low, high, half = rolling_interval(500.0, [0.1, -0.2, None, 0.05])
    assert half == pytest.approx(0.2 * 4 / 3)  # n = 3 errors (None is no error)
    assert low == pytest.approx(500.0 * math.exp(-0.2 * 4 / 3))
    assert high == pytest.approx(500.0 * math.exp(0.2 * 4 / 3))
    assert rolling_interval(500.0, [-0.4])[2] == pytest.approx(0.8)


def test_the_interval_covers_an_actual_as_far_off_as_the_worst_past_error() -> None:
    past = [log_error(100.0, 130.0), log_error(100.0, 80.0)]  # +0.262, -0.223
    low, high, _ = rolling_interval(1000.0, past)
    assert low < 1000.0 * 1.3 < high
    assert low < 1000.0 * 0.8 < high
    assert low < 1000.0 / 1.3  # symmetric in log space


def test_log_error_is_symmetric_for_over_and_under_forecasts() -> None:
    assert log_error(100.0, 200.0) == pytest.approx(math.log(2))
    assert log_error(200.0, 100.0) == pytest.approx(-math.log(2))
    assert log_error(100.0, 100.0) == 0.0
    assert log_error(0.0, 100.0) is None
    assert log_error(100.0, 0.0) is None
    assert log_error(-5.0, 100.0) is None
