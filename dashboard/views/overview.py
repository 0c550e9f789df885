"""Overview: the answers to the marketing team's nine questions at a glance.

A page script: ``st.navigation`` executes it as ``__main__`` on every rerun.
"""

from __future__ import annotations

from typing import Any

import altair as alt
import pandas as pd
import streamlit as st

from dashboard import ui

BACKTEST_GROUPS = {
    "insiders": "Insiders chosen at the cut-off",
    "random": "Random groups of the same size",
    "top_monetary": "Top customers by past monetary",
}


def latest_kpis(kpis: pd.DataFrame, as_of: Any) -> pd.Series | None:
    """The KPI row of the snapshot's as-of (the newest row if there is none for it)."""
    if kpis.empty:
        return None
    same = kpis[pd.to_datetime(kpis["as_of"]) == pd.Timestamp(as_of)] if as_of else kpis
    return (same if not same.empty else kpis).iloc[0]


def insiders_forecast(forecast: pd.DataFrame) -> pd.Series | None:
    """The Insiders' forecast row (period ``forecast``), or None before any forecast."""
    rows = forecast[(forecast["period"] == "forecast") & (forecast["customer_group"] == "insiders")]
    return None if rows.empty else rows.iloc[0]


def forecast_value(row: pd.Series) -> float | None:
    """The headline figure: the calibrated point when the snapshot has one (it is what
    the interval is centred on), else the models' own expected revenue."""
    calibrated = row.get("calibrated_revenue")
    if not ui.is_missing(calibrated):
        return float(calibrated)
    expected = row.get("expected_revenue")
    return None if ui.is_missing(expected) else float(expected)


def forecast_sentence(row: pd.Series) -> str:
    """The forecast's period, interval and, if calibrated, the models' own figure."""
    months = ui.months_between(row["period_start"], row["period_end"])
    period = f"{ui.fmt_date(row['period_start'])} to {ui.fmt_date(row['period_end'])}"
    text = f"Expected revenue of the {ui.fmt_int(row['customers'])} Insiders from {period}"
    if months:
        text += f" ({months} months)"
    text += f": {ui.fmt_money(forecast_value(row))}"
    low, high = row.get("lower_bound"), row.get("upper_bound")
    if ui.is_missing(low) or ui.is_missing(high):
        text += "; no interval in this snapshot."
    else:
        confidence = row.get("confidence")
        level = "" if ui.is_missing(confidence) else f"{float(confidence):.0%} "
        text += f", {level}interval {ui.fmt_money(low)} to {ui.fmt_money(high)}"
        method = row.get("interval_method")
        text += f" ({str(method).replace('_', ' ')})." if not ui.is_missing(method) else "."
    if not ui.is_missing(row.get("calibrated_revenue")):
        text += (
            f" The models' own figure is {ui.fmt_money(row['expected_revenue'])}; the "
            "calibrated one corrects it by how they erred in the backtest."
        )
    return text


def backtest_rows(evidence: pd.DataFrame) -> pd.DataFrame:
    """The time backtest: one row per group, in the order of ``BACKTEST_GROUPS``."""
    rows = evidence[evidence["evidence_kind"] == "time_backtest"].copy()
    rows = rows[rows["customer_group"].isin(BACKTEST_GROUPS)]
    rows["group"] = rows["customer_group"].map(BACKTEST_GROUPS)
    rows["order"] = rows["customer_group"].map(list(BACKTEST_GROUPS).index)
    return rows.sort_values("order").reset_index(drop=True)


