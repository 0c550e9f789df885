"""Evidence: which definition of the Insiders was chosen and the record behind it.

A page script: ``st.navigation`` executes it as ``__main__`` on every rerun. Everything
shown is a mart of the snapshot (``insiders.definition_choice``,
``insiders.definition_evaluation``, ``insiders.forecast_evaluation``,
``insiders.revenue_forecast``, ``insiders.evidence``) laid out for reading: the page
reshapes and formats rows, it computes no answer of its own.
"""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from dashboard import answers, ui

DEFINITION_COLUMNS = {
    "is_chosen": st.column_config.CheckboxColumn("Chosen"),
    "definition": "Definition",
    "mean_ratio": st.column_config.NumberColumn("Mean ratio to top spenders", format="%.3f"),
    "min_ratio": st.column_config.NumberColumn("Min ratio", format="%.3f"),
    "max_ratio": st.column_config.NumberColumn("Max ratio", format="%.3f"),
    "origins_below_top_past_revenue": st.column_config.NumberColumn(
        "Origins below top spenders", format="%d"
    ),
    "origins_evaluated": st.column_config.NumberColumn("Origins evaluated", format="%d"),
    "qualifies": st.column_config.CheckboxColumn("Qualifies"),
    "mean_share": st.column_config.NumberColumn("Mean share of revenue", format="percent"),
    "evidence_rank": st.column_config.NumberColumn("Evidence rank", format="%d"),
    "chosen_by": "Chosen by",
    "description": st.column_config.TextColumn("Description", width="large"),
}

FORECAST_COLUMNS = {
    "origin_date": st.column_config.DateColumn("Origin"),
    "horizon_end": st.column_config.DateColumn("Horizon end"),
    "customers": st.column_config.NumberColumn("Insiders", format="%d"),
    "forecast_revenue": st.column_config.NumberColumn("Forecast (£)", format="%.0f"),
    "lower_bound": st.column_config.NumberColumn("Interval from (£)", format="%.0f"),
    "upper_bound": st.column_config.NumberColumn("to (£)", format="%.0f"),
    "naive_revenue": st.column_config.NumberColumn("Naive (£)", format="%.0f"),
    "model_revenue": st.column_config.NumberColumn("BG/NBD + Gamma-Gamma (£)", format="%.0f"),
    "actual_revenue": st.column_config.NumberColumn("Actual (£)", format="%.0f"),
    "relative_error": st.column_config.NumberColumn("Error", format="percent"),
    "naive_relative_error": st.column_config.NumberColumn("Naive error", format="percent"),
    "model_relative_error": st.column_config.NumberColumn(
        "BG/NBD + Gamma-Gamma error", format="percent"
    ),
    "interval_covers_actual": st.column_config.CheckboxColumn("Covered"),
    "interval_width_ratio": st.column_config.NumberColumn("Interval width", format="percent"),
}

GROUP_COLUMNS = {
    "customer_group": "Group",
    "definition": "Definition",
    "customers": st.column_config.NumberColumn("Customers", format="%d"),
    "period_start": st.column_config.DateColumn("From"),
    "period_end": st.column_config.DateColumn("To"),
    "expected_revenue": st.column_config.NumberColumn("Forecast (£)", format="%.0f"),
    "lower_bound": st.column_config.NumberColumn("Interval from (£)", format="%.0f"),
    "upper_bound": st.column_config.NumberColumn("to (£)", format="%.0f"),
    "naive_revenue": st.column_config.NumberColumn("Naive (£)", format="%.0f"),
    "trend_factor": st.column_config.NumberColumn("Trend factor", format="%.3f"),
    "seasonal_factor": st.column_config.NumberColumn("Seasonal factor", format="%.3f"),
    "season_observed": st.column_config.CheckboxColumn("Season observed"),
    "model_revenue": st.column_config.NumberColumn("BG/NBD + Gamma-Gamma (£)", format="%.0f"),
}

RANDOM_COLUMNS = {
    "random_share": "Random share",
    "random_share_low": "Random 90% from",
    "random_share_high": "Random 90% to",
}


def definition_table(choice: pd.DataFrame) -> pd.DataFrame:
    """One row per definition, in evidence order, with the columns the page shows."""
    shown = [c for c in DEFINITION_COLUMNS if c in choice.columns]
    return choice.sort_values(["evidence_rank", "definition"])[shown].reset_index(drop=True)


def column_label(definition: str, chosen: str | None) -> str:
    """A definition's column header in the per-origin table (the chosen one marked)."""
    return f"{definition} (chosen)" if definition == chosen else definition


