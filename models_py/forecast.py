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

import dataclasses
import logging
import re
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

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
    # The MAP estimates at full precision per model (PURCHASES, SPEND): what
    # score_revenue takes back; ``parameters`` is the rounded summary shown.
    posterior: dict[str, dict[str, float]] = field(default_factory=dict)


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

    The fits are pymc-marketing's models fitted by MAP as ``find_MAP`` does it
    (L-BFGS-B from the model's initial point, no Jacobian), but with the model's log
    density and gradient compiled ONCE per process and model structure, the data fed
    as inputs (:func:`_fit_map`): PyTensor's graph rewriting, not the optimisation,
    was 90 % of each fit, and the rolling-origin evaluation fits at every origin.
    """
    if horizon_days <= 0:
        raise ValueError(f"horizon_days must be positive, got {horizon_days}")
    frame = validate_histories(histories)
    repeaters = frame[frame["frequency"] > 0]
    if len(repeaters) < 10:
        raise ValueError(
            f"only {len(repeaters)} repeat buyers: too few to fit the Gamma-Gamma spend model"
        )
    if len(frame) > FIT_SAMPLE_CUSTOMERS:
        # The models have four and three parameters of the whole population: a seeded
        # random sample of FIT_SAMPLE_CUSTOMERS customers estimates them as well as all
        # of them (the real data's 4,300 and its 10x are fitted whole), and every
        # customer is then scored with them.
        started = time.perf_counter()
        sample = frame.sample(n=FIT_SAMPLE_CUSTOMERS, random_state=seed).sort_index()
        fitted = predict_revenue(sample, horizon_days, seed)
        scored = score_revenue(frame, horizon_days, fitted.posterior)
        return dataclasses.replace(scored, seconds=time.perf_counter() - started)
    started = time.perf_counter()
    with _quiet():
        purchases_model, spend_model = _models(frame)
        _fit_map(purchases_model, seed)
        _fit_map(spend_model, seed)
        return _forecast(frame, purchases_model, spend_model, horizon_days, started)


# Customers the BG/NBD and Gamma-Gamma parameters are fitted on at most (a seeded random
# sample above it; every customer is scored).
FIT_SAMPLE_CUSTOMERS = 100_000


def score_revenue(
    histories: pd.DataFrame, horizon_days: int, posterior: dict[str, dict[str, float]]
) -> CustomerForecast:
    """Predict ``horizon_days`` ahead with saved MAP estimates, without fitting.

    ``posterior``: :attr:`CustomerForecast.posterior` of an earlier fit (full precision:
    ``{"bg_nbd": {...}, "gamma_gamma": {...}}``). The daily run scores today's
    histories with the parameters of the last monthly refit; the predictions are
    pymc-marketing's own formulas over those parameters, as after a fit.
    """
    if horizon_days <= 0:
        raise ValueError(f"horizon_days must be positive, got {horizon_days}")
    missing = [m for m in (PURCHASES, SPEND) if not posterior.get(m)]
    if missing:
        raise ValueError(f"saved forecast parameters lack the model(s): {', '.join(missing)}")
    frame = validate_histories(histories)
    started = time.perf_counter()
    with _quiet():
        purchases_model, spend_model = _models(frame)
        for wrapper, name in ((purchases_model, PURCHASES), (spend_model, SPEND)):
            wrapper.build_model()
            wrapper.idata = _posterior_idata(posterior[name])
        return _forecast(frame, purchases_model, spend_model, horizon_days, started)


# The models' names in CustomerForecast.posterior (and ml.forecast_parameters).
PURCHASES = "bg_nbd"
SPEND = "gamma_gamma"


def _models(frame: pd.DataFrame) -> tuple[Any, Any]:
    """pymc-marketing's BG/NBD on every customer and Gamma-Gamma on the repeat buyers."""
    from pymc_marketing import clv

    rfm = frame.rename(columns={"t": "T"})[["customer_id", "frequency", "recency", "T"]]
    repeaters = frame[frame["frequency"] > 0]
    return (
        clv.BetaGeoModel(data=rfm),
        clv.GammaGammaModel(data=repeaters[["customer_id", "frequency", "monetary_value"]]),
    )


def _forecast(
    frame: pd.DataFrame, purchases_model: Any, spend_model: Any, horizon_days: int, started: float
) -> CustomerForecast:
    """The fitted (or loaded) models' predictions for every customer of ``frame``."""
    rfm = frame.rename(columns={"t": "T"})[["customer_id", "frequency", "recency", "T"]]
    expected_purchases = _point(purchases_model.expected_purchases(data=rfm, future_t=horizon_days))
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
    posterior = {
        name: {
            str(k): float(np.asarray(v.values).ravel()[0])
            for k, v in wrapper.fit_result.data_vars.items()
        }
        for name, wrapper in ((PURCHASES, purchases_model), (SPEND, spend_model))
    }
    return CustomerForecast(
        customers=customers[list(FORECAST_COLUMNS)],
        horizon_days=int(horizon_days),
        parameters=parameters,
        seconds=round(time.perf_counter() - started, 2),
        posterior=posterior,
    )


def _posterior_idata(values: dict[str, float]) -> Any:
    """A MAP point as pymc-marketing keeps it: a posterior of one chain and one draw."""
    import arviz as az

    return az.from_dict(posterior={k: np.full((1, 1), float(v)) for k, v in values.items()})


# --- MAP with the log density compiled once -------------------------------------------


@dataclass
class _CompiledMap:
    """One model structure compiled once: the log density and its gradient over the
    value variables (find_MAP's order), the data as shared variables set before each
    fit, the start point, and the function from the optimum to the reported values."""

    data: list[Any]
    x0: np.ndarray
    logp_dlogp: Any
    point: Any
    point_names: list[str]


# Keyed by the model's structure (its graph with the data left out): one entry per model
# class and configuration in a process, so each is compiled once, not once per origin.
_COMPILED: dict[tuple[Any, ...], _CompiledMap | None] = {}

MAXEVAL = 5000  # find_MAP's default


def _structure(model: Any, customers: int) -> tuple[Any, list[Any], tuple[Any, ...]]:
    """The model as a graph (pymc's ``fgraph_from_model``), its per-customer constants
    (the data) in graph order, and a key of everything else: every operation and every
    other constant (the priors' parameters), so that two models share a compiled
    function only when they differ by their data alone."""
    import pytensor.tensor as pt
    from pymc.model.fgraph import fgraph_from_model
    from pytensor.graph.traversal import ancestors, io_toposort

    graph, _ = fgraph_from_model(model)
    data, key = [], []
    for variable in ancestors(graph.outputs):
        if not isinstance(variable, pt.TensorConstant):
            continue
        value = np.asarray(variable.data)
        if value.ndim >= 1 and value.shape[0] == customers:
            data.append(variable)
            key.append(("data", value.ndim, str(value.dtype), value.shape[1:]))
        else:
            key.append(("constant", str(value.dtype), value.shape, value.tobytes()))
    # An operation as text, without the addresses of objects it holds (transforms).
    ops = tuple(re.sub(r" at 0x[0-9a-f]+", "", str(n.op)) for n in io_toposort([], graph.outputs))
    names = tuple(v.name for v in model.value_vars)
    return graph, data, (type(model).__name__, names, ops, tuple(key))


def _compile(model: Any, graph: Any, data: list[Any], customers: int) -> _CompiledMap | None:
    """Rebuild ``model`` with its data as shared variables (what ``pm.Data`` makes) and
    compile its log density and gradient once; None when the model is outside what this
    supports (then pymc's own find_MAP fits it)."""
    import pymc as pm
    import pytensor
    import pytensor.tensor as pt
    from pymc.model.fgraph import model_from_fgraph
    from pytensor.graph.fg import FunctionGraph
    from pytensor.graph.traversal import ancestors

    if list(model.continuous_value_vars) != list(model.value_vars):
        return None
    if any(v.ndim for v in model.unobserved_value_vars):
        return None
    shared = [
        pytensor.shared(np.asarray(c.data), shape=(None,) * c.ndim, name=f"forecast_data_{i}")
        for i, c in enumerate(data)
    ]
    outputs = pytensor.clone_replace(
        graph.outputs, replace=dict(zip(data, shared, strict=True)), rebuild_strict=False
    )
    for old, new in zip(graph.outputs, outputs, strict=True):
        new.name = old.name
    rebuilt = FunctionGraph(outputs=outputs, clone=False)
    rebuilt._coords = getattr(graph, "_coords", {})
    rebuilt._dim_lengths = getattr(graph, "_dim_lengths", {})
    twin = model_from_fgraph(rebuilt, mutate_fgraph=True)
    named = {v.name: v for v in twin.unobserved_value_vars}
    value_vars = [named[v.name] for v in model.value_vars]  # find_MAP's order
    reported = [
        named[v.name] for v in model.unobserved_value_vars if v not in set(model.value_vars)
    ]
    logp = twin.logp(jacobian=False)
    dlogp = twin.dlogp(vars=[twin.values_to_rvs[v] for v in value_vars], jacobian=False)
    for variable in ancestors([logp, dlogp]):
        value = getattr(variable, "data", None)
        if isinstance(variable, pt.TensorConstant) and np.shape(value)[:1] == (customers,):
            return None  # a per-customer constant left in the density: not the data's
    with twin:
        start = twin.initial_point()
        logp_dlogp = pm.pytensorf.compile(value_vars, [logp, dlogp])
        point = pm.pytensorf.compile(value_vars, reported)
    return _CompiledMap(
        data=shared,
        x0=np.array([float(start[v.name]) for v in value_vars]),
        logp_dlogp=logp_dlogp,
        point=point,
        point_names=[v.name for v in reported],
    )


def _fit_map(wrapper: Any, seed: int) -> None:
    """Fit a pymc-marketing model by MAP as ``find_MAP`` does, reusing the compiled log
    density of an earlier model of the same structure (only the data differ); a
    structure this does not support is fitted by ``wrapper.fit(method="map")``."""
    from scipy.optimize import minimize
    from threadpoolctl import threadpool_limits

    wrapper.build_model()
    customers = len(wrapper.data)
    graph, data, key = _structure(wrapper.model, customers)
    if key not in _COMPILED:
        _COMPILED[key] = _compile(wrapper.model, graph, data, customers)
    compiled = _COMPILED[key]
    if compiled is None:
        wrapper.fit(method="map", progressbar=False, seed=seed)
        return
    for variable, constant in zip(compiled.data, data, strict=True):
        variable.set_value(np.asarray(constant.data))
    state: dict[str, Any] = {"evaluations": 0, "previous": None}

    def cost(x: np.ndarray) -> tuple[float, np.ndarray]:
        # find_MAP's CostFuncWrapper: minimise -logp; after MAXEVAL evaluations stop at
        # the last point whose gradient was finite.
        logp, dlogp = compiled.logp_dlogp(*x)
        if np.all(np.isfinite(dlogp)):
            state["previous"] = x
        if state["evaluations"] > MAXEVAL:
            raise StopIteration
        state["evaluations"] += 1
        return -float(logp), -np.asarray(dlogp, dtype=np.float64)

    start_logp, _ = compiled.logp_dlogp(*compiled.x0)
    if not np.isfinite(start_logp):
        raise ValueError(f"{type(wrapper).__name__}: the log density is not finite at the start")
    try:
        # One BLAS thread: L-BFGS-B's BLAS calls on a few parameters are tiny, and
        # OpenBLAS's threads made them 10 times slower on a busy 2-core machine.
        with threadpool_limits(limits=1, user_api="blas"):
            best = minimize(cost, compiled.x0.copy(), method="L-BFGS-B", jac=True)["x"]
    except StopIteration:
        best = state["previous"]
    reported = compiled.point(*best)
    wrapper.idata = _posterior_idata(
        {n: float(v) for n, v in zip(compiled.point_names, reported, strict=True)}
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
