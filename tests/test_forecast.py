"""The revenue forecast (BG/NBD + Gamma-Gamma) on customers simulated from a known process.

No mocks: the tests fit pymc-marketing's real models (MAP) once per module on customers of
three groups whose buying process is known. Group A has a purchase day on about one day in
ten and spends about 80 per purchase day; group B has one about every sixty days and spends
about 20; nobody in A or B ever stops buying. Group C buys like A (spending about 50) but
lapses: after each purchase day it stops for good with probability 0.1, as BG/NBD assumes.
First purchases are staggered over a 300-day window, and the same process is run for the
90 days after it, so the forecast is compared with what the customers then did. The process
has no seasonality and stays within BG/NBD's family, so the total should come out about right.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest

from models_py.forecast import (
    FORECAST_COLUMNS,
    HISTORY_COLUMNS,
    CustomerForecast,
    predict_revenue,
    score_revenue,
    validate_histories,
)

WINDOW_DAYS = 300
HORIZON_DAYS = 90
LAST_FIRST_PURCHASE = 240


@dataclass(frozen=True)
class Group:
    customers: int
    daily_rate: float  # probability that a given day is a purchase day
    mean_spend: float  # per purchase day
    dropout: float = 0.0  # probability of stopping for good after each purchase day


GROUPS: dict[str, Group] = {
    "A": Group(customers=250, daily_rate=1 / 10, mean_spend=80.0),
    "B": Group(customers=250, daily_rate=1 / 60, mean_spend=20.0),
    "C": Group(customers=100, daily_rate=1 / 10, mean_spend=50.0, dropout=0.1),
}


@dataclass(frozen=True)
class Simulation:
    histories: pd.DataFrame  # the model's input, in a shuffled order
    group: np.ndarray  # "A", "B" or "C" per row of histories
    active: np.ndarray  # still buying at the end of the window (not lapsed)
    future_purchases: np.ndarray  # purchase days in the 90 days after the window
    future_revenue: np.ndarray  # revenue in the 90 days after the window


def simulate(seed: int = 2024) -> Simulation:
    """Customers of GROUPS over the window and the horizon after it, summarised lifetimes-style.

    Every day after a customer's first purchase is a purchase day with the group's
    probability (a discrete Poisson process) until the customer lapses: the number of
    purchase days a customer makes before lapsing is geometric with the group's dropout.
    A customer's mean spend is the group's times Gamma noise (mean 1), and each purchase
    day's spend is the customer's times Gamma noise (mean 1).
    """
    rng = np.random.default_rng(seed)
    rows: list[dict[str, object]] = []
    groups: list[str] = []
    active: list[bool] = []
    future_purchases: list[int] = []
    future_revenue: list[float] = []
    for name, group in GROUPS.items():
        for _ in range(group.customers):
            first = int(rng.integers(0, LAST_FIRST_PURCHASE))
            span = WINDOW_DAYS + HORIZON_DAYS - first  # days first .. end of the horizon
            bought = rng.random(span) < group.daily_rate
            bought[0] = True  # the first purchase
            budget = rng.geometric(group.dropout) if group.dropout else span
            bought[np.flatnonzero(bought)[budget:]] = False  # lapsed after `budget` days
            customer_spend = group.mean_spend * rng.gamma(8.0, 1 / 8.0)
            spend = customer_spend * rng.gamma(6.0, 1 / 6.0, size=span)
            age = WINDOW_DAYS - first  # t: first purchase to the end of the window
            past = np.flatnonzero(bought[:age])
            future = np.flatnonzero(bought[age:]) + age
            frequency = len(past) - 1
            rows.append(
                {
                    # ids unrelated to the row order: the output must still follow the input
                    "customer_id": f"c{rng.integers(10**8):08d}{name}",
                    "frequency": frequency,
                    "recency": int(past[-1]),
                    "t": age,
                    "monetary_value": float(spend[past[1:]].mean()) if frequency else np.nan,
                }
            )
            groups.append(name)
            active.append(budget > len(past))
            future_purchases.append(len(future))
            future_revenue.append(float(spend[future].sum()))
    order = rng.permutation(len(rows))
    histories = pd.DataFrame(rows).iloc[order].reset_index(drop=True)
    assert not histories["customer_id"].duplicated().any()
    return Simulation(
        histories=histories,
        group=np.asarray(groups)[order],
        active=np.asarray(active)[order],
        future_purchases=np.asarray(future_purchases)[order],
        future_revenue=np.asarray(future_revenue)[order],
    )


@pytest.fixture(scope="module")
def simulation() -> Simulation:
    return simulate()


@pytest.fixture(scope="module")
def forecast(simulation: Simulation) -> CustomerForecast:
    """The one real fit of the module (the first in a process compiles C: ~20-30 s)."""
    return predict_revenue(simulation.histories, HORIZON_DAYS, seed=7)


def small_histories() -> pd.DataFrame:
    """Twelve valid customers (eleven repeat buyers), for the input checks."""
    return pd.DataFrame(
        {
            "customer_id": [f"k{i}" for i in range(12)],
            "frequency": [0, *range(1, 12)],
            "recency": [0, *range(10, 120, 10)],
            "t": [50, *range(100, 210, 10)],
            "monetary_value": [np.nan, *np.linspace(10, 60, 11)],
        }
    )


# --- the fit on the simulated customers -----------------------------------------------------


def test_one_row_per_customer_in_input_order(
    simulation: Simulation, forecast: CustomerForecast
) -> None:
    customers = forecast.customers
    assert list(customers.columns) == list(FORECAST_COLUMNS)
    assert customers["customer_id"].tolist() == simulation.histories["customer_id"].tolist()
    assert forecast.horizon_days == HORIZON_DAYS
    assert forecast.seconds > 0


def test_predictions_are_finite_and_consistent(forecast: CustomerForecast) -> None:
    customers = forecast.customers
    values = customers[list(FORECAST_COLUMNS[1:])].to_numpy(dtype=float)
    assert np.isfinite(values).all()
    assert customers["probability_alive"].between(0, 1).all()
    assert (customers["expected_purchases"] >= 0).all()
    assert (customers["expected_spend"] > 0).all()
    np.testing.assert_allclose(
        customers["expected_revenue"],
        customers["expected_purchases"] * customers["expected_spend"],
        rtol=1e-12,
    )


def test_parameters_name_both_models(forecast: CustomerForecast) -> None:
    parameters = forecast.parameters
    assert {"bg_r", "bg_alpha", "bg_a", "bg_b", "gg_p", "gg_q", "gg_v"} <= set(parameters)
    assert all(isinstance(v, float) and np.isfinite(v) for v in parameters.values())


def test_lapsed_customers_look_less_alive(
    simulation: Simulation, forecast: CustomerForecast
) -> None:
    alive = forecast.customers["probability_alive"].to_numpy()
    repeat = (simulation.histories["frequency"] > 0).to_numpy()
    never_lapse = np.isin(simulation.group, ["A", "B"])
    # in BG/NBD a customer can only drop out after a repeat purchase: C's lapsed one-time
    # buyers look as alive as anyone, so the lapsed are compared among repeat buyers
    lapsed = (simulation.group == "C") & ~simulation.active & repeat
    still_buying = (simulation.group == "C") & simulation.active
    assert lapsed.sum() > 30 and still_buying.sum() > 10
    assert alive[never_lapse].mean() > 0.8
    assert alive[still_buying].mean() > 0.8
    assert alive[lapsed].mean() < 0.5
    purchases = forecast.customers["expected_purchases"].to_numpy()
    assert purchases[lapsed].mean() < purchases[still_buying].mean() / 2


def test_one_time_buyers_are_alive_by_the_model(
    simulation: Simulation, forecast: CustomerForecast
) -> None:
    one_time = (simulation.histories["frequency"] == 0).to_numpy()
    assert one_time.sum() > 10
    alive = forecast.customers["probability_alive"].to_numpy()
    np.testing.assert_allclose(alive[one_time], 1.0, atol=1e-6)


def test_frequent_big_spenders_are_worth_several_times_more(
    simulation: Simulation, forecast: CustomerForecast
) -> None:
    customers = forecast.customers.assign(group=simulation.group)
    means = customers.groupby("group")[["expected_purchases", "expected_revenue"]].mean()
    # true ratio of expected purchases is (1/10) / (1/60) = 6, of revenue 6 * 80/20 = 24;
    # the models shrink towards the population, but the order and a wide gap must remain
    assert means.loc["A", "expected_purchases"] > 3 * means.loc["B", "expected_purchases"]
    assert means.loc["A", "expected_revenue"] > 3 * means.loc["B", "expected_revenue"]
    # a group A customer's true expectation over the horizon is 90 / 10 = 9 purchase days
    true_a = GROUPS["A"].daily_rate * HORIZON_DAYS
    assert means.loc["A", "expected_purchases"] == pytest.approx(true_a, rel=0.2)


def test_total_forecast_is_close_to_what_happened_next(
    simulation: Simulation, forecast: CustomerForecast
) -> None:
    customers = forecast.customers
    predicted_purchases = customers["expected_purchases"].sum()
    assert predicted_purchases == pytest.approx(simulation.future_purchases.sum(), rel=0.2)
    predicted_revenue = customers["expected_revenue"].sum()
    assert predicted_revenue == pytest.approx(simulation.future_revenue.sum(), rel=0.35)


def test_spend_is_shrunk_between_own_mean_and_population_mean(
    simulation: Simulation, forecast: CustomerForecast
) -> None:
    p, q, v = (forecast.parameters[f"gg_{k}"] for k in ("p", "q", "v"))
    population_mean = p * v / (q - 1)  # Gamma-Gamma's mean spend of a purchase
    spend = forecast.customers["expected_spend"].to_numpy()
    history = simulation.histories
    one_time = (history["frequency"] == 0).to_numpy()
    assert one_time.any() and (~one_time).any()
    # a one-time buyer has no spend of their own in the model: they get the population's
    # (fit_summary rounds the parameters, hence the tolerance)
    np.testing.assert_allclose(spend[one_time], population_mean, rtol=1e-2)
    # a repeat buyer's expected spend is a weighted mean of their own and the population's
    own = history.loc[~one_time, "monetary_value"].to_numpy()
    low = np.minimum(own, population_mean) * (1 - 1e-2)
    high = np.maximum(own, population_mean) * (1 + 1e-2)
    assert ((spend[~one_time] >= low) & (spend[~one_time] <= high)).all()


# --- the input checks ------------------------------------------------------------------------


def test_validate_histories_tidies_a_valid_input() -> None:
    raw = small_histories().assign(extra="ignored")
    raw.loc[0, "monetary_value"] = 99.0  # a one-time buyer's value means nothing to the model
    frame = validate_histories(raw)
    assert list(frame.columns) == list(HISTORY_COLUMNS)
    assert frame["customer_id"].tolist() == raw["customer_id"].tolist()
    assert frame.loc[0, "monetary_value"] == 0.0
    pd.testing.assert_series_equal(
        frame["monetary_value"].iloc[1:], raw["monetary_value"].iloc[1:].astype(float)
    )
    for column in ("frequency", "recency", "t", "monetary_value"):
        assert frame[column].dtype == float
    assert raw.loc[0, "monetary_value"] == 99.0  # the caller's frame is left alone


def test_validate_histories_turns_missing_spend_of_one_time_buyers_into_zero() -> None:
    frame = validate_histories(small_histories())
    assert frame.loc[0, "monetary_value"] == 0.0
    assert not frame["monetary_value"].isna().any()


@pytest.mark.parametrize("column", HISTORY_COLUMNS)
def test_missing_column_is_named(column: str) -> None:
    with pytest.raises(ValueError, match=f"lack the columns: {column}"):
        validate_histories(small_histories().drop(columns=[column]))


def test_empty_histories_are_rejected() -> None:
    with pytest.raises(ValueError, match="no purchase histories to fit"):
        validate_histories(small_histories().iloc[0:0])


def test_recency_beyond_age_is_rejected() -> None:
    histories = small_histories()
    histories.loc[3, "recency"] = histories.loc[3, "t"] + 1
    with pytest.raises(ValueError, match=r"recency \(first to last purchase\) exceeds t"):
        validate_histories(histories)


@pytest.mark.parametrize("column", ["frequency", "recency", "t"])
@pytest.mark.parametrize("bad", [-1.0, np.nan])
def test_negative_or_missing_counts_are_rejected(column: str, bad: float) -> None:
    histories = small_histories().astype({column: float})
    histories.loc[5, column] = bad
    with pytest.raises(ValueError, match=f"{column} must be a non-negative number"):
        validate_histories(histories)


def test_duplicated_customer_is_rejected() -> None:
    histories = small_histories()
    histories.loc[4, "customer_id"] = histories.loc[2, "customer_id"]
    with pytest.raises(ValueError, match="repeat a customer_id"):
        validate_histories(histories)


@pytest.mark.parametrize("value", [0.0, -5.0, np.nan])
def test_repeat_buyer_without_positive_spend_is_rejected(value: float) -> None:
    histories = small_histories()
    histories.loc[6, "monetary_value"] = value
    with pytest.raises(ValueError, match="repeat buyer has no positive monetary_value"):
        validate_histories(histories)


def test_too_few_repeat_buyers_to_fit() -> None:
    histories = small_histories()
    histories.loc[1:3, ["frequency", "recency", "monetary_value"]] = [0, 0, np.nan]
    repeaters = int((histories["frequency"] > 0).sum())
    assert repeaters < 10
    with pytest.raises(ValueError, match=f"only {repeaters} repeat buyers"):
        predict_revenue(histories, HORIZON_DAYS)


@pytest.mark.parametrize("horizon", [0, -30])
def test_non_positive_horizon_is_rejected(horizon: int) -> None:
    with pytest.raises(ValueError, match="horizon_days must be positive"):
        predict_revenue(small_histories(), horizon)


def test_bad_histories_fail_before_fitting() -> None:
    histories = small_histories().drop(columns=["t"])
    with pytest.raises(ValueError, match="lack the columns: t"):
        predict_revenue(histories, HORIZON_DAYS)


# --- the fit compiled once, and scoring with saved parameters ---------------------------------


def test_the_fit_equals_pymc_marketings_own_find_map(
    simulation: Simulation, forecast: CustomerForecast
) -> None:
    """predict_revenue drives the optimiser itself with a log density compiled once per
    process; pymc-marketing's own ``fit(method="map")`` (pymc's find_MAP, compiled anew)
    on the same data must find the same estimates (to 1e-6, relative)."""
    import warnings

    from pymc_marketing import clv

    frame = validate_histories(simulation.histories)
    rfm = frame.rename(columns={"t": "T"})[["customer_id", "frequency", "recency", "T"]]
    repeaters = frame[frame["frequency"] > 0][["customer_id", "frequency", "monetary_value"]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, model in (
            ("bg_nbd", clv.BetaGeoModel(data=rfm)),
            ("gamma_gamma", clv.GammaGammaModel(data=repeaters)),
        ):
            model.fit(method="map", progressbar=False, seed=7)
            expected = {k: float(v.values.ravel()[0]) for k, v in model.fit_result.items()}
            assert forecast.posterior[name].keys() == expected.keys()
            for key, value in expected.items():
                assert forecast.posterior[name][key] == pytest.approx(value, rel=1e-6, abs=1e-9)


def test_a_second_fit_of_another_size_reuses_the_compiled_density(
    simulation: Simulation, forecast: CustomerForecast
) -> None:
    """The rolling-origin evaluation fits at every origin, each with other customers:
    the compiled density is reused (no new entry), and the fit is still right (equal to
    pymc-marketing's own on those customers is the test above; here, sane values)."""
    from models_py import forecast as module

    compiled = dict(module._COMPILED)
    assert compiled and all(v is not None for v in compiled.values())
    fewer = simulation.histories.iloc[: len(simulation.histories) // 2]
    again = predict_revenue(fewer, HORIZON_DAYS, seed=7)
    assert module._COMPILED.keys() == compiled.keys()
    assert again.posterior["bg_nbd"] != forecast.posterior["bg_nbd"]
    assert np.isfinite(again.customers["expected_revenue"]).all()


def test_scoring_with_the_saved_parameters_reproduces_the_fit(
    simulation: Simulation, forecast: CustomerForecast
) -> None:
    scored = score_revenue(simulation.histories, HORIZON_DAYS, forecast.posterior)
    pd.testing.assert_frame_equal(scored.customers, forecast.customers, check_exact=True)
    assert scored.parameters == forecast.parameters
    assert scored.posterior == forecast.posterior


def test_scoring_follows_the_gamma_gamma_formula_of_the_given_parameters(
    simulation: Simulation, forecast: CustomerForecast
) -> None:
    """Changed parameters change the scores: expected spend is Fader & Hardie's
    (1 - w) * p v / (q - 1) + w * mean spend, w = p x / (p x + q - 1), by hand."""
    posterior = {k: dict(v) for k, v in forecast.posterior.items()}
    posterior["gamma_gamma"]["v"] *= 2
    scored = score_revenue(simulation.histories, HORIZON_DAYS, posterior)
    p, q, v = (posterior["gamma_gamma"][k] for k in ("p", "q", "v"))
    frame = validate_histories(simulation.histories)
    x, mean = frame["frequency"].to_numpy(), frame["monetary_value"].to_numpy()
    weight = p * x / (p * x + q - 1)
    by_hand = (1 - weight) * p * v / (q - 1) + weight * mean
    np.testing.assert_allclose(scored.customers["expected_spend"], by_hand, rtol=1e-12)
    assert not np.allclose(scored.customers["expected_spend"], forecast.customers["expected_spend"])
    pd.testing.assert_series_equal(
        scored.customers["expected_purchases"], forecast.customers["expected_purchases"]
    )


def test_scoring_without_a_model_of_the_pair_is_refused(
    simulation: Simulation, forecast: CustomerForecast
) -> None:
    with pytest.raises(ValueError, match="lack the model\\(s\\): gamma_gamma"):
        score_revenue(simulation.histories, HORIZON_DAYS, {"bg_nbd": forecast.posterior["bg_nbd"]})


def test_a_large_base_is_fitted_on_a_sample_and_every_customer_scored(
    simulation: Simulation, forecast: CustomerForecast, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Above FIT_SAMPLE_CUSTOMERS the population's parameters come from a seeded sample:
    close to the whole base's fit, and every customer still gets a forecast."""
    import models_py.forecast as module

    histories = simulation.histories
    monkeypatch.setattr(module, "FIT_SAMPLE_CUSTOMERS", len(histories) // 2)
    sampled = predict_revenue(histories, HORIZON_DAYS, seed=7)
    assert list(sampled.customers["customer_id"]) == list(histories["customer_id"])
    for name in ("bg_r", "bg_alpha", "bg_a", "bg_b", "gg_p", "gg_q", "gg_v"):
        whole = forecast.parameters[name]
        assert sampled.parameters[name] == pytest.approx(whole, rel=0.35), name
    total = forecast.customers["expected_revenue"].sum()
    assert sampled.customers["expected_revenue"].sum() == pytest.approx(total, rel=0.1)
    # scored with exactly the sample's parameters
    again = score_revenue(histories, HORIZON_DAYS, sampled.posterior)
    assert np.allclose(again.customers["expected_revenue"], sampled.customers["expected_revenue"])