def origin_table(evaluation: pd.DataFrame, chosen: str | None) -> pd.DataFrame:
    """Origin x definition: each definition's ratio to the top spenders, then the random
    groups' share of the horizon's revenue and its 90% range (a reshaping of
    ``definition_evaluation``: one row per origin, the values as they are)."""
    baseline = answers.RANDOM
    candidates = evaluation[evaluation["definition"] != baseline]
    order = (
        candidates.drop_duplicates("definition")
        .sort_values(["sort_order", "definition"])["definition"]
        .tolist()
    )
    ratios = candidates.pivot(
        index="origin_date", columns="definition", values="ratio_to_top_past_revenue"
    ).reindex(columns=order)
    ratios.columns = [column_label(d, chosen) for d in order]
    firsts = (
        evaluation.drop_duplicates("origin_date")
        .set_index("origin_date")[["horizon_end", "members"]]
        .reindex(ratios.index)
    )
    random = (
        evaluation[evaluation["definition"] == baseline]
        .set_index("origin_date")[["share_of_horizon_revenue", "share_low", "share_high"]]
        .rename(
            columns={
                "share_of_horizon_revenue": "random_share",
                "share_low": "random_share_low",
                "share_high": "random_share_high",
            }
        )
        .reindex(ratios.index)
    )
    table = pd.concat([firsts, ratios, random], axis=1).reset_index()
    return table.sort_values("origin_date").reset_index(drop=True)


def share_table(evaluation: pd.DataFrame, chosen: str | None) -> pd.DataFrame:
    """The chosen definition's and the top spenders' share per origin, and the random
    groups' share with its range, long form for the chart."""
    keep = {d for d in (chosen, answers.BENCHMARK, answers.RANDOM) if d}
    rows = evaluation[evaluation["definition"].isin(keep)].copy()
    rows["group"] = rows["definition"].map(
        lambda d: column_label(d, chosen) if d != answers.RANDOM else "random (mean of draws)"
    )
    return rows[["origin_date", "group", "share_of_horizon_revenue", "share_low", "share_high"]]


def ratio_chart(evaluation: pd.DataFrame, chosen: str | None) -> alt.LayerChart:
    """Each definition's ratio to the top spenders at each origin; 1 is the benchmark."""
    rows = evaluation[evaluation["definition"] != answers.RANDOM].copy()
    rows["definition"] = rows["definition"].map(lambda d: column_label(d, chosen))
    lines = (
        alt.Chart(rows, title="Ratio to the same number of top customers by past revenue")
        .mark_line(point=True)
        .encode(
            x=alt.X("origin_date:T", title="Origin"),
            y=alt.Y("ratio_to_top_past_revenue:Q", title="Ratio").scale(zero=False),
            color=alt.Color("definition:N", title="Definition").legend(labelLimit=260),
            tooltip=[
                alt.Tooltip("origin_date:T", title="Origin"),
                alt.Tooltip("definition:N", title="Definition"),
                alt.Tooltip("ratio_to_top_past_revenue:Q", title="Ratio", format=".3f"),
            ],
        )
    )
    benchmark = (
        alt.Chart(pd.DataFrame({"y": [1.0]}))
        .mark_rule(strokeDash=[4, 4], color="black")
        .encode(y="y:Q")
    )
    return (lines + benchmark).properties(height=320)


def share_chart(evaluation: pd.DataFrame, chosen: str | None) -> alt.LayerChart:
    """Share of the horizon's revenue: the chosen members, the top spenders, and random
    groups of the same size with the central 90% of their draws."""
    rows = share_table(evaluation, chosen)
    band = (
        alt.Chart(rows.dropna(subset=["share_low", "share_high"]))
        .mark_area(opacity=0.25, color="#7f7f7f")
        .encode(x="origin_date:T", y="share_low:Q", y2="share_high:Q")
    )
    lines = (
        alt.Chart(rows, title="Share of the next months' revenue")
        .mark_line(point=True)
        .encode(
            x=alt.X("origin_date:T", title="Origin"),
            y=alt.Y("share_of_horizon_revenue:Q", title="Share").axis(format="%"),
            color=alt.Color("group:N", title=None),
            tooltip=[
                alt.Tooltip("origin_date:T", title="Origin"),
                alt.Tooltip("group:N", title="Group"),
                alt.Tooltip("share_of_horizon_revenue:Q", title="Share", format=".1%"),
            ],
        )
    )
    return (band + lines).properties(height=320)


def definitions_section(snap: ui.OpenSnapshot) -> str | None:
    """The definition table and the sentence above it; the chosen definition's name."""
    st.header("Candidate definitions")
    choice = snap.table("insiders.definition_choice")
    if choice.empty:
        ui.empty("No candidate definitions yet.")
        return None
    chosen = answers.chosen_definition(choice)
    st.markdown(answers.choice_sentence(choice))
    st.caption(
        "Each definition picks as many members as the clustering's Insiders cluster held, "
        "with only the data before each monthly origin; the ratio compares their net "
        "revenue over the next months with that of the same number of top customers by "
        "past net revenue. A definition qualifies when it is never below them."
    )
    st.dataframe(
        definition_table(choice),
        hide_index=True,
        column_config=DEFINITION_COLUMNS,
        key="evidence_definitions",
    )
    return None if chosen is None else str(chosen["definition"])


