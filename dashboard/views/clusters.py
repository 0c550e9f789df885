"""Clusters: who the segments are, where the customers sit, and how the model was chosen.

A page script: ``st.navigation`` executes it as ``__main__`` on every rerun.
"""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from dashboard import ui

# Altair sends every point to the browser; beyond this a deterministic sample is drawn.
MAX_SCATTER_POINTS = 20_000

PROFILE_COLUMNS = {
    "cluster": "Cluster",
    "customers": st.column_config.NumberColumn("Customers", format="%d"),
    "share_of_customers": st.column_config.NumberColumn("Share of customers", format="percent"),
    "insiders_members": st.column_config.NumberColumn("Insiders in it", format="%d"),
    "insiders_members_share": st.column_config.NumberColumn(
        "Share that are Insiders", format="percent"
    ),
    "revenue": st.column_config.NumberColumn("Revenue (£)", format="%.0f"),
    "share_of_revenue": st.column_config.NumberColumn("Share of revenue", format="percent"),
    "mean_recency_days": st.column_config.NumberColumn("Recency (days, mean)", format="%.0f"),
    "mean_frequency": st.column_config.NumberColumn("Frequency (mean)", format="%.1f"),
    "mean_monetary": st.column_config.NumberColumn("Monetary (£, mean)", format="%.0f"),
    "median_monetary": st.column_config.NumberColumn("Monetary (£, median)", format="%.0f"),
    "mean_avg_ticket": st.column_config.NumberColumn("Ticket (£, mean)", format="%.0f"),
    "mean_avg_basket_size": st.column_config.NumberColumn("Basket (items, mean)", format="%.0f"),
    "mean_return_rate": st.column_config.NumberColumn("Return rate (mean)", format="percent"),
    "monetary_vs_base": st.column_config.NumberColumn("Monetary vs base", format="%.2fx"),
    "frequency_vs_base": st.column_config.NumberColumn("Frequency vs base", format="%.2fx"),
    "recency_vs_base": st.column_config.NumberColumn("Recency vs base", format="%.2fx"),
}

CHARTS = (
    ("customers", "Customers", ",.0f"),
    ("share_of_revenue", "Share of revenue", ".1%"),
    ("mean_recency_days", "Recency (days since last purchase, mean)", ",.0f"),
    ("mean_frequency", "Frequency (purchases, mean)", ",.1f"),
    ("mean_monetary", "Monetary (£, mean)", ",.0f"),
)


def with_labels(profile: pd.DataFrame) -> pd.DataFrame:
    """The profile with a ``cluster`` label (``0 · Insiders``) for tables and charts."""
    labelled = profile.copy()
    labelled["cluster"] = [
        ui.cluster_label(i, n)
        for i, n in zip(labelled["cluster_id"], labelled["cluster_name"], strict=True)
    ]
    return labelled


def bar(profile: pd.DataFrame, field: str, title: str, fmt: str) -> alt.Chart:
    """One measure per cluster, the Insiders highlighted."""
    return (
        alt.Chart(profile, title=title)
        .mark_bar()
        .encode(
            x=alt.X(f"{field}:Q", title=None).axis(format=fmt),
            y=alt.Y("cluster:N", title=None, sort=list(profile["cluster"])).axis(labelLimit=220),
            color=alt.Color("is_insider:N", title="Insiders", legend=None).scale(
                domain=[True, False], range=["#d62728", "#7f7f7f"]
            ),
            tooltip=[
                alt.Tooltip("cluster:N", title="Cluster"),
                alt.Tooltip(f"{field}:Q", title=title, format=fmt),
            ],
        )
        .properties(height=alt.Step(28))
    )


