"""Expected revenue per customer for the next months: BG/NBD + Gamma-Gamma.

The models are pymc-marketing's (``BetaGeoModel`` for how many purchases a customer
makes and whether they are still alive, ``GammaGammaModel`` for what a purchase is
worth), fitted by maximum a posteriori: a few seconds on thousands of customers,
and the same answer on every run. Nothing here writes the models by hand.

A MAP fit has no posterior, and on this kind of data the models' own parameter
uncertainty is far narrower than their real error (they assume no seasonality). So
no interval is made here: the models rank customers (the ``expected_revenue``
definition of the Insiders) and give a group's model sum beside the group forecast;
a group's forecast and its interval, from the rolling-origin errors of that forecast
at earlier origins, come from ``models_py/group_forecast.py``.
"""

from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

HISTORY_COLUMNS: tuple[str, ...] = ("customer_id", "frequency", "recency", "t", "monetary_value")

FORECAST_COLUMNS: tuple[str, ...] = (
    "customer_id",
    "probability_alive",
    "expected_purchases",
    "expected_spend",
    "expected_revenue",
)


@dataclass(frozen=True)
class CustomerForecast:
    """Per-customer expectations over ``horizon_days`` and the fitted parameters."""

    customers: pd.DataFrame
    horizon_days: int
    parameters: dict[str, float]
    seconds: float


def validate_histories(histories: pd.DataFrame) -> pd.DataFrame:
    """Check the BG/NBD input (days, a purchase = a day with a purchase) and tidy it."""
    missing = [c for c in HISTORY_COLUMNS if c not in histories.columns]
    if missing:
        raise ValueError(f"purchase histories lack the columns: {', '.join(missing)}")
    if histories.empty:
        raise ValueError("no purchase histories to fit: no customer bought before the as-of")
    if histories["customer_id"].duplicated().any():
        raise ValueError("purchase histories repeat a customer_id")
    frame = histories[list(HISTORY_COLUMNS)].copy()
    for column in ("frequency", "recency", "t"):
        frame[column] = frame[column].astype(float)
        if (frame[column] < 0).any() or frame[column].isna().any():
            raise ValueError(f"purchase histories: {column} must be a non-negative number")
    if (frame["recency"] > frame["t"]).any():
        raise ValueError("purchase histories: recency (first to last purchase) exceeds t (age)")
    repeat = frame["frequency"] > 0
    if (frame.loc[repeat, "monetary_value"].fillna(0) <= 0).any():
        raise ValueError("purchase histories: a repeat buyer has no positive monetary_value")
    frame["monetary_value"] = frame["monetary_value"].where(repeat, 0.0).astype(float)
    return frame


def predict_revenue(histories: pd.DataFrame, horizon_days: int, seed: int = 42) -> CustomerForecast:
    """Fit BG/NBD and Gamma-Gamma on ``histories`` and predict ``horizon_days`` ahead.

    ``histories``: one row per customer with ``frequency`` (repeat purchase days),
    ``recency`` (days from first to last purchase), ``t`` (days from first purchase
    to the as-of) and ``monetary_value`` (mean revenue of the repeat purchase days).
    Gamma-Gamma is fitted on repeat buyers only, as the model requires; a one-time
    buyer's expected spend is then the population's.
    """
    if horizon_days <= 0:
        raise ValueError(f"horizon_days must be positive, got {horizon_days}")
    frame = validate_histories(histories)
    repeaters = frame[frame["frequency"] > 0]
    if len(repeaters) < 10:
        raise ValueError(
            f"only {len(repeaters)} repeat buyers: too few to fit the Gamma-Gamma spend model"
        )
    started = time.perf_counter()
    with _quiet():
        from pymc_marketing import clv

        rfm = frame.rename(columns={"t": "T"})[["customer_id", "frequency", "recency", "T"]]
        purchases_model = clv.BetaGeoModel(data=rfm)
        purchases_model.fit(method="map", progressbar=False, seed=seed)
        spend_data = repeaters[["customer_id", "frequency", "monetary_value"]]
        spend_model = clv.GammaGammaModel(data=spend_data)
        spend_model.fit(method="map", progressbar=False, seed=seed)
        expected_purchases = _point(
            purchases_model.expected_purchases(data=rfm, future_t=horizon_days)
        )
        alive = _point(purchases_model.expected_probability_alive(data=rfm))
        spend = _point(
            spend_model.expected_customer_spend(
                data=frame[["customer_id", "frequency", "monetary_value"]]
            )
        )
    customers = pd.DataFrame(
        {
            "customer_id": frame["customer_id"].to_numpy(),
            "probability_alive": alive,
            "expected_purchases": expected_purchases,
            "expected_spend": spend,
        }
    )
    customers["expected_revenue"] = customers["expected_purchases"] * customers["expected_spend"]
    if not np.isfinite(customers[list(FORECAST_COLUMNS[1:])].to_numpy()).all():
        raise ValueError("the fitted models predicted non-finite values: check the histories")
    parameters = {
        **{f"bg_{k}": float(v) for k, v in purchases_model.fit_summary().items()},
        **{f"gg_{k}": float(v) for k, v in spend_model.fit_summary().items()},
    }
    return CustomerForecast(
        customers=customers[list(FORECAST_COLUMNS)],
        horizon_days=int(horizon_days),
        parameters=parameters,
        seconds=round(time.perf_counter() - started, 2),
    )


def _point(values) -> np.ndarray:
    """A MAP fit's predictions carry chain and draw dimensions of size one: drop them."""
    return np.asarray(values.mean(("chain", "draw")).values, dtype=float)


class _quiet:
    """pymc and pytensor warn at length about BLAS and deprecations on every fit."""

    def __enter__(self):
        self._warnings = warnings.catch_warnings()
        self._warnings.__enter__()
        warnings.simplefilter("ignore")
        self._levels = {}
        for name in ("pymc", "pytensor", "pymc_marketing", "pymc_extras"):
            logger = logging.getLogger(name)
            self._levels[name] = logger.level
            logger.setLevel(logging.ERROR)
        return self

    def __exit__(self, *exc):
        for name, level in self._levels.items():
            logging.getLogger(name).setLevel(level)
        return self._warnings.__exit__(*exc)
