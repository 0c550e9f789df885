"""Movement: who entered, left and stayed at each monthly re-evaluation, and the rules
that make a customer eligible, in words.

A page script: ``st.navigation`` executes it as ``__main__`` on every rerun.
"""

from __future__ import annotations

import json
from typing import Any

import altair as alt
import pandas as pd
import streamlit as st

from dashboard import ui

FEATURE_WORDS = {
    "recency_days": "days since the last purchase",
    "tenure_days": "days since the first purchase",
    "frequency": "purchases",
    "monetary": "net spend",
    "gross_revenue": "gross spend",
    "avg_ticket": "average ticket",
    "avg_basket_size": "items per purchase",
    "distinct_products": "distinct products bought",
    "return_rate": "share of spend returned",
    "purchase_rate": "purchases per 30 days",
}
MONEY_FEATURES = frozenset({"monetary", "gross_revenue", "avg_ticket"})
SHARE_FEATURES = frozenset({"return_rate"})
OPERATOR_WORDS = {">": "above", ">=": "at least", "<": "below", "<=": "at most", "=": "equal to"}

MOVES = {"stayed": "Stayed", "entered": "Entered", "left_program": "Left"}


def threshold_words(feature: str, threshold: float) -> str:
    """A threshold in the feature's unit: ``£1,234.50``, ``4.0%``, ``11.5``."""
    if feature in MONEY_FEATURES:
        return f"£{threshold:,.2f}"
    if feature in SHARE_FEATURES:
        return f"{threshold:.1%}"
    return f"{threshold:,.2f}".rstrip("0").rstrip(".")


def condition_words(condition: Any) -> str | None:
    """One ``{"feature", "operator", "threshold"}`` condition in words, or None if it is
    not one (the caller then shows the rule as written)."""
    if not isinstance(condition, dict):
        return None
    feature, operator = condition.get("feature"), condition.get("operator")
    threshold = condition.get("threshold")
    if not isinstance(feature, str) or operator not in OPERATOR_WORDS:
        return None
    if isinstance(threshold, bool) or not isinstance(threshold, int | float):
        return None
    return (
        f"{FEATURE_WORDS.get(feature, feature.replace('_', ' '))} "
        f"{OPERATOR_WORDS[operator]} {threshold_words(feature, float(threshold))}"
    )


def tightest(conditions: list[Any]) -> list[Any]:
    """The conditions with one bound per feature and operator: a tree path may split on
    the same feature twice (``monetary > 866.62 ... and monetary > 1,566.20``), and only
    the tighter bound says anything. Order of first appearance is kept."""
    kept: dict[tuple[str, str], dict[str, Any]] = {}
    others: list[Any] = []
    for condition in conditions:
        if condition_words(condition) is None:
            others.append(condition)
            continue
        key = (condition["feature"], condition["operator"])
        if key not in kept:
            kept[key] = condition
            continue
        upper = condition["operator"] in (">", ">=")
        if (condition["threshold"] > kept[key]["threshold"]) == upper:
            kept[key] = condition
    return [*kept.values(), *others]


def rule_in_words(rule: str, conditions: Any) -> str:
    """A rule in words, from its structured ``conditions`` (the JSON the eligibility step
    writes beside the text): ``[{"feature": "monetary", "operator": ">", "threshold":
    1234.5}, ...]`` reads ``net spend above £1,234.50 and ...``. Reading the structure,
    not the text, keeps thresholds of any size whole (the text writes ``1,234.50``).
    Conditions that are missing or not of that shape leave the rule as written."""
    try:
        parsed = json.loads(conditions) if isinstance(conditions, str) else conditions
    except ValueError:
        parsed = None
    if not isinstance(parsed, list):
        return rule
    words = [condition_words(condition) for condition in tightest(parsed)]
    if not words:
        return "no condition at all"
    kept = [w for w in words if w is not None]
    if len(kept) < len(words):
        return rule
    if len(kept) == 1:
        return kept[0]
    return ", ".join(kept[:-1]) + " and " + kept[-1]