def render() -> None:
    st.title("Clusters")
    snap = ui.open_snapshot()
    profile = snap.table("insiders.cluster_profile")
    if profile.empty:
        ui.empty("No clusters yet: the last run labelled no customers.")
        return
    profile = with_labels(profile)
    labels = dict(zip(profile["cluster_id"], profile["cluster"], strict=True))

    st.header("Cluster profile")
    st.caption(
        f"{len(profile)} clusters of {ui.fmt_int(profile['customers'].sum())} customers, "
        f"as of {ui.fmt_date(snap.info.as_of)}. Ratios compare a cluster's mean with the "
        "whole base's."
    )
    shown = [c for c in PROFILE_COLUMNS if c in profile.columns]
    st.dataframe(profile[shown], hide_index=True, column_config=PROFILE_COLUMNS)

    columns = st.columns(2)
    for position, (field, title, fmt) in enumerate(CHARTS):
        columns[position % 2].altair_chart(bar(profile, field, title, fmt), width="stretch")

    st.header("Recommended actions")
    actions = snap.table("insiders.cluster_actions")
    if actions.empty:
        ui.empty("No recommended actions yet.")
    else:
        actions = actions.assign(cluster=actions["cluster_id"].map(labels))
        st.dataframe(
            actions[["cluster", "recommended_action", "why"]],
            hide_index=True,
            column_config={
                "cluster": "Cluster",
                "recommended_action": st.column_config.TextColumn("Action", width="large"),
                "why": st.column_config.TextColumn("Why", width="large"),
            },
        )

    st.header("Customers in the embedding")
    embedding = snap.table("ml.customer_embedding")
    if embedding.empty:
        ui.empty("No embedding yet.")
    else:
        if len(embedding) > MAX_SCATTER_POINTS:
            st.caption(
                f"A sample of {MAX_SCATTER_POINTS:,} of {len(embedding):,} customers is shown."
            )
            embedding = embedding.sample(MAX_SCATTER_POINTS, random_state=0)
        embedding = embedding.assign(
            cluster=embedding["cluster_id"].map(labels).fillna(embedding["cluster_id"].astype(str))
        )
        scatter = (
            alt.Chart(embedding[["customer_id", "x", "y", "cluster"]])
            .mark_circle(size=18, opacity=0.7)
            .encode(
                x=alt.X("x:Q", title=None).axis(labels=False, ticks=False),
                y=alt.Y("y:Q", title=None).axis(labels=False, ticks=False),
                color=alt.Color("cluster:N", title="Cluster"),
                tooltip=[alt.Tooltip("customer_id:N", title="Customer"), "cluster:N"],
            )
            .properties(height=480)
            .interactive()
        )
        st.altair_chart(scatter, width="stretch")

    st.header("Model selection")
    selection = snap.table("ml.model_selection")
    if selection.empty:
        ui.empty("No model selection yet.")
        return
    chosen = selection[selection["is_chosen"].fillna(False).astype(bool)]
    if not chosen.empty:
        best = chosen.iloc[0]
        st.markdown(
            f"Chosen: **{best['algorithm']}** on **{best['space']}**, K = {best['k']} "
            f"(silhouette {ui.fmt_number(best['silhouette'], 3)}), "
            f"among {len(selection)} candidates."
        )
    shown = [
        c
        for c in (
            "is_chosen",
            "is_eligible",
            "space",
            "algorithm",
            "k_requested",
            "k",
            "silhouette",
            "silhouette_features",
            "davies_bouldin",
            "calinski_harabasz",
            "smallest_cluster_share",
        )
        if c in selection.columns
    ]
    st.dataframe(
        selection[shown],
        hide_index=True,
        column_config={
            "is_chosen": "Chosen",
            "is_eligible": "Eligible",
            "space": "Space",
            "algorithm": "Algorithm",
            "k_requested": "K requested",
            "k": "K",
            "silhouette": st.column_config.NumberColumn("Silhouette", format="%.3f"),
            "silhouette_features": st.column_config.NumberColumn(
                "Silhouette (features)", format="%.3f"
            ),
            "davies_bouldin": st.column_config.NumberColumn("Davies-Bouldin", format="%.3f"),
            "calinski_harabasz": st.column_config.NumberColumn("Calinski-Harabasz", format="%.0f"),
            "smallest_cluster_share": st.column_config.NumberColumn(
                "Smallest cluster", format="percent"
            ),
        },
    )


if __name__ == "__main__":
    render()
