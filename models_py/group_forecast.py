"""A group's revenue over the next months: level, trend, the seasonality one year shows.

Per-customer models (BG/NBD + Gamma-Gamma) split revenue among customers well but
assume a stationary business: on this store, which grew through 2011 into its
autumn peak, they under-forecast a group's total by 25-45% at every past origin.
The group's own last horizon ("they will spend what they spent in the last three
months") does better, so the total starts from that level and adjusts it:

- trend: the slope ``b`` of log monthly revenue of all customers, fitted by least
  squares on the complete months before the origin (at least three), damped to half
  (``exp(b * horizon / 2)``): the two windows' midpoints are a horizon apart, and a
  full extrapolation of a one-year slope overshoots;
- season: the trend line's residual of each calendar month, taken from its latest
  complete occurrence before the origin. The factor is
  ``exp(mean residual of the horizon's months - mean residual of the last horizon's
  months)`` (day-weighted), applied only when every calendar month of both windows
  has been observed; otherwise 1. With one year of data (the first December is in
  it) only a forecast made at the end of the data can use it: no earlier origin has
  the year before its horizon, so this part is never backtested, and the report
  says so.

The interval comes from the rolling-origin errors of the same forecast at earlier
origins (only those whose horizon was over by the origin): in log space it spans the
largest error seen, widened by (n + 1) / n for the n errors behind it; with no error
yet, a prior half-width. It names its method; it is no probability statement.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

MIN_TREND_MONTHS = 3
PRIOR_LOG_HALF_WIDTH = 0.3
INTERVAL_METHOD = "rolling_max_error"


@dataclass(frozen=True)
class Adjustment:
    """The factors that turn a group's last-horizon revenue into its forecast."""

    trend_factor: float
    seasonal_factor: float
    trend_slope: float
    months_fitted: int
    season_observed: bool

    @property
    def factor(self) -> float:
        return self.trend_factor * self.seasonal_factor


def complete_months(monthly: pd.Series, first_day: pd.Timestamp, origin: pd.Timestamp) -> pd.Series:
    """Monthly revenue (index: month start) of the months wholly inside
    [first_day, origin): a partial month would read as a fall in revenue."""
    index = pd.DatetimeIndex(monthly.index)
    ends = index + pd.offsets.MonthBegin(1)
    keep = (index >= pd.Timestamp(first_day).normalize()) & (ends <= pd.Timestamp(origin))
    return pd.Series(monthly.to_numpy(dtype=float)[keep], index=index[keep]).sort_index()


def _window_weights(start: pd.Timestamp, end: pd.Timestamp) -> dict[int, float]:
    """Share of the days of [start, end) in each calendar month (1-12)."""
    days = pd.date_range(start, end - pd.Timedelta(days=1), freq="D")
    counts = pd.Series(days.month).value_counts()
    return {int(m): float(c) / len(days) for m, c in counts.items()}


def adjustment(
    monthly: pd.Series, first_day: pd.Timestamp, origin: pd.Timestamp, horizon_months: int
) -> Adjustment:
    """Trend and seasonal factors at ``origin`` from the months before it only."""
    origin = pd.Timestamp(origin)
    months = complete_months(monthly, first_day, origin)
    months = months[months > 0]
    if len(months) < MIN_TREND_MONTHS:
        return Adjustment(1.0, 1.0, 0.0, len(months), False)
    t = (months.index.year - months.index[0].year) * 12 + (
        months.index.month - months.index[0].month
    )
    y = np.log(months.to_numpy())
    slope, intercept = np.polyfit(t.to_numpy(dtype=float), y, 1)
    residual = pd.Series(y - (intercept + slope * t.to_numpy(dtype=float)), index=months.index)
    latest = residual.groupby(residual.index.month).last()  # latest occurrence per month
    after = _window_weights(origin, origin + pd.DateOffset(months=horizon_months))
    before = _window_weights(origin - pd.DateOffset(months=horizon_months), origin)
    seen = all(m in latest.index for m in (*after, *before))
    season = 1.0
    if seen:
        season = float(
            np.exp(
                sum(w * latest[m] for m, w in after.items())
                - sum(w * latest[m] for m, w in before.items())
            )
        )
    trend = float(np.exp(slope * horizon_months / 2))
    return Adjustment(trend, season, float(slope), len(months), seen)


def log_error(forecast: float, actual: float) -> float | None:
    """log(actual / forecast): symmetric for over- and under-forecasts."""
    if forecast <= 0 or actual <= 0:
        return None
    return float(np.log(actual / forecast))


def rolling_interval(
    forecast: float,
    past_log_errors: Sequence[float],
    prior_half_width: float = PRIOR_LOG_HALF_WIDTH,
) -> tuple[float, float, float]:
    """(lower, upper, log half-width) around ``forecast`` from earlier origins' errors."""
    errors = np.abs(np.asarray([e for e in past_log_errors if e is not None], dtype=float))
    errors = errors[np.isfinite(errors)]
    n = len(errors)
    half = prior_half_width if n == 0 else float(errors.max() * (n + 1) / n)
    return float(forecast * np.exp(-half)), float(forecast * np.exp(half)), half
