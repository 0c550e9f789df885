"""Sentences and rows for the Evidence page (and the Overview's forecast figures),
built from the marts' rows.

The nine questions are answered once, in dbt (``insiders.answers``), and the Overview
shows those rows as they are. What is left here words the Evidence page's detail: which
definition the Insiders use and why (``insiders.definition_choice``), the evaluation at
every origin (``insiders.definition_evaluation``), the forecast
(``insiders.revenue_forecast``) and its record. This module computes no figure of its
own: it only picks rows out of the marts and words them.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from dashboard import ui

BENCHMARK = "top_past_revenue"
RANDOM = "random"


def _flag(series: pd.Series) -> pd.Series:
    """A boolean column with nulls as False."""
    return series.fillna(False).astype(bool)


def chosen_definition(choice: pd.DataFrame) -> pd.Series | None:
    """The ``definition_choice`` row the Insiders use, or None."""
    rows = choice[_flag(choice["is_chosen"])]
    return None if rows.empty else rows.iloc[0]


def choice_reason(choice: pd.DataFrame, chosen: pd.Series) -> str:
    """Why ``chosen`` is the definition, in the words of its ``chosen_by``."""
    by = chosen.get("chosen_by")
    origins = ui.fmt_int(chosen["origins"])
    candidates = len(choice)
    if by == "forced":
        text = (
            "**Forced** by the run's configuration (dbt var `insiders_definition`), not "
            f"chosen by the evidence: its evidence rank is {ui.fmt_int(chosen['evidence_rank'])} "
            f"of {candidates}"
        )
        best = choice[choice["evidence_rank"] == 1]
        if not best.empty and best.iloc[0]["definition"] != chosen["definition"]:
            text += f"; the evidence ranks `{best.iloc[0]['definition']}` first"
        return text + "."
    if by == "best_evidence":
        qualifying = int(_flag(choice["qualifies"]).sum())
        text = (
            f"Chosen by the evidence: at every one of the {origins} monthly origins its "
            "members took at least as much of the next months' revenue as the same number "
            "of top customers by past net revenue"
        )
        if qualifying <= 1:
            text += (
                f", the only one of the {candidates} candidate definitions that did so "
                f"(mean ratio {ui.fmt_number(chosen['mean_ratio'], 3)})."
            )
        else:
            text += (
                f", as {qualifying} of the {candidates} candidate definitions did, and its "
                f"mean ratio to them ({ui.fmt_number(chosen['mean_ratio'], 3)}) is the best "
                "of those."
            )
        if chosen["definition"] == BENCHMARK:
            text += (
                " It is that benchmark itself: no other candidate matched it at every "
                "origin with a better mean."
            )
        return text
    if by == "best_mean_none_qualified":
        return (
            "No candidate took at least what the top customers by past net revenue took "
            f"at every one of the {origins} origins; it has the best mean ratio to them "
            f"({ui.fmt_number(chosen['mean_ratio'], 3)}, lowest "
            f"{ui.fmt_number(chosen['min_ratio'], 3)}, below them at "
            f"{ui.fmt_int(chosen['origins_below_top_past_revenue'])} origins)."
        )
    if by == "no_evaluation_origin":
        return (
            "No origin could be evaluated yet (the data is too short for a full horizon "
            "after one): the clustering's Insiders cluster, by default and without "
            "out-of-sample evidence."
        )
    return f"Chosen ({'unknown reason' if ui.is_missing(by) else by})."


def choice_sentence(choice: pd.DataFrame) -> str:
    """The chosen definition, what it means and why, as Markdown."""
    chosen = chosen_definition(choice)
    if chosen is None:
        return "No definition is chosen in this snapshot."
    return (
        f"The Insiders are **`{chosen['definition']}`**: {chosen['description']}. "
        + choice_reason(choice, chosen)
    )


def insiders_forecast(forecast: pd.DataFrame) -> pd.Series | None:
    """The Insiders' row of ``revenue_forecast``, or None before any forecast."""
    rows = forecast[forecast["customer_group"] == "insiders"]
    return None if rows.empty else rows.iloc[0]


def value(row: pd.Series | None, column: str) -> float | None:
    """A number of a row, or None (no row, no column, or a null)."""
    if row is None:
        return None
    found = row.get(column)
    return None if ui.is_missing(found) else float(found)


def interval_words(row: pd.Series) -> str:
    """How the forecast's interval was made, from ``interval_method``."""
    method = row.get("interval_method")
    errors = row.get("errors_behind_interval")
    if method == "rolling_max_error":
        if ui.is_missing(errors) or int(errors) == 0:
            return "a prior width: no rolling-origin error to size it yet"
        return (
            "the largest relative error of the same forecast at the "
            f"{ui.fmt_int(errors)} rolling origins, widened"
        )
    return "" if ui.is_missing(method) else str(method).replace("_", " ")


