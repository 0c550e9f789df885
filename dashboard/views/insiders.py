"""Insiders: the member list (search, filters, CSV) and one customer's detail.

A page script: ``st.navigation`` executes it as ``__main__`` on every rerun. The filters
reach DuckDB only as query parameters (``Snapshot.members``); the customer's detail is
read with the customer id as a parameter too.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from dashboard import ui
from dashboard.snapshot import MemberFilter

CSV_FILE_NAME = "insiders_members.csv"

MEMBER_COLUMNS = {
    "customer_id": "Customer",
    "cluster_id": st.column_config.NumberColumn("Cluster", format="%d"),
    "cluster_name": "Cluster name",
    "country": "Country",
    "recency_days": st.column_config.NumberColumn("Recency (days)", format="%d"),
    "frequency": st.column_config.NumberColumn("Frequency", format="%d"),
    "monetary": st.column_config.NumberColumn("Monetary (£)", format="%.2f"),
    "gross_revenue": st.column_config.NumberColumn("Gross revenue (£)", format="%.2f"),
    "avg_ticket": st.column_config.NumberColumn("Ticket (£)", format="%.2f"),
    "avg_basket_size": st.column_config.NumberColumn("Basket (items)", format="%.1f"),
    "return_rate": st.column_config.NumberColumn("Return rate", format="percent"),
    "purchase_rate": st.column_config.NumberColumn("Purchases per 30 days", format="%.2f"),
    "first_purchase_at": st.column_config.DatetimeColumn("First purchase"),
    "last_purchase_at": st.column_config.DatetimeColumn("Last purchase"),
    "rfm_segment": "RFM segment",
    "member_since": st.column_config.DateColumn("Member since"),
    "membership_number": st.column_config.NumberColumn("Membership #", format="%d"),
    "member_rank": st.column_config.NumberColumn("Rank", format="%d"),
    "definition": "Definition",
    "expected_revenue_next_months": st.column_config.NumberColumn(
        "Expected revenue (£)", format="%.0f"
    ),
    "model_expected_revenue": st.column_config.NumberColumn(
        "BG/NBD + Gamma-Gamma (£)", format="%.0f"
    ),
    "probability_alive": st.column_config.NumberColumn("P(alive)", format="percent"),
    "as_of": st.column_config.DateColumn("As of"),
    "run_id": "Run",
}

HISTORY_COLUMNS = (
    "membership_number",
    "valid_from",
    "valid_to",
    "is_current",
    "last_qualified_on",
    "qualifying_evaluations",
    "entry_reason",
    "entry_detail",
    "exit_reason",
    "exit_detail",
)


def to_csv(members: pd.DataFrame) -> bytes:
    """The rows and columns the table shows, as the CSV the button downloads."""
    return members.to_csv(index=False).encode("utf-8")


def display_value(value: Any) -> str:
    """A feature's value as text for the two-column feature table."""
    if ui.is_missing(value):
        return "—"
    if isinstance(value, pd.Timestamp):
        return value.date().isoformat() if value == value.normalize() else str(value)
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) < 1 else f"{value:,.2f}"
    return str(value)


def filters(members: pd.DataFrame) -> MemberFilter:
    """The filter widgets, fed by the values present in the member list."""
    columns = st.columns(4)
    search = columns[0].text_input(
        "Search customer id", key="insiders_search", placeholder="part of a customer id"
    )
    countries = columns[1].multiselect(
        "Country",
        sorted(members["country"].dropna().unique().tolist()),
        key="insiders_countries",
        placeholder="All countries",
    )
    names = members.drop_duplicates("cluster_id").set_index("cluster_id")["cluster_name"].to_dict()
    cluster_ids = columns[2].multiselect(
        "Cluster",
        sorted(int(c) for c in names),
        format_func=lambda c: ui.cluster_label(c, names.get(c, "")),
        key="insiders_clusters",
        placeholder="All clusters",
    )
    min_monetary = columns[3].number_input(
        "Minimum monetary value",
        value=None,
        step=100.0,
        key="insiders_min_monetary",
        placeholder="Any",
        help="Net revenue (£) before the as-of date; empty: no minimum.",
    )
    return MemberFilter(
        search=search or "",
        countries=tuple(countries),
        cluster_ids=tuple(int(c) for c in cluster_ids),
        min_monetary=float(min_monetary) if min_monetary is not None else None,
    )


