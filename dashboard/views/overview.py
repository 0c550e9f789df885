"""Overview: the answers to the marketing team's nine questions at a glance.

A page script: ``st.navigation`` executes it as ``__main__`` on every rerun.
"""

from __future__ import annotations

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


def nine_answers(snap: ui.OpenSnapshot, kpi: pd.Series | None, forecast: pd.Series | None) -> str:
    """The nine questions with a short answer each, as a Markdown list."""
    members = snap.table("insiders.members")
    profile = snap.table("insiders.cluster_profile")
    rules = snap.table("insiders.eligibility_rules")
    history = snap.table("insiders.membership_history")
    choice = snap.table("insiders.definition_choice")
    evaluation = snap.table("insiders.definition_evaluation")
    actions = snap.table("insiders.cluster_actions")
    chosen = answers.chosen_definition(choice)

    items: list[tuple[str, str]] = []
    if members.empty:
        who = "No members yet."
    else:
        who = f"{ui.fmt_int(len(members))} customers"
        if chosen is not None:
            who += f": {chosen['description']} (definition `{chosen['definition']}`)"
        who += ". The list, searchable and downloadable, is on the Insiders page."
    items.append(("Who is eligible for the Insiders?", who))
    items.append(
        (
            "How many customers will be part of the group?",
            f"{ui.fmt_int(kpi['insiders'])} of {ui.fmt_int(kpi['customers'])} customers "
            f"({ui.fmt_share(kpi['share_of_customers'])})."
            if kpi is not None
            else "No KPIs yet.",
        )
    )
    insider_profile = profile[profile["is_insider"].fillna(False).astype(bool)]
    if insider_profile.empty:
        characteristics = "No cluster profile yet."
    else:
        p = insider_profile.iloc[0]
        characteristics = (
            f"The {p['cluster_name']} cluster"
            + (
                f", which holds {ui.fmt_int(p['insiders_members'])} of the Insiders"
                if not ui.is_missing(p.get("insiders_members"))
                else ""
            )
            + f": mean monetary {ui.fmt_money(p['mean_monetary'])} "
            f"({ui.fmt_number(p['monetary_vs_base'])}x the base), "
            f"{ui.fmt_number(p['mean_frequency'])} purchases "
            f"({ui.fmt_number(p['frequency_vs_base'])}x), last purchase "
            f"{ui.fmt_number(p['mean_recency_days'], 0)} days ago on average "
            f"({ui.fmt_number(p['recency_vs_base'])}x). See the Clusters page."
        )
    items.append(("What are the main characteristics of these customers?", characteristics))
    items.append(
        (
            "What share of revenue comes from the Insiders?",
            f"{ui.fmt_share(kpi['share_of_all_revenue'])} of all revenue (guests included), "
            f"{ui.fmt_share(kpi['share_of_customer_revenue'])} of customer revenue."
            if kpi is not None
            else "No KPIs yet.",
        )
    )
    items.append(
        (
            "What revenue can we expect from them in the next months?",
            answers.forecast_sentence(forecast) if forecast is not None else "No forecast yet.",
        )
    )
    if rules.empty:
        eligibility = "No rules yet."
    else:
        first = rules.iloc[0]
        eligibility = (
            f"Mostly: {first['rule']} (precision {ui.fmt_share(first['precision'])}, "
            f"recall {ui.fmt_share(first['recall'])}). All rules are on the Movement page."
        )
    items.append(("What are the conditions for a person to be eligible?", eligibility))
    ended = int(history["valid_to"].notna().sum()) if not history.empty else 0
    came_back = int((history["membership_number"] > 1).sum()) if not history.empty else 0
    items.append(
        (
            "What are the conditions for a person to be removed?",
            "Membership is re-evaluated monthly; a member no longer among the chosen "
            "definition's members keeps a grace period and leaves at the next re-evaluation "
            f"still failed. So far {ui.fmt_int(ended)} memberships ended and "
            f"{ui.fmt_int(came_back)} came back. See the Movement page.",
        )
    )
    items.append(
        (
            "What guarantees that the Insiders are better than the rest?",
            answers.evidence_sentence(choice, evaluation) + " Every definition at every "
            "origin is on the Evidence page.",
        )
    )
    insider_actions = actions[actions["cluster_name"].isin(insider_profile["cluster_name"])]
    items.append(
        (
            "What actions can the marketing team take to increase revenue?",
            f"For the Insiders cluster: {insider_actions.iloc[0]['recommended_action']}. "
            "Every cluster's action is on the Clusters page."
            if not insider_actions.empty
            else "See each cluster's recommended action on the Clusters page.",
        )
    )
    return "\n".join(
        f"{number}. **{question}** {answer}"
        for number, (question, answer) in enumerate(items, start=1)
    )


def definition_section(snap: ui.OpenSnapshot) -> None:
    """Which definition the Insiders use, and why (``insiders.definition_choice``)."""
    st.header("Who the Insiders are, and why")
    choice = snap.table("insiders.definition_choice")
    if choice.empty:
        ui.empty("No definition chosen yet.")
        return
    st.markdown(answers.choice_sentence(choice))
    st.caption(
        f"{len(choice)} candidate definitions were scored; the table and every origin "
        "are on the Evidence page."
    )


def forecast_section(snap: ui.OpenSnapshot, forecast: pd.Series | None) -> None:
    """The Insiders' forecast with its interval, the naive forecast beside it, and the
    record of both at the rolling origins (``insiders.forecast_evaluation``)."""
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
    st.caption(answers.forecast_sentence(forecast))
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
    st.caption(answers.record_sentence(record))


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

    definition_section(snap)
    forecast_section(snap, forecast)

    st.header("The nine questions")
    st.markdown(nine_answers(snap, kpi, forecast))

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