def forecast_sentence(row: pd.Series) -> str:
    """The forecast's period, figure, interval, and the naive forecast beside it."""
    months = ui.months_between(row["period_start"], row["period_end"])
    period = f"{ui.fmt_date(row['period_start'])} to {ui.fmt_date(row['period_end'])}"
    text = f"Expected net revenue of the {ui.fmt_int(row['customers'])} Insiders from {period}"
    if months:
        text += f" ({months} months)"
    text += f": {ui.fmt_money(row['expected_revenue'])}"
    low, high = row.get("lower_bound"), row.get("upper_bound")
    if ui.is_missing(low) or ui.is_missing(high):
        text += "; no interval in this snapshot."
    else:
        text += f", interval {ui.fmt_money(low)} to {ui.fmt_money(high)}"
        words = interval_words(row)
        text += f" ({words})." if words else "."
    naive = row.get("naive_revenue")
    if not ui.is_missing(naive):
        before = f"the {months} months" if months else "the horizon"
        text += (
            f" The naive forecast, what they spent in {before} before, is {ui.fmt_money(naive)}."
        )
    return text


@dataclass(frozen=True)
class ForecastRecord:
    """The forecast's record over the rolling origins (``forecast_evaluation``)."""

    origins: int
    forecast_error: float | None
    naive_error: float | None
    model_error: float | None
    covered: int


def forecast_record(forecast: pd.Series | None) -> ForecastRecord:
    """The forecast's record over the rolling origins, as ``revenue_forecast`` carries it
    on the Insiders' row (dbt summarises ``forecast_evaluation``): median absolute
    relative errors of the forecast, the naive forecast and the BG/NBD + Gamma-Gamma
    sum, and how often the interval covered."""
    origins = value(forecast, "evaluation_origins")
    covered = value(forecast, "origins_covered")
    return ForecastRecord(
        origins=0 if origins is None else int(origins),
        forecast_error=value(forecast, "median_abs_relative_error"),
        naive_error=value(forecast, "naive_median_abs_relative_error"),
        model_error=value(forecast, "model_median_abs_relative_error"),
        covered=0 if covered is None else int(covered),
    )


def record_sentence(record: ForecastRecord) -> str:
    """The forecast's record in one sentence."""
    if record.origins == 0:
        return "No rolling-origin evaluation of the forecast yet."
    return (
        f"Made the same way at the {record.origins} rolling origins (with only the data "
        "before each), the forecast missed what the Insiders then spent by "
        f"{ui.fmt_share(record.forecast_error)} (median absolute relative error), against "
        f"{ui.fmt_share(record.naive_error)} for the naive forecast and "
        f"{ui.fmt_share(record.model_error)} for the BG/NBD + Gamma-Gamma sum; its interval "
        f"covered the actual {record.covered} times of {record.origins}."
    )


def latest_origin(evaluation: pd.DataFrame, definition: str) -> tuple[pd.Series, pd.Series] | None:
    """(the definition's row, the random groups' row) at the latest origin, or None."""
    if evaluation.empty:
        return None
    latest = evaluation[evaluation["origin_date"] == evaluation["origin_date"].max()]
    mine = latest[latest["definition"] == definition]
    random = latest[latest["definition"] == RANDOM]
    if mine.empty or random.empty:
        return None
    return mine.iloc[0], random.iloc[0]


def evidence_sentence(choice: pd.DataFrame, evaluation: pd.DataFrame) -> str:
    """Question 8 in one paragraph: the chosen definition's out-of-sample record."""
    chosen = chosen_definition(choice)
    if chosen is None:
        return "No definition is chosen in this snapshot."
    if ui.is_missing(chosen["mean_ratio"]) or not chosen["origins"]:
        return (
            "No rolling-origin evaluation yet: the data is too short for a full horizon "
            "after an origin."
        )
    text = (
        f"At {ui.fmt_int(chosen['origins'])} monthly origins, the members picked by "
        f"`{chosen['definition']}` with only the data before each one took on "
        f"average {ui.fmt_share(chosen['mean_share'])} of the next months' revenue, "
        f"{ui.fmt_number(chosen['mean_ratio'], 3)} times what the same number of top "
        f"customers by past net revenue took (lowest {ui.fmt_number(chosen['min_ratio'], 3)})"
    )
    latest = latest_origin(evaluation, str(chosen["definition"]))
    if latest is not None:
        mine, random = latest
        text += (
            f"; at the latest origin ({ui.fmt_date(mine['origin_date'])}) they took "
            f"{ui.fmt_share(mine['share_of_horizon_revenue'])}, random groups of the same "
            f"size {ui.fmt_share(random['share_of_horizon_revenue'])}"
        )
        if not ui.is_missing(random["share_low"]) and not ui.is_missing(random["share_high"]):
            text += (
                f" (90% of draws {ui.fmt_share(random['share_low'])} to "
                f"{ui.fmt_share(random['share_high'])})"
            )
    return text + "."