def customer_detail(snap: ui.OpenSnapshot, filtered: pd.DataFrame) -> None:
    """One member: features, membership history and forecast."""
    st.header("Customer detail")
    if filtered.empty:
        ui.empty("No members match the filters: no customer to show.")
        return
    customer_id = st.selectbox(
        "Customer",
        filtered["customer_id"].tolist(),
        key="insiders_customer",
        help="Among the members the filters above keep.",
    )
    if customer_id is None:
        return
    member = filtered[filtered["customer_id"] == customer_id].iloc[0]
    st.subheader(f"Customer {customer_id}")
    top = st.columns(5)
    top[0].metric("Cluster", ui.cluster_label(member["cluster_id"], member["cluster_name"]))
    top[1].metric("Monetary", ui.fmt_money(member["monetary"]))
    top[2].metric("Frequency", ui.fmt_int(member["frequency"]))
    top[3].metric("Recency (days)", ui.fmt_int(member["recency_days"]))
    top[4].metric("Member since", ui.fmt_date(member["member_since"]))

    left, right = st.columns([1, 2])
    with left:
        st.markdown("**Features**")
        features = snap.customer_rows("marts.dim_customers", customer_id)
        row = features.iloc[0] if not features.empty else member
        table = pd.DataFrame(
            {
                "feature": list(row.index),
                "value": [display_value(v) for v in row.to_numpy()],
            }
        )
        st.dataframe(
            table,
            hide_index=True,
            height=35 * (len(table) + 1) + 3,  # every feature, no inner scrolling
            column_config={"feature": "Feature", "value": "Value"},
        )
    with right:
        st.markdown("**Membership history**")
        history = snap.customer_rows("insiders.membership_history", customer_id)
        if history.empty:
            ui.empty("No membership history for this customer.")
        else:
            shown = [c for c in HISTORY_COLUMNS if c in history.columns]
            st.dataframe(
                history[shown],
                hide_index=True,
                column_config={
                    "membership_number": st.column_config.NumberColumn("Membership #"),
                    "valid_from": st.column_config.DateColumn("From"),
                    "valid_to": st.column_config.DateColumn("To"),
                    "is_current": "Current",
                    "last_qualified_on": st.column_config.DateColumn("Last qualified"),
                    "qualifying_evaluations": "Qualifying evaluations",
                    "entry_reason": "Entry",
                    "entry_detail": "Entry detail",
                    "exit_reason": "Exit",
                    "exit_detail": "Exit detail",
                },
            )
        st.markdown("**Expected revenue**")
        forecast = snap.customer_rows("insiders.customer_forecast", customer_id)
        if forecast.empty:
            ui.empty("No forecast for this customer.")
        else:
            f = forecast.iloc[0]
            cells = st.columns(3)
            cells[0].metric("Probability alive", ui.fmt_share(f["probability_alive"]))
            cells[1].metric("Expected purchases", ui.fmt_number(f["expected_purchases"]))
            cells[2].metric("Expected revenue", ui.fmt_money(f["expected_revenue"]))
            st.caption(
                f"From {ui.fmt_date(f['forecast_start'])} to {ui.fmt_date(f['forecast_end'])}."
            )


def render() -> None:
    st.title("Insiders")
    snap = ui.open_snapshot()
    members = snap.table("insiders.members")
    if members.empty:
        ui.empty("No members yet: the last run found no Insiders.")
        return
    caption = f"The current Insiders as of {ui.fmt_date(snap.info.as_of)}"
    if "definition" in members.columns and members["definition"].notna().any():
        caption += (
            f": the members of the chosen definition `{members['definition'].dropna().iloc[0]}`"
        )
    st.caption(caption + " (why this one: the Evidence page).")
    member_filter = filters(members)
    filtered = snap.members(member_filter)
    st.caption(f"{len(filtered):,} of {len(members):,} members shown.")
    if filtered.empty:
        ui.empty("No members match the filters.")
    else:
        st.dataframe(filtered, hide_index=True, column_config=MEMBER_COLUMNS)
    st.download_button(
        "Download CSV",
        data=to_csv(filtered),
        file_name=CSV_FILE_NAME,
        mime="text/csv",
        key="insiders_download",
        on_click="ignore",
        icon=":material/download:",
    )
    customer_detail(snap, filtered)


if __name__ == "__main__":
    render()