def backtest_sentence(rows: pd.DataFrame) -> str:
    """The backtest in one sentence, as the report words it."""
    by_group = {row["customer_group"]: row for _, row in rows.iterrows()}
    insiders = by_group.get("insiders")
    if insiders is None:
        return "No time backtest in this snapshot."
    text = (
        f"The {ui.fmt_int(insiders['insiders'])} Insiders chosen with data before "
        f"{ui.fmt_date(insiders['cutoff_date'])} took "
        f"{ui.fmt_share(insiders['share_of_holdout_revenue'])} of all customers' revenue "
        f"from then to {ui.fmt_date(insiders['holdout_end'])}"
    )
    random = by_group.get("random")
    if random is not None:
        share = ui.fmt_share(random["share_of_holdout_revenue"])
        text += f"; random groups of the same size took {share}"
        if not ui.is_missing(random["ci_low"]) and not ui.is_missing(random["ci_high"]):
            text += (
                f" (95% of draws {ui.fmt_share(random['ci_low'])} "
                f"to {ui.fmt_share(random['ci_high'])})"
            )
    as_good = insiders.get("random_groups_at_least_as_good")
    if not ui.is_missing(as_good):
        text += f", and {ui.fmt_share(as_good)} of random groups did as well"
    top = by_group.get("top_monetary")
    if top is not None:
        text += (
            f"; the same number of top customers by past monetary took "
            f"{ui.fmt_share(top['share_of_holdout_revenue'])}"
        )
    return text + "."