def origins_section(snap: ui.OpenSnapshot, chosen: str | None) -> None:
    """Every origin: the definitions' ratios and the random groups' share."""
    st.header("Every origin")
    evaluation = snap.table("insiders.definition_evaluation")
    if evaluation.empty:
        ui.empty("No rolling-origin evaluation yet: the data is too short for an origin.")
        return
    choice = snap.table("insiders.definition_choice")
    st.markdown(answers.evidence_sentence(choice, evaluation))
    table = origin_table(evaluation, chosen)
    config: dict[str, object] = {
        "origin_date": st.column_config.DateColumn("Origin"),
        "horizon_end": st.column_config.DateColumn("Horizon end"),
        "members": st.column_config.NumberColumn("Members", format="%d"),
    }
    for column in table.columns:
        if column in RANDOM_COLUMNS:
            config[column] = st.column_config.NumberColumn(RANDOM_COLUMNS[column], format="percent")
        elif column not in config:
            config[column] = st.column_config.NumberColumn(column, format="%.3f")
    st.caption(
        "Ratio of each definition's revenue over the horizon to that of the top customers "
        "by past net revenue (1 = as much); the random groups' share of all the horizon's "
        "revenue, with the central 90% of the draws."
    )
    st.dataframe(table, hide_index=True, column_config=config, key="evidence_origins")
    left, right = st.columns(2)
    left.altair_chart(ratio_chart(evaluation, chosen), width="stretch")
    right.altair_chart(share_chart(evaluation, chosen), width="stretch")


def forecast_section(snap: ui.OpenSnapshot) -> None:
    """The forecast now, and how the same forecast did at every origin."""
    st.header("The forecast at every origin")
    forecast = snap.table("insiders.revenue_forecast")
    evaluation = snap.table("insiders.forecast_evaluation")
    insiders = answers.insiders_forecast(forecast)
    if insiders is not None:
        st.markdown(answers.forecast_sentence(insiders))
        shown = [c for c in GROUP_COLUMNS if c in forecast.columns]
        st.dataframe(
            forecast[shown], hide_index=True, column_config=GROUP_COLUMNS, key="evidence_groups"
        )
    if evaluation.empty:
        ui.empty("No rolling-origin evaluation of the forecast yet.")
        return
    st.markdown(answers.record_sentence(answers.forecast_record(insiders)))
    shown = [c for c in FORECAST_COLUMNS if c in evaluation.columns]
    st.dataframe(
        evaluation.sort_values("origin_date")[shown],
        hide_index=True,
        column_config=FORECAST_COLUMNS,
        key="evidence_forecasts",
    )


def versus_section(snap: ui.OpenSnapshot) -> None:
    """The Insiders against the rest (``insiders.evidence``)."""
    st.header("The Insiders against the rest")
    evidence = snap.table("insiders.evidence")
    versus = evidence[evidence["evidence_kind"] == "insiders_vs_rest"]
    if versus.empty:
        ui.empty("No comparison of the Insiders with the rest yet.")
        return
    st.caption(
        "The Insiders against every other customer, on the data before the as-of date: "
        "difference of means with a 95% bootstrap interval and a Mann-Whitney test."
    )
    st.dataframe(
        versus[
            ["metric", "insiders_mean", "others_mean", "difference", "ci_low", "ci_high", "p_value"]
        ],
        hide_index=True,
        column_config={
            "metric": "Metric",
            "insiders_mean": st.column_config.NumberColumn("Insiders (mean)", format="%.1f"),
            "others_mean": st.column_config.NumberColumn("Others (mean)", format="%.1f"),
            "difference": st.column_config.NumberColumn("Difference", format="%.1f"),
            "ci_low": st.column_config.NumberColumn("95% interval from", format="%.1f"),
            "ci_high": st.column_config.NumberColumn("to", format="%.1f"),
            "p_value": st.column_config.NumberColumn("p (Mann-Whitney)", format="%.2g"),
        },
        key="evidence_versus",
    )


def render() -> None:
    st.title("Evidence")
    snap = ui.open_snapshot()
    st.caption(
        f"As of {ui.fmt_date(snap.info.as_of)}: how the Insiders' definition was chosen, "
        "scored out of sample at monthly origins, and how well their revenue forecast did."
    )
    chosen = definitions_section(snap)
    origins_section(snap, chosen)
    forecast_section(snap)
    versus_section(snap)


if __name__ == "__main__":
    render()
