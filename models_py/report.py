"""The Insiders report: the marketing team's nine questions answered in plain words.

Input is the ``insiders`` marts (and the embedding for the scatter) as DataFrames;
output is one document rendered twice, as Markdown (charts as PNG files beside it)
and as a self-contained HTML page (charts inlined). Every figure in the text is read
from the marts, so the report says what the warehouse says, run after run.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pandas as pd

# The tables the report reads, by mart name.
REPORT_TABLES: tuple[str, ...] = (
    "kpis",
    "members",
    "cluster_profile",
    "cluster_actions",
    "eligibility_rules",
    "evidence",
    "revenue_forecast",
    "membership_movement",
    "monthly_revenue",
    "customer_embedding",
)

QUESTIONS: tuple[str, ...] = (
    "1. Who is eligible for the Insiders program?",
    "2. How many customers are in it?",
    "3. What characterises them?",
    "4. What share of revenue do they bring?",
    "5. What revenue can we expect from them in the next months?",
    "6. What makes a person eligible?",
    "7. What removes a person from the program?",
    "8. What guarantees they are better than the rest?",
    "9. What actions would raise revenue?",
)


@dataclass
class Report:
    """The rendered report: Markdown and HTML texts, and the charts as PNG bytes."""

    markdown: str
    html: str
    charts: dict[str, bytes] = field(default_factory=dict)
    answers: dict[str, str] = field(default_factory=dict)


def build_report(
    tables: Mapping[str, pd.DataFrame], grace_cycles: int = 1, title: str = "Insiders report"
) -> Report:
    """Answer the nine questions from the marts. Raises ValueError if a mart is empty."""
    missing = [name for name in REPORT_TABLES if name not in tables]
    if missing:
        raise ValueError(f"the report needs the marts: {', '.join(missing)}")
    empty = [n for n in ("kpis", "cluster_profile") if tables[n].empty]
    if empty:
        raise ValueError(f"empty marts: {', '.join(empty)} (run the clustering first)")
    kpis = tables["kpis"].iloc[0]
    profile = tables["cluster_profile"].sort_values("cluster_id")
    insiders = profile[profile["is_insider"]].iloc[0]
    members = tables["members"].sort_values("monetary", ascending=False)
    charts = {
        "revenue_share.png": _bar_chart(
            profile["cluster_name"],
            [profile["share_of_customers"], profile["share_of_revenue"]],
            ["share of customers", "share of revenue"],
            "Customers and revenue per cluster",
        ),
        "cluster_profiles.png": _profile_chart(profile),
        "embedding.png": _scatter(tables["customer_embedding"], profile),
        "monthly_revenue.png": _monthly_chart(tables["monthly_revenue"]),
        "membership_movement.png": _movement_chart(tables["membership_movement"]),
        "evidence_backtest.png": _backtest_chart(tables["evidence"]),
        "revenue_forecast.png": _forecast_chart(tables["revenue_forecast"]),
    }
    blocks: list[tuple[str, Any]] = [("h1", title)]
    blocks.append(
        (
            "p",
            f"As of {_date(kpis['as_of'])}. Figures come from the warehouse's `insiders` marts "
            "of the latest run; net revenue in GBP.",
        )
    )
    answers: dict[str, str] = {}

    def answer(number: int, text: str, *extra: tuple[str, Any]) -> None:
        answers[QUESTIONS[number - 1]] = text
        blocks.append(("h2", QUESTIONS[number - 1]))
        blocks.append(("p", text))
        blocks.extend(extra)

    top = members.head(10)[["customer_id", "country", "frequency", "monetary", "member_since"]]
    answer(
        1,
        f"The {int(kpis['insiders']):,} customers of the cluster **{insiders['cluster_name']}** "
        "(table `insiders.members`). The ten who spent most:",
        ("table", top),
    )
    answer(
        2,
        f"{int(kpis['insiders']):,} of {int(kpis['customers']):,} customers, "
        f"{_pct(kpis['share_of_customers'])} of the customer base.",
    )
    answer(
        3,
        f"Compared with the whole base they buy {insiders['frequency_vs_base']:.1f} times as "
        f"often (median {insiders['median_frequency']:.0f} invoices), spend "
        f"{insiders['monetary_vs_base']:.1f} times as much (median "
        f"{insiders['median_monetary']:,.0f}), with a ticket {insiders['ticket_vs_base']:.1f} "
        f"times the base's, a return rate {insiders['return_rate_vs_base']:.1f} times, and "
        f"bought {insiders['mean_recency_days']:.0f} days ago on average. Every cluster:",
        ("table", _profile_table(profile)),
        ("img", "cluster_profiles.png"),
        ("img", "embedding.png"),
    )
    answer(
        4,
        f"{_pct(kpis['share_of_customer_revenue'])} of customer revenue and "
        f"{_pct(kpis['share_of_all_revenue'])} of all revenue (guest checkouts included), "
        f"{_pct(kpis['share_of_items'])} of the items sold; their average ticket is "
        f"{kpis['insiders_avg_ticket']:,.0f} against {kpis['others_avg_ticket']:,.0f} for "
        "the rest.",
        ("img", "revenue_share.png"),
        ("img", "monthly_revenue.png"),
    )
    answer(5, _forecast_text(tables["revenue_forecast"]), ("img", "revenue_forecast.png"))
    rules = tables["eligibility_rules"]
    answer(
        6,
        "A customer in the Insiders cluster; in readable rules (a depth-3 decision tree on "
        "the same features, with how faithful each rule is to the clustering):",
        ("table", rules[["rule_id", "rule", "customers", "precision", "recall"]]),
    )
    answer(
        7,
        _removal_text(tables["membership_movement"], grace_cycles),
        ("img", "membership_movement.png"),
    )
    answer(8, _evidence_text(tables["evidence"]), ("img", "evidence_backtest.png"))
    actions = tables["cluster_actions"][
        ["cluster_name", "customers", "share_of_revenue", "recommended_action", "why"]
    ]
    answer(
        9,
        "One action per cluster, from the analysts' rules (seed `cluster_action_rules`):",
        ("table", actions),
    )
    return Report(
        markdown=_markdown(blocks),
        html=_html(blocks, charts, title),
        charts=charts,
        answers=answers,
    )


# --- the words ------------------------------------------------------------------------


def _forecast_text(forecast: pd.DataFrame) -> str:
    rows = {(r.period, r.customer_group): r for r in forecast.itertuples()}
    now = rows.get(("forecast", "insiders"))
    if now is None:
        return "No forecast yet: the revenue_forecast asset has not run."
    text = (
        f"The Insiders are expected to spend {now.expected_revenue:,.0f} from "
        f"{_date(now.period_start)} to {_date(now.period_end)} ({now.horizon_days} days; "
        "BG/NBD and Gamma-Gamma fitted with pymc-marketing)."
    )
    if now.lower_bound is not None and not pd.isna(now.lower_bound):
        calibrated = getattr(now, "calibrated_revenue", None)
        text += " If the models err as they did in the backtest, they will spend "
        if calibrated is not None and not pd.isna(calibrated):
            text += f"about {calibrated:,.0f}, "
        text += (
            f"between {now.lower_bound:,.0f} and {now.upper_bound:,.0f} "
            f"({_pct(now.confidence)} interval)."
        )
    past = rows.get(("backtest", "insiders"))
    if past is not None:
        text += (
            f" Backtest: fitted with data before {_date(past.period_start)}, the models "
            f"predicted {past.expected_revenue:,.0f} for the Insiders chosen then; they spent "
            f"{past.actual_revenue:,.0f}, an error of {_signed_pct(past.relative_error)}"
        )
        everyone = rows.get(("backtest", "all"))
        if everyone is not None:
            text += f" ({_signed_pct(everyone.relative_error)} for all customers)"
        text += (
            ". The models assume steady buying and see no seasons: a hold-out busier than "
            "the months before it is predicted too low, a quieter one too high."
        )
    return text


def _removal_text(movement: pd.DataFrame, grace_cycles: int) -> str:
    text = (
        "Membership is re-evaluated every month. A member who is no longer in the Insiders "
        f"cluster keeps the membership for {grace_cycles} more re-evaluation(s) (the grace "
        "period, var `membership_grace_cycles`) and leaves at the next one still failed; "
        "the ledger `insiders.membership_history` keeps every entry and exit with its reason."
    )
    if not movement.empty:
        last = movement.sort_values("evaluation_date").iloc[-1]
        text += (
            f" At the latest re-evaluation ({_date(last['evaluation_date'])}): "
            f"{int(last['members']):,} members, {int(last['entered']):,} entered, "
            f"{int(last['left_program']):,} left, {int(last['stayed']):,} stayed, "
            f"{int(last['in_grace']):,} in their grace period. Over the whole history "
            f"{int(movement['left_program'].sum()):,} memberships ended."
        )
    return text


def _evidence_text(evidence: pd.DataFrame) -> str:
    parts = []
    for row in evidence[evidence["evidence_kind"] == "insiders_vs_rest"].itertuples():
        parts.append(
            f"{row.metric}: {row.insiders_mean:,.1f} for the Insiders against "
            f"{row.others_mean:,.1f} for the rest (95% interval of the difference "
            f"{row.ci_low:,.1f} to {row.ci_high:,.1f}, Mann-Whitney {_p_value(row.p_value)})"
        )
    text = "Insiders against the rest: " + "; ".join(parts) + "." if parts else ""
    backtest = {
        r.customer_group: r
        for r in evidence[evidence["evidence_kind"] == "time_backtest"].itertuples()
    }
    if {"insiders", "random", "top_monetary"} <= set(backtest):
        ins, rnd, top = backtest["insiders"], backtest["random"], backtest["top_monetary"]
        verdict = (
            "more than"
            if ins.share_of_holdout_revenue > top.share_of_holdout_revenue
            else "less than"
        )
        text += (
            f" Time backtest: the {int(ins.insiders):,} Insiders chosen with data before "
            f"{_date(ins.cutoff_date)} brought {_pct(ins.share_of_holdout_revenue)} of all "
            f"customers' revenue from then to {_date(ins.holdout_end)}; random groups of the "
            f"same size brought {_pct(rnd.share_of_holdout_revenue)} (95% of draws between "
            f"{_pct(rnd.ci_low)} and {_pct(rnd.ci_high)}; "
            f"{_pct(ins.random_groups_at_least_as_good)} of draws did as well as the "
            "Insiders), and the same number of "
            f"top customers by past monetary {_pct(top.share_of_holdout_revenue)}: the "
            f"Insiders brought {verdict} the simple top-spender rule."
        )
    return text


# --- rendering ------------------------------------------------------------------------


def _profile_table(profile: pd.DataFrame) -> pd.DataFrame:
    return profile[
        [
            "cluster_name",
            "customers",
            "share_of_customers",
            "share_of_revenue",
            "median_recency_days",
            "median_frequency",
            "median_monetary",
            "median_avg_ticket",
            "median_return_rate",
        ]
    ]


def _markdown(blocks: list[tuple[str, Any]]) -> str:
    out = []
    for kind, value in blocks:
        if kind == "h1":
            out.append(f"# {value}\n")
        elif kind == "h2":
            out.append(f"## {value}\n")
        elif kind == "p":
            out.append(f"{value}\n")
        elif kind == "table":
            out.append(_format(value).to_markdown(index=False) + "\n")
        elif kind == "img":
            out.append(f"![{value}]({value})\n")
    return "\n".join(out)


def _html(blocks: list[tuple[str, Any]], charts: Mapping[str, bytes], title: str) -> str:
    body = []
    for kind, value in blocks:
        if kind in ("h1", "h2"):
            body.append(f"<{kind}>{html.escape(value)}</{kind}>")
        elif kind == "p":
            text = html.escape(value)
            for marker, tag in (("**", "strong"), ("`", "code")):
                pieces = text.split(marker)
                text = "".join(
                    piece if i % 2 == 0 else f"<{tag}>{piece}</{tag}>"
                    for i, piece in enumerate(pieces)
                )
            body.append(f"<p>{text}</p>")
        elif kind == "table":
            body.append(_format(value).to_html(index=False, border=0, classes="table"))
        elif kind == "img":
            data = base64.b64encode(charts[value]).decode()
            body.append(f'<img alt="{value}" src="data:image/png;base64,{data}">')
    style = (
        "body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;"
        "padding:0 1rem;color:#222}table{border-collapse:collapse;margin:1rem 0}"
        "td,th{padding:.25rem .6rem;border-bottom:1px solid #ddd;text-align:right}"
        "img{max-width:100%;display:block;margin:1rem 0}"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{style}</style></head><body>{''.join(body)}</body></html>"
    )


def _format(frame: pd.DataFrame) -> pd.DataFrame:
    """Shares as percentages, money rounded: a table for people, not for machines."""
    out = frame.copy()
    for column in out.columns:
        if out[column].dtype == object and out[column].map(lambda v: isinstance(v, Decimal)).any():
            out[column] = out[column].astype(float)
        if column.startswith("share_") or column in ("precision", "recall"):
            out[column] = out[column].map(lambda v: "" if pd.isna(v) else f"{v:.1%}")
        elif pd.api.types.is_float_dtype(out[column]):
            out[column] = out[column].map(lambda v: "" if pd.isna(v) else f"{v:,.2f}")
        elif pd.api.types.is_datetime64_any_dtype(out[column]):
            out[column] = out[column].dt.strftime("%Y-%m-%d")
    return out


def _p_value(value: float) -> str:
    return "p < 1e-300" if value == 0 else f"p = {value:.2g}"


def _pct(value: Any) -> str:
    return "n/a" if value is None or pd.isna(value) else f"{float(value):.1%}"


def _signed_pct(value: Any) -> str:
    return "n/a" if value is None or pd.isna(value) else f"{float(value):+.1%}"


def _date(value: Any) -> str:
    return pd.Timestamp(value).strftime("%Y-%m-%d")


# --- charts ---------------------------------------------------------------------------


def _figure(width: float = 7, height: float = 3.6):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(width, height), dpi=100)
    return plt, fig, ax


def _png(plt, fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def _bar_chart(labels, series, names, title) -> bytes:
    import numpy as np

    plt, fig, ax = _figure()
    x = np.arange(len(labels))
    width = 0.8 / len(series)
    for i, (values, name) in enumerate(zip(series, names, strict=True)):
        ax.bar(x + i * width, values, width, label=name)
    ax.set_xticks(x + width * (len(series) - 1) / 2, labels, rotation=20, ha="right")
    ax.set_title(title)
    ax.legend()
    return _png(plt, fig)


def _profile_chart(profile: pd.DataFrame) -> bytes:
    columns = ["recency_vs_base", "frequency_vs_base", "monetary_vs_base", "ticket_vs_base"]
    return _bar_chart(
        profile["cluster_name"],
        [profile[c] for c in columns],
        [c.replace("_vs_base", "") for c in columns],
        "Cluster means as a multiple of the whole base (1 = like everyone)",
    )


def _scatter(embedding: pd.DataFrame, profile: pd.DataFrame) -> bytes:
    plt, fig, ax = _figure(7, 5)
    names = dict(zip(profile["cluster_id"], profile["cluster_name"], strict=True))
    for cluster_id, group in embedding.groupby("cluster_id"):
        ax.scatter(group["x"], group["y"], s=4, alpha=0.6, label=names.get(cluster_id, cluster_id))
    ax.set_title("Customers in two dimensions, coloured by cluster")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(markerscale=3, fontsize=8)
    return _png(plt, fig)


def _monthly_chart(monthly: pd.DataFrame) -> bytes:
    plt, fig, ax = _figure()
    data = monthly.sort_values("month_start")
    months = pd.to_datetime(data["month_start"]).dt.strftime("%Y-%m")
    ax.bar(months, data["insiders_revenue"].astype(float), label="Insiders")
    ax.bar(
        months,
        data["others_revenue"].astype(float),
        bottom=data["insiders_revenue"].astype(float),
        label="everyone else",
    )
    ax.set_title("Revenue per month")
    ax.tick_params(axis="x", rotation=45)
    ax.legend()
    return _png(plt, fig)


def _movement_chart(movement: pd.DataFrame) -> bytes:
    plt, fig, ax = _figure()
    data = movement.sort_values("evaluation_date")
    dates = pd.to_datetime(data["evaluation_date"]).dt.strftime("%Y-%m-%d")
    ax.bar(dates, data["stayed"], label="stayed")
    ax.bar(dates, data["entered"], bottom=data["stayed"], label="entered")
    ax.bar(dates, -data["left_program"], label="left")
    ax.axhline(0, color="black", linewidth=0.5)
    ax.set_title("Members at each monthly re-evaluation")
    ax.tick_params(axis="x", rotation=45)
    ax.legend()
    return _png(plt, fig)


def _backtest_chart(evidence: pd.DataFrame) -> bytes:
    plt, fig, ax = _figure(6, 3.4)
    data = evidence[evidence["evidence_kind"] == "time_backtest"]
    ax.bar(data["customer_group"], data["share_of_holdout_revenue"])
    random = data[data["customer_group"] == "random"]
    if not random.empty:
        row = random.iloc[0]
        ax.errorbar(
            ["random"],
            [row["share_of_holdout_revenue"]],
            yerr=[
                [row["share_of_holdout_revenue"] - row["ci_low"]],
                [row["ci_high"] - row["share_of_holdout_revenue"]],
            ],
            color="black",
            capsize=6,
        )
    ax.set_title("Share of the revenue after the cut-off, groups chosen before it")
    return _png(plt, fig)


def _forecast_chart(forecast: pd.DataFrame) -> bytes:
    plt, fig, ax = _figure(6, 3.4)
    data = forecast.sort_values(["period", "customer_group"])
    labels = data["period"] + "\n" + data["customer_group"]
    ax.bar(labels, data["expected_revenue"], label="expected")
    backtest = data["actual_revenue"].notna()
    ax.scatter(
        labels[backtest],
        data.loc[backtest, "actual_revenue"],
        color="black",
        zorder=3,
        label="actual (backtest)",
    )
    bounds = data["lower_bound"].notna()
    if bounds.any():
        ax.vlines(
            labels[bounds],
            data.loc[bounds, "lower_bound"],
            data.loc[bounds, "upper_bound"],
            color="red",
            label="interval",
        )
    ax.set_title("Expected revenue over the horizon (GBP)")
    ax.legend(fontsize=8)
    return _png(plt, fig)
