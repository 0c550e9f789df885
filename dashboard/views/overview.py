"""Overview: the answers to the marketing team's nine questions at a glance.

The headline figures, the nine answers exactly as dbt wrote them in ``insiders.answers``
(the report and BI tools read the same rows: no answer is composed here), a pointer to
the page with each answer's detail, the forecast's figures and the revenue per month.

A page script: ``st.navigation`` executes it as ``__main__`` on every rerun.
"""

from __future__ import annotations

import re
from typing import Any

import altair as alt
import pandas as pd
import streamlit as st

from dashboard import answers, ui


def latest_kpis(kpis: pd.DataFrame, as_of: Any) -> pd.Series | None:
    """The KPI row of the snapshot's as-of (the newest row if there is none for it)."""
    if kpis.empty:
        return None
    same = kpis[pd.to_datetime(kpis["as_of"]) == pd.Timestamp(as_of)] if as_of else kpis
    return (same if not same.empty else kpis).iloc[0]


# Where each question is answered in detail (the mart numbers the nine questions 1-9).
DETAIL_PAGES: dict[int, tuple[str, str]] = {
    1: ("views/insiders.py", "The Insiders, searchable and downloadable"),
    3: ("views/clusters.py", "Every cluster's profile"),
    5: ("views/evidence.py", "The forecast at every origin"),
    6: ("views/movement.py", "Every eligibility rule"),
    7: ("views/movement.py", "Members entered and left"),
    8: ("views/evidence.py", "Every definition at every origin"),
    9: ("views/clusters.py", "Every cluster's recommended action"),
}
ANSWERS_TABLE = "insiders.answers"
NO_ANSWERS_TABLE = f"This snapshot predates the answers table; run `{ui.RUN_COMMAND}` again."
# Characters Markdown would read as formatting (or LaTeX, or HTML) in an answer's text.
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]<>#|$~&])")
_LINE_START_MARKER = re.compile(r"^(\s*(?:\d+)?)([-+.)])", flags=re.MULTILINE)


def plain(text: str) -> str:
    """``text`` as Markdown that renders as exactly that text: the answers come from the
    mart as plain English, and a ``*``, ``_`` or ``$`` in them must not turn into
    emphasis or a formula, nor a leading ``1.`` or ``-`` into a list."""
    escaped = _MARKDOWN_SPECIAL.sub(r"\\\1", text)
    return _LINE_START_MARKER.sub(lambda m: m.group(1) + "\\" + m.group(2), escaped)


def answers_section(snap: ui.OpenSnapshot) -> None:
    """The nine questions, each with the answer ``insiders.answers`` gives, verbatim.

    The answers are composed once, by dbt, and the report, BI tools and this page all
    read the same rows; this page only lays them out and points to the page that
    shows the detail.
    """
    st.header("The nine questions")
    if not snap.has(ANSWERS_TABLE):
        st.info(NO_ANSWERS_TABLE)
        return
    rows = snap.table(ANSWERS_TABLE)
    if rows.empty:
        ui.empty(f"No answers yet: `{ui.RUN_COMMAND}` composes them.")
        return
    for row in rows.itertuples(index=False):
        number = int(row.question_number)
        st.markdown(f"**{number}. {plain(str(row.question))}**  \n{plain(str(row.answer))}")
        if number in DETAIL_PAGES:
            page, label = DETAIL_PAGES[number]
            st.page_link(page, label=label, icon=":material/arrow_forward:")
    as_of = rows["as_of"].iloc[0] if "as_of" in rows.columns else None
    if not ui.is_missing(as_of):
        st.caption(f"Answers as of {ui.fmt_date(as_of)}.")