def nine_answers(snap: ui.OpenSnapshot, kpi: pd.Series | None, forecast: pd.Series | None) -> str:
    """The nine questions with a short answer each, as a Markdown list."""
    members = snap.table("insiders.members")
    profile = snap.table("insiders.cluster_profile")
    rules = snap.table("insiders.eligibility_rules")
    history = snap.table("insiders.membership_history")
    evidence = snap.table("insiders.evidence")
    actions = snap.table("insiders.cluster_actions")

    answers: list[tuple[str, str]] = []
    answers.append(
        (
            "Who is eligible for the Insiders?",
            f"{ui.fmt_int(len(members))} customers: the cluster with the highest mean "
            "monetary value. The list, searchable and downloadable, is on the Insiders page."
            if not members.empty
            else "No members yet.",
        )
    )
    answers.append(
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
            f"Mean monetary {ui.fmt_money(p['mean_monetary'])} "
            f"({ui.fmt_number(p['monetary_vs_base'])}x the base), "
            f"{ui.fmt_number(p['mean_frequency'])} purchases "
            f"({ui.fmt_number(p['frequency_vs_base'])}x), last purchase "
            f"{ui.fmt_number(p['mean_recency_days'], 0)} days ago on average "
            f"({ui.fmt_number(p['recency_vs_base'])}x). See the Clusters page."
        )
    answers.append(("What are the main characteristics of these customers?", characteristics))
    answers.append(
        (
            "What share of revenue comes from the Insiders?",
            f"{ui.fmt_share(kpi['share_of_all_revenue'])} of all revenue (guests included), "
            f"{ui.fmt_share(kpi['share_of_customer_revenue'])} of customer revenue."
            if kpi is not None
            else "No KPIs yet.",
        )
    )
    answers.append(
        (
            "What revenue can we expect from them in the next months?",
            forecast_sentence(forecast) if forecast is not None else "No forecast yet.",
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
    answers.append(("What are the conditions for a person to be eligible?", eligibility))
    ended = int(history["valid_to"].notna().sum()) if not history.empty else 0
    came_back = int((history["membership_number"] > 1).sum()) if not history.empty else 0
    answers.append(
        (
            "What are the conditions for a person to be removed?",
            "Membership is re-evaluated monthly; a member outside the Insiders cluster keeps "
            "a grace period and leaves at the next re-evaluation still failed. "
            f"So far {ui.fmt_int(ended)} memberships ended and {ui.fmt_int(came_back)} "
            "came back. See the Movement page.",
        )
    )
    answers.append(
        (
            "What guarantees that the Insiders are better than the rest?",
            backtest_sentence(backtest_rows(evidence)) + " Details below.",
        )
    )
    insider_actions = actions[actions["cluster_name"].isin(insider_profile["cluster_name"])]
    answers.append(
        (
            "What actions can the marketing team take to increase revenue?",
            f"For the Insiders: {insider_actions.iloc[0]['recommended_action']}. "
            "Every cluster's action is on the Clusters page."
            if not insider_actions.empty
            else "See each cluster's recommended action on the Clusters page.",
        )
    )
    return "\n".join(
        f"{number}. **{question}** {answer}"
        for number, (question, answer) in enumerate(answers, start=1)
    )


def render() -> None:
    st.title("Overview")
    snap = ui.open_snapshot()
    info = snap.info
    kpi = latest_kpis(snap.table("insiders.kpis"), info.as_of)
    forecast = insiders_forecast(snap.table("insiders.revenue_forecast"))

    first = st.columns(4)
    first[0].metric(
        "Insiders",
        ui.fmt_int(kpi["insiders"]) if kpi is not None else "—",
        help="Customers in the Insiders cluster at the as-of date.",
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
        ui.fmt_money(forecast_value(forecast)) if forecast is not None else "—",
        help="The Insiders' expected revenue over the forecast horizon (BG/NBD + Gamma-Gamma).",
    )
    second = st.columns([1, 3])
    second[0].metric("As of", ui.fmt_date(info.as_of))
    second[1].metric("Run", info.run_id, help=f"Snapshot {info.snapshot_id}")
    if kpi is None:
        ui.empty("No KPIs yet: the last run labelled no customers.")
    st.caption(forecast_sentence(forecast) if forecast is not None else "No revenue forecast yet.")
    st.caption(
        f"Snapshot {info.snapshot_id}, published {ui.fmt_date(info.published_at)} "
        f"by run {info.run_id}."
    )

    st.header("The nine questions")
    st.markdown(nine_answers(snap, kpi, forecast))

    st.header("Are the Insiders really better?")
    evidence = snap.table("insiders.evidence")
    rows = backtest_rows(evidence)
    if rows.empty:
        ui.empty("No time backtest yet.")
    else:
        st.markdown(backtest_sentence(rows))
        bars = (
            alt.Chart(rows)
            .mark_bar()
            .encode(
                x=alt.X("share_of_holdout_revenue:Q", title="Share of hold-out revenue")
                .axis(format="%")
                .scale(domain=[0, 1]),
                y=alt.Y("group:N", title=None, sort=list(BACKTEST_GROUPS.values())),
                tooltip=[
                    alt.Tooltip("group:N", title="Group"),
                    alt.Tooltip("share_of_holdout_revenue:Q", title="Share", format=".1%"),
                ],
            )
        )
        whiskers = (
            alt.Chart(rows.dropna(subset=["ci_low", "ci_high"]))
            .mark_rule(strokeWidth=2, color="black")
            .encode(x="ci_low:Q", x2="ci_high:Q", y=alt.Y("group:N", sort=None))
        )
        st.altair_chart(bars + whiskers, width="stretch")
        st.dataframe(
            rows[
                [
                    "group",
                    "insiders",
                    "share_of_holdout_revenue",
                    "ci_low",
                    "ci_high",
                    "cutoff_date",
                    "holdout_end",
                ]
            ],
            hide_index=True,
            column_config={
                "group": "Group",
                "insiders": st.column_config.NumberColumn("Customers"),
                "share_of_holdout_revenue": st.column_config.NumberColumn(
                    "Share of hold-out revenue", format="percent"
                ),
                "ci_low": st.column_config.NumberColumn("95% of draws from", format="percent"),
                "ci_high": st.column_config.NumberColumn("to", format="percent"),
                "cutoff_date": st.column_config.DateColumn("Cut-off"),
                "holdout_end": st.column_config.DateColumn("Hold-out end"),
            },
        )
    versus = evidence[evidence["evidence_kind"] == "insiders_vs_rest"]
    st.subheader("Insiders against the rest")
    if versus.empty:
        ui.empty("No comparison of the Insiders with the rest yet.")
    else:
        st.dataframe(
            versus[
                [
                    "metric",
                    "insiders_mean",
                    "others_mean",
                    "difference",
                    "ci_low",
                    "ci_high",
                    "p_value",
                ]
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
        )

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