def rule_sentence(rule: pd.Series) -> str:
    """One rule, in a sentence a marketer can check against a customer."""
    return (
        f"**Rule {rule['rule_id']}.** Customers with "
        f"{rule_in_words(str(rule['rule']), rule['conditions'])}: "
        f"{ui.fmt_int(rule['customers'])} customers, {ui.fmt_int(rule['insiders'])} of them "
        f"Insiders. Precision {ui.fmt_share(rule['precision'])} (of the customers the rule "
        f"selects, the share who are Insiders), recall {ui.fmt_share(rule['recall'])} (of "
        "all Insiders, the share the rule selects)."
    )


def movement_chart(movement: pd.DataFrame) -> alt.Chart:
    """Stayed and entered above zero (they add up to the members), left below it."""
    long = movement[["evaluation_date", *MOVES]].melt(
        id_vars="evaluation_date", value_vars=list(MOVES), var_name="move", value_name="n"
    )
    long["customers"] = long["n"].where(long["move"] != "left_program", -long["n"])
    long["move"] = long["move"].map(MOVES)
    return (
        alt.Chart(long)
        .mark_bar()
        .encode(
            x=alt.X("yearmonthdate(evaluation_date):O", title="Re-evaluation"),
            y=alt.Y("customers:Q", title="Members", stack=True),
            color=alt.Color("move:N", title=None).scale(
                domain=list(MOVES.values()), range=["#9ecae1", "#2ca02c", "#d62728"]
            ),
            tooltip=[
                alt.Tooltip("yearmonthdate(evaluation_date):O", title="Re-evaluation"),
                alt.Tooltip("move:N", title="Move"),
                alt.Tooltip("n:Q", title="Customers"),
            ],
        )
    )


def render() -> None:
    st.title("Movement")
    snap = ui.open_snapshot()

    st.header("Members entered, left and stayed")
    movement = snap.table("insiders.membership_movement")
    if movement.empty:
        ui.empty("No membership movement yet: no re-evaluation has been run.")
    else:
        latest = movement.iloc[-1]
        st.caption(
            f"Membership is re-evaluated monthly. At {ui.fmt_date(latest['evaluation_date'])}: "
            f"{ui.fmt_int(latest['members'])} members, {ui.fmt_int(latest['entered'])} "
            f"entered, {ui.fmt_int(latest['left_program'])} left."
        )
        st.altair_chart(movement_chart(movement), width="stretch")
        shown = [
            c
            for c in (
                "evaluation_date",
                "members",
                "entered",
                "left_program",
                "stayed",
                "qualifying",
                "in_grace",
            )
            if c in movement.columns
        ]
        st.dataframe(
            movement[shown],
            hide_index=True,
            column_config={
                "evaluation_date": st.column_config.DateColumn("Re-evaluation"),
                "members": "Members",
                "entered": "Entered",
                "left_program": "Left",
                "stayed": "Stayed",
                "qualifying": "Qualifying",
                "in_grace": "In grace period",
            },
        )

    st.header("Why memberships ended")
    history = snap.table("insiders.membership_history")
    ended = history[history["exit_reason"].notna()] if not history.empty else history
    if ended.empty:
        ui.empty("No membership has ended yet.")
    else:
        reasons = (
            ended.groupby("exit_reason", as_index=False)
            .size()
            .rename(columns={"size": "memberships"})
            .sort_values("memberships", ascending=False)
        )
        st.caption(
            "A member no longer among the chosen definition's members keeps a grace period "
            "and leaves at the next re-evaluation that still finds them outside."
        )
        st.dataframe(
            reasons,
            hide_index=True,
            column_config={"exit_reason": "Exit reason", "memberships": "Memberships"},
        )

    st.header("Eligibility rules")
    rules = snap.table("insiders.eligibility_rules")
    if rules.empty:
        ui.empty("No eligibility rules yet.")
        return
    st.caption(
        "A depth-3 decision tree fitted on the customer features against Insider "
        "membership, read as rules."
    )
    st.markdown("\n\n".join(rule_sentence(rule) for _, rule in rules.iterrows()))
    st.dataframe(
        rules[["rule_id", "rule", "customers", "insiders", "precision", "recall"]],
        hide_index=True,
        column_config={
            "rule_id": "Rule",
            "rule": st.column_config.TextColumn("Condition", width="large"),
            "customers": "Customers",
            "insiders": "Insiders",
            "precision": st.column_config.NumberColumn("Precision", format="percent"),
            "recall": st.column_config.NumberColumn("Recall", format="percent"),
        },
    )


if __name__ == "__main__":
    render()