def forecast_section(forecast: pd.Series | None) -> None:
    """The figures of the Insiders' forecast: the forecast with its interval, the naive
    forecast beside it, and the record of both at the rolling origins (summarised on the
    Insiders' row of ``insiders.revenue_forecast``). In words it is question 5 above."""
    st.header("Expected revenue")
    if forecast is None:
        ui.empty("No revenue forecast yet.")
        return
    record = answers.forecast_record(forecast)
    cells = st.columns(4)
    cells[0].metric(
        "Forecast",
        ui.fmt_money(forecast["expected_revenue"]),
        help="The Insiders' net revenue over the horizon: last horizon's revenue times "
        "a damped trend and the seasonality observed.",
    )
    cells[1].metric(
        "Interval from",
        ui.fmt_money(forecast["lower_bound"]),
        help="From the errors of the same forecast at the rolling origins.",
    )
    cells[2].metric("Interval to", ui.fmt_money(forecast["upper_bound"]))
    cells[3].metric(
        "Naive forecast",
        ui.fmt_money(forecast["naive_revenue"]),
        help="What the Insiders spent in the horizon before the as-of date.",
    )
    errors = st.columns(4)
    errors[0].metric(
        "Median error, forecast",
        ui.fmt_share(record.forecast_error),
        help="Median absolute relative error at the rolling origins.",
    )
    errors[1].metric(
        "Median error, naive",
        ui.fmt_share(record.naive_error),
        help="Median absolute relative error of the naive forecast at the same origins.",
    )
    errors[2].metric(
        "Median error, BG/NBD sum",
        ui.fmt_share(record.model_error),
        help="Median absolute relative error of the models' sum at the same origins.",
    )
    errors[3].metric(
        "Interval covered",
        f"{record.covered} of {record.origins}" if record.origins else "—",
        help="Origins where the actual lay within the interval.",
    )
    st.page_link(
        "views/evidence.py",
        label="How the forecast is made, and its record at every origin",
        icon=":material/arrow_forward:",
    )


def render() -> None:
    st.title("Overview")
    snap = ui.open_snapshot()
    info = snap.info
    kpi = latest_kpis(snap.table("insiders.kpis"), info.as_of)
    forecast = answers.insiders_forecast(snap.table("insiders.revenue_forecast"))

    first = st.columns(4)
    first[0].metric(
        "Insiders",
        ui.fmt_int(kpi["insiders"]) if kpi is not None else "—",
        help="Members of the chosen definition at the as-of date.",
    )
    first[1].metric(
        "Share of customers",
        ui.fmt_share(kpi["share_of_customers"]) if kpi is not None else "—",
        help="Insiders over all customers with a purchase before the as-of date.",
    )
    first[2].metric(
        "Share of revenue",
        ui.fmt_share(kpi["share_of_all_revenue"]) if kpi is not None else "—",
        help="The Insiders' share of all revenue, guests included"
        + (
            f"; of customer revenue: {ui.fmt_share(kpi['share_of_customer_revenue'])}."
            if kpi is not None
            else "."
        ),
    )
    first[3].metric(
        "Expected revenue (next months)",
        ui.fmt_money(forecast["expected_revenue"]) if forecast is not None else "—",
        help="The Insiders' forecast net revenue over the horizon (see below).",
    )
    second = st.columns([1, 3])
    second[0].metric("As of", ui.fmt_date(info.as_of))
    second[1].metric("Run", info.run_id, help=f"Snapshot {info.snapshot_id}")
    if kpi is None:
        ui.empty("No KPIs yet: the last run labelled no customers.")
    st.caption(
        f"Snapshot {info.snapshot_id}, published {ui.fmt_date(info.published_at)} "
        f"by run {info.run_id}."
    )

    answers_section(snap)
    forecast_section(forecast)

    st.header("Revenue per month")
    monthly = snap.table("insiders.monthly_revenue")
    if monthly.empty:
        ui.empty("No monthly revenue yet.")
    else:
        long = monthly[["month_start", "insiders_revenue", "others_revenue"]].melt(
            id_vars="month_start",
            value_vars=["insiders_revenue", "others_revenue"],
            var_name="group",
            value_name="revenue",
        )
        long["group"] = long["group"].map(
            {"insiders_revenue": "Insiders", "others_revenue": "Everyone else"}
        )
        chart = (
            alt.Chart(long)
            .mark_bar()
            .encode(
                x=alt.X("yearmonth(month_start):O", title="Month"),
                y=alt.Y("revenue:Q", title="Revenue (£)", stack=True),
                color=alt.Color("group:N", title=None),
                tooltip=[
                    alt.Tooltip("yearmonth(month_start):O", title="Month"),
                    alt.Tooltip("group:N"),
                    alt.Tooltip("revenue:Q", format=",.0f"),
                ],
            )
        )
        st.altair_chart(chart, width="stretch")


if __name__ == "__main__":
    render()
