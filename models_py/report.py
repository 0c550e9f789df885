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

# The tables the report reads, by dbt model name (schema insiders; the embedding is ml).
REPORT_TABLES: tuple[str, ...] = (
    "kpis",
    "members",
    "cluster_profile",
    "cluster_actions",
    "eligibility_rules",
    "evidence",
    "definition_evaluation",
    "definition_choice",
    "revenue_forecast",
    "forecast_evaluation",
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

DEFINITION_SECTION = "Which definition of the Insiders, and why (questions 6 and 8)"

SEASON_CAVEAT = (
    "One year of data: a full yearly cycle has not been observed; the seasonal factor "
    "comes from the months seen once and could not be backtested."
)


@dataclass
class Report:
    """The rendered report: Markdown and HTML texts, and the charts as PNG bytes."""

    markdown: str
    html: str
    charts: dict[str, bytes] = field(default_factory=dict)
    answers: dict[str, str] = field(default_factory=dict)
    definition_section: str = ""


def build_report(
    tables: Mapping[str, pd.DataFrame], grace_cycles: int = 1, title: str = "Insiders report"
) -> Report:
    """Answer the nine questions from the marts. Raises ValueError if a mart is empty."""
    missing = [name for name in REPORT_TABLES if name not in tables]
    if missing:
        raise ValueError(f"the report needs the marts: {', '.join(missing)}")
    empty = [n for n in ("kpis", "cluster_profile", "definition_choice") if tables[n].empty]
    if empty:
        raise ValueError(f"empty marts: {', '.join(empty)} (run the clustering first)")
    kpis = tables["kpis"].iloc[0]
    profile = tables["cluster_profile"].sort_values("cluster_id")
    cluster = profile[profile["is_insider"]].iloc[0]
    choice = _floats(
        tables["definition_choice"].sort_values("sort_order"),
        "mean_ratio",
        "min_ratio",
        "max_ratio",
        "mean_share",
    )
    chosen = _chosen(choice)
    evaluation = _floats(
        tables["definition_evaluation"].sort_values(["origin_date", "sort_order"]),
        "horizon_revenue",
        "share_of_horizon_revenue",
        "share_low",
        "share_high",
        "ratio_to_top_past_revenue",
    )
    forecast = _floats(tables["revenue_forecast"], *_MONEY, "trend_factor", "seasonal_factor")
    backtest = _floats(
        tables["forecast_evaluation"].sort_values("origin_date"),
        *_MONEY,
        "forecast_revenue",
        "actual_revenue",
        "relative_error",
        "naive_relative_error",
        "model_relative_error",
        "interval_width_ratio",
    )
    members = tables["members"]
    if "member_rank" in members:
        members = members.sort_values("member_rank")
    else:
        members = members.sort_values("monetary", ascending=False)
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
        "definition_evaluation.png": _definition_chart(evaluation, chosen["definition"]),
        "forecast_evaluation.png": _forecast_chart(backtest, forecast),
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

    name, description = chosen["definition"], chosen["description"]
    n_members, n_customers = int(kpis["insiders"]), int(kpis["customers"])
    columns = [
        c
        for c in (
            "member_rank",
            "customer_id",
            "country",
            "cluster_name",
            "frequency",
            "monetary",
            "member_since",
        )
        if c in members
    ]
    answer(
        1,
        f"The {n_members:,} customers chosen by the definition **{name}**: {description} "
        "(question 6 says why this definition; the list is the table `insiders.members`). "
        "The first ten:",
        ("table", members.head(10)[columns]),
    )
    overlap = _int(cluster.get("insiders_members"))
    answer(
        2,
        f"{n_members:,} of {n_customers:,} customers, {_pct(kpis['share_of_customers'])} of "
        f"the customer base: as many as the clustering's Insiders cluster holds "
        f"({int(cluster['customers']):,} customers), and {overlap:,} of the Insiders are in "
        "that cluster.",
    )
    answer(
        3,
        _profile_text(profile, cluster, members, n_members),
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
    extra: list[tuple[str, Any]] = []
    if not forecast.empty:
        extra.append(("table", _forecast_table(forecast)))
    if not backtest.empty:
        extra.append(("p", "The same forecast made at every past origin, against what happened:"))
        extra.append(("table", _backtest_table(backtest)))
    extra.append(("img", "forecast_evaluation.png"))
    answer(5, _forecast_text(forecast), *extra)

    # The section the definition rests on, then questions 6 and 8 point to it.
    blocks.append(("h2", DEFINITION_SECTION))
    section = _definition_text(choice, evaluation, chosen)
    blocks.append(("p", section))
    blocks.append(("table", _choice_table(choice)))
    if not evaluation.empty:
        blocks.append(
            (
                "p",
                "Per origin, what each definition's members spent in the horizon as a "
                "multiple of what the same number of top past spenders spent (1.00x = as "
                "much), and the share of the horizon's revenue taken by the chosen "
                "definition and by random groups of the same size (90% of the draws):",
            )
        )
        blocks.append(("table", _evaluation_table(evaluation, name)))
    blocks.append(("img", "definition_evaluation.png"))

    rules = tables["eligibility_rules"]
    answer(
        6,
        f"Being chosen by the definition **{name}** at the monthly re-evaluation: "
        f"{description}, as many customers as the clustering's Insiders cluster holds "
        f"({n_members:,} now). Why this definition: the section above. "
        + "The same membership in readable rules (a depth-3 decision tree on the "
        "customer features, with how faithful each rule is to the membership):",
        ("table", rules[["rule_id", "rule", "customers", "precision", "recall"]]),
    )
    answer(
        7,
        _removal_text(tables["membership_movement"], grace_cycles, name),
        ("img", "membership_movement.png"),
    )
    answer(8, _evidence_text(tables["evidence"], evaluation, chosen))
    actions = tables["cluster_actions"][
        ["cluster_name", "customers", "share_of_revenue", "recommended_action", "why"]
    ]
    answer(
        9,
        "One action per cluster, from the analysts' rules (seed `cluster_action_rules`); "
        "Insiders outside the Insiders cluster get the program's benefits on top of their "
        "cluster's action:",
        ("table", actions),
    )
    return Report(
        markdown=_markdown(blocks),
        html=_html(blocks, charts, title),
        charts=charts,
        answers=answers,
        definition_section=section,
    )


_MONEY = ("expected_revenue", "lower_bound", "upper_bound", "naive_revenue", "model_revenue")


def _floats(frame: pd.DataFrame, *columns: str) -> pd.DataFrame:
    """The marts' DECIMAL columns arrive as Decimal objects: as floats for arithmetic."""
    out = frame.copy()
    for column in columns:
        if column in out:
            out[column] = pd.to_numeric(out[column], errors="coerce").astype(float)
    return out


def _chosen(choice: pd.DataFrame) -> pd.Series:
    rows = choice[choice["is_chosen"].fillna(False).astype(bool)]
    if rows.empty:
        raise ValueError("insiders.definition_choice has no chosen definition")
    return rows.iloc[0]


def _int(value: Any) -> int:
    return 0 if value is None or pd.isna(value) else int(value)


def _ratio(value: Any, digits: int = 2) -> str:
    return "n/a" if value is None or pd.isna(value) else f"{float(value):.{digits}f}x"


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


# --- the words ------------------------------------------------------------------------


def _profile_text(
    profile: pd.DataFrame, cluster: pd.Series, members: pd.DataFrame, n_members: int
) -> str:
    text = (
        "The clustering still describes the whole base: it sorts every customer into "
        f"behaviour groups, and the group named **{cluster['cluster_name']}** is its most "
        f"valuable one. Compared with the whole base that cluster buys "
        f"{cluster['frequency_vs_base']:.1f} times as often (median "
        f"{cluster['median_frequency']:.0f} invoices), spends {cluster['monetary_vs_base']:.1f} "
        f"times as much (median {cluster['median_monetary']:,.0f}), with a ticket "
        f"{cluster['ticket_vs_base']:.1f} times the base's, a return rate "
        f"{cluster['return_rate_vs_base']:.1f} times, and bought "
        f"{cluster['mean_recency_days']:.0f} days ago on average."
    )
    if "insiders_members" in profile:
        where = [
            f"{int(r.insiders_members):,} in {r.cluster_name}"
            for r in profile.sort_values("insiders_members", ascending=False).itertuples()
            if r.insiders_members
        ]
        text += f" The {n_members:,} Insiders fall in the clusters as follows: " + (
            ", ".join(where) + "." if where else "none yet."
        )
    if {"frequency", "monetary", "recency_days"} <= set(members.columns) and not members.empty:
        text += (
            f" The Insiders themselves: median {members['frequency'].median():.0f} invoices, "
            f"median net revenue {pd.to_numeric(members['monetary']).median():,.0f}, last "
            f"purchase {members['recency_days'].median():.0f} days ago (medians)."
        )
    return text + " Every cluster:"


def _forecast_text(forecast: pd.DataFrame) -> str:
    rows = {r.customer_group: r for r in forecast.itertuples()}
    now = rows.get("insiders")
    if now is None:
        return "No forecast yet: the revenue forecast has not run."
    text = (
        f"The {now.customers:,} Insiders are expected to spend **GBP "
        f"{now.expected_revenue:,.0f}** (net revenue) from {_date(now.period_start)} to "
        f"{_date(now.period_end)} "
        f"({now.horizon_days} days), between {now.lower_bound:,.0f} and {now.upper_bound:,.0f}."
    )
    everyone = rows.get("all_customers")
    if everyone is not None:
        text += (
            f" All {everyone.customers:,} customers: {everyone.expected_revenue:,.0f} "
            f"(between {everyone.lower_bound:,.0f} and {everyone.upper_bound:,.0f})."
        )
    text += (
        f" How: each group's net revenue over the last {now.horizon_days} days, the naive "
        f'forecast ("they will spend what they just spent": {now.naive_revenue:,.0f} for the '
        "Insiders"
        + (f", {everyone.naive_revenue:,.0f} for everyone" if everyone is not None else "")
        + f"), times a damped trend factor ({now.trend_factor:.2f}) and a seasonal factor "
        f"({now.seasonal_factor:.2f}). {SEASON_CAVEAT}"
    )
    if bool(now.season_observed):
        mood = "quieter" if now.seasonal_factor < 1 else "busier"
        text += (
            f" It is applied here: the coming months were {mood} "
            "than the last ones, relative to the trend, the one time they were seen."
        )
    else:
        text += (
            " It is not applied here (factor 1): not every month of the horizon and of the "
            "one before has been observed."
        )
    errors = _int(now.errors_behind_interval)
    if errors:
        text += (
            f" The interval spans the largest error this forecast made at the "
            f"{_plural(errors, 'earlier origin')}, widened by ({errors} + 1) / {errors}: a "
            "range from past errors, not a probability."
        )
    else:
        text += " No earlier error to learn from yet: the interval has a preset width."
    n = _int(now.evaluation_origins)
    if n:
        covered = _int(now.origins_covered)
        forecast_error = float(now.median_abs_relative_error)
        naive_error = float(now.naive_median_abs_relative_error)
        model_error = float(now.model_median_abs_relative_error)
        helped = "helped" if forecast_error < naive_error else "did not help"
        text += (
            f" Made at each of the {n} past origins with only the data before it, for the "
            "Insiders chosen then (table below), the forecast missed what they spent by a "
            f"median absolute relative error of {_pct(forecast_error)}, against "
            f"{_pct(naive_error)} for the naive forecast (adjusting it {helped}); its interval "
            f"covered the actual at {covered} of {n} origins."
        )
    else:
        model_error = None
    text += (
        f" The BG/NBD + Gamma-Gamma models (sum {now.model_revenue:,.0f} for the Insiders) "
        "are used only to split the forecast among customers (`expected_revenue_next_months` "
        "in `insiders.members`)"
    )
    if model_error is not None:
        text += (
            f": as a group total they missed by a median of {_pct(model_error)} at the same "
            "origins, because they assume steady buying"
        )
    return text + "."


def _definition_text(choice: pd.DataFrame, evaluation: pd.DataFrame, chosen: pd.Series) -> str:
    name, how = chosen["definition"], chosen.get("chosen_by")
    origins = sorted(evaluation["origin_date"].unique()) if not evaluation.empty else []
    listed = "; ".join(f"**{r.definition}**: {r.description}" for r in choice.itertuples())
    text = f"The Insiders can be chosen in {len(choice)} ways: {listed}."
    if not origins:
        text += (
            " There is not enough history for the evaluation yet: no origin has a full "
            "horizon after it and enough history before it."
        )
        if how == "forced":
            return text + (
                f" The definition was forced by the analyst (var `insiders_definition` = `{name}`)."
            )
        return text + (
            f" Until there is, the Insiders are chosen by **{name}** ({chosen['description']})."
        )
    first, last = _date(origins[0]), _date(origins[-1])
    text += (
        f" Each was tried at {len(origins)} monthly origins, from {first} to {last}: with "
        "only the data before the origin it picked as many customers as the clustering's "
        "Insiders cluster then held, and we measured what they spent in the months after, "
        "against the same number of top customers by past net revenue (the one-line rule "
        "anybody could apply; 1.00x = as much as them) and against random groups."
    )
    cluster = choice[choice["definition"] == "insiders_cluster"]
    if not cluster.empty and name != "insiders_cluster":
        c = cluster.iloc[0]
        text += (
            f" The clustering's own Insiders cluster would have taken {_ratio(c['mean_ratio'])} "
            f"of what the top spenders took (mean over the origins; from "
            f"{_ratio(c['min_ratio'])} to {_ratio(c['max_ratio'])})."
        )
    record = (
        f"took {_ratio(chosen['mean_ratio'])} on average, from {_ratio(chosen['min_ratio'])} "
        f"to {_ratio(chosen['max_ratio'])}"
    )
    if _ratio(chosen["min_ratio"]) == _ratio(chosen["max_ratio"]):
        record = f"took {_ratio(chosen['min_ratio'])} at every origin"
    if how == "forced":
        best = choice[choice["evidence_rank"] == 1]
        text += (
            f" The definition was forced by the analyst (var `insiders_definition` = "
            f"`{name}`): it {record}."
        )
        if not best.empty and best.iloc[0]["definition"] != name:
            b = best.iloc[0]
            text += (
                f" The evidence would have pointed to **{b['definition']}** ({b['description']}; "
                f"mean {_ratio(b['mean_ratio'])}, below the top spenders at "
                f"{_int(b['origins_below_top_past_revenue'])} of {_int(b['origins'])} origins)."
            )
        else:
            text += " The evidence points to the same definition."
    elif how == "best_mean_none_qualified":
        below = _int(chosen["origins_below_top_past_revenue"])
        text += (
            " No definition matched the top spenders at every origin. The chosen definition "
            f"(**{name}**) has the best mean: it {record}, below the top spenders at "
            f"{below} of {_int(chosen['origins'])} origins."
        )
    elif how == "no_evaluation_origin":
        text += f" There is not enough history for the evaluation yet: **{name}** is used."
    else:
        text += (
            f" The chosen definition (**{name}**) {record}: it took at least what the top "
            f"spenders took at every one of the {_int(chosen['origins'])} origins, and has the "
            "best mean among the definitions that did (ties go to the simpler rule)."
        )
        if name == "top_past_revenue":
            text += " It is the top-spender rule itself: no cleverer rule beat it every time."
        rivals = choice[
            (choice["mean_ratio"] > chosen["mean_ratio"]) & ~choice["qualifies"].astype(bool)
        ]
        for r in rivals.itertuples():
            text += (
                f" {r.definition} did slightly better on average ({_ratio(r.mean_ratio, 3)} "
                f"against {_ratio(chosen['mean_ratio'], 3)}) but fell below the top spenders "
                f"at {_int(r.origins_below_top_past_revenue)} of {_int(r.origins)} origins "
                f"(lowest {_ratio(r.min_ratio, 3)}), so it is not the safer choice."
            )
    return text


def _removal_text(movement: pd.DataFrame, grace_cycles: int, definition: str) -> str:
    text = (
        "Membership is re-evaluated every month: the chosen definition "
        f"({definition}) picks its members again with the data up to that date. A member "
        f"it no longer picks keeps the membership for {grace_cycles} more re-evaluation(s) "
        "(the grace period, var `membership_grace_cycles`) and leaves at the next one still "
        "not picked; the ledger `insiders.membership_history` keeps every entry and exit "
        "with its reason."
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


def _evidence_text(evidence: pd.DataFrame, evaluation: pd.DataFrame, chosen: pd.Series) -> str:
    name = chosen["definition"]
    text = ""
    mine = evaluation[evaluation["definition"] == name]
    random = evaluation[evaluation["definition"] == "random"].set_index("origin_date")
    if not mine.empty:
        beat = sum(
            1
            for r in mine.itertuples()
            if r.origin_date in random.index
            and r.share_of_horizon_revenue > random.loc[r.origin_date, "share_high"]
        )
        text += (
            f"Out of sample, which is what counts: at each of the {len(mine)} origins the "
            f"Insiders chosen by {name} with only the data before it took between "
            f"{_pct(mine['share_of_horizon_revenue'].min())} and "
            f"{_pct(mine['share_of_horizon_revenue'].max())} of the next months' revenue of "
            "the customers known then"
        )
        if not random.empty:
            shares = random["share_of_horizon_revenue"]
            text += (
                f"; random groups of the same size took {_pct(shares.min())} "
                f"to {_pct(shares.max())} (means of the draws), and "
                f"the Insiders were above the random groups' 90% range at {beat} of {len(mine)} "
                "origins"
            )
        text += (
            f". Against the top spenders they took {_ratio(chosen['mean_ratio'])} on average "
            "(section above, table and chart per origin). Nothing guarantees the future: "
            "this is how the rule did at every origin this year."
        )
    else:
        text += (
            "No out-of-sample evidence yet: there is not enough history for the "
            "rolling-origin evaluation."
        )
    parts = [
        f"{row.metric}: {row.insiders_mean:,.1f} against {row.others_mean:,.1f} for the rest "
        f"(95% interval of the difference {row.ci_low:,.1f} to {row.ci_high:,.1f}, "
        f"Mann-Whitney {_p_value(row.p_value)})"
        for row in evidence[evidence["evidence_kind"] == "insiders_vs_rest"].itertuples()
    ]
    if parts:
        text += " In sample, the Insiders against the rest today: " + "; ".join(parts) + "."
    return text


# --- rendering ------------------------------------------------------------------------


def _profile_table(profile: pd.DataFrame) -> pd.DataFrame:
    columns = [
        "cluster_name",
        "customers",
        "insiders_members",
        "insiders_members_share",
        "share_of_customers",
        "share_of_revenue",
        "median_recency_days",
        "median_frequency",
        "median_monetary",
        "median_avg_ticket",
        "median_return_rate",
    ]
    return profile[[c for c in columns if c in profile]]


def _money(value: Any) -> str:
    return "" if value is None or pd.isna(value) else f"{float(value):,.0f}"


def _forecast_table(forecast: pd.DataFrame) -> pd.DataFrame:
    order = {"insiders": 0, "all_customers": 1}
    data = forecast.sort_values("customer_group", key=lambda c: c.map(order))
    return pd.DataFrame(
        {
            "group": data["customer_group"],
            "customers": data["customers"].map(lambda v: f"{int(v):,}"),
            "forecast": data["expected_revenue"].map(_money),
            "interval": [
                f"{_money(lo)} to {_money(hi)}"
                for lo, hi in zip(data["lower_bound"], data["upper_bound"], strict=True)
            ],
            "naive (last horizon)": data["naive_revenue"].map(_money),
            "trend factor": data["trend_factor"].map(lambda v: f"{v:.2f}"),
            "seasonal factor": data["seasonal_factor"].map(lambda v: f"{v:.2f}"),
            "BG/NBD sum": data["model_revenue"].map(_money),
        }
    )


def _backtest_table(backtest: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "origin": pd.to_datetime(backtest["origin_date"]).dt.strftime("%Y-%m-%d"),
            "Insiders": backtest["customers"],
            "forecast": backtest["forecast_revenue"].map(_money),
            "interval": [
                f"{_money(lo)} to {_money(hi)}"
                for lo, hi in zip(backtest["lower_bound"], backtest["upper_bound"], strict=True)
            ],
            "naive": backtest["naive_revenue"].map(_money),
            "BG/NBD sum": backtest["model_revenue"].map(_money),
            "actual": backtest["actual_revenue"].map(_money),
            "forecast error": backtest["relative_error"].map(_signed_pct),
            "naive error": backtest["naive_relative_error"].map(_signed_pct),
            "BG/NBD error": backtest["model_relative_error"].map(_signed_pct),
            "covered?": backtest["interval_covers_actual"].map(
                lambda v: "n/a" if pd.isna(v) else ("yes" if v else "no")
            ),
            "width (of forecast)": backtest["interval_width_ratio"].map(_pct),
            "errors behind interval": backtest["errors_behind_interval"],
        }
    )


def _choice_table(choice: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "definition": choice["definition"],
            "origins": choice["origins"].map(_int),
            "mean ratio": choice["mean_ratio"].map(lambda v: _ratio(v, 3)),
            "lowest": choice["min_ratio"].map(lambda v: _ratio(v, 3)),
            "highest": choice["max_ratio"].map(lambda v: _ratio(v, 3)),
            "origins below top spenders": choice["origins_below_top_past_revenue"].map(_int),
            "never below": choice["qualifies"].map(lambda v: "yes" if v else "no"),
            "evidence rank": choice["evidence_rank"].map(_int),
            "chosen": [
                f"yes ({how})" if is_chosen else ""
                for is_chosen, how in zip(choice["is_chosen"], choice["chosen_by"], strict=True)
            ],
        }
    )


def _evaluation_table(evaluation: pd.DataFrame, chosen: str) -> pd.DataFrame:
    definitions = evaluation[evaluation["definition"] != "random"]
    order = definitions.drop_duplicates("definition").sort_values("sort_order")["definition"]
    table = definitions.pivot(
        index="origin_date", columns="definition", values="ratio_to_top_past_revenue"
    )[list(order)].map(lambda v: _ratio(v, 3))
    table.columns = [f"{c} (chosen)" if c == chosen else c for c in table.columns]
    shares = evaluation.set_index(["origin_date", "definition"])["share_of_horizon_revenue"]
    table[f"{chosen} share"] = [_pct(shares.get((o, chosen))) for o in table.index]
    random = evaluation[evaluation["definition"] == "random"].set_index("origin_date")
    if not random.empty:
        table["random share (90% of draws)"] = [
            f"{_pct(random.loc[o, 'share_of_horizon_revenue'])} "
            f"({_pct(random.loc[o, 'share_low'])} to {_pct(random.loc[o, 'share_high'])})"
            if o in random.index
            else "n/a"
            for o in table.index
        ]
    table.index = pd.to_datetime(table.index).strftime("%Y-%m-%d")
    return table.rename_axis("origin").reset_index()


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
            out.append(_format(value).to_markdown(index=False, disable_numparse=True) + "\n")
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
        if (
            column.startswith("share_")
            or column.endswith("_share")
            or column
            in (
                "precision",
                "recall",
            )
        ):
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


def _no_data(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes)
    ax.set_xticks([])
    ax.set_yticks([])


def _definition_chart(evaluation: pd.DataFrame, chosen: str) -> bytes:
    plt, fig, ax = _figure(7, 3.8)
    data = evaluation[evaluation["definition"] != "random"]
    if data.empty:
        _no_data(ax, "No evaluation origin yet: not enough history")
    else:
        for definition, group in data.sort_values("sort_order").groupby("definition", sort=False):
            group = group.sort_values("origin_date")
            ax.plot(
                pd.to_datetime(group["origin_date"]).dt.strftime("%Y-%m-%d"),
                group["ratio_to_top_past_revenue"],
                marker="o",
                linewidth=3 if definition == chosen else 1.2,
                color="black" if definition == chosen else None,
                zorder=5 if definition == chosen else 2,
                label=f"{definition} (chosen)" if definition == chosen else definition,
            )
        ax.axhline(1, color="black", linewidth=0.6, linestyle="--")
        ax.tick_params(axis="x", rotation=45)
        ax.set_ylabel("x what the top past spenders took")
        ax.legend(fontsize=7)
    ax.set_title("Each definition's next-months revenue against the top past spenders")
    return _png(plt, fig)


def _forecast_chart(backtest: pd.DataFrame, forecast: pd.DataFrame) -> bytes:
    plt, fig, ax = _figure(7, 3.8)
    labels = list(pd.to_datetime(backtest["origin_date"]).dt.strftime("%Y-%m-%d"))
    points = list(backtest["forecast_revenue"])
    lows, highs = list(backtest["lower_bound"]), list(backtest["upper_bound"])
    now = forecast[forecast["customer_group"] == "insiders"]
    if not now.empty:
        row = now.iloc[0]
        labels.append(f"{_date(row['period_start'])}\n(now)")
        points.append(row["expected_revenue"])
        lows.append(row["lower_bound"])
        highs.append(row["upper_bound"])
    if not labels:
        _no_data(ax, "No forecast yet")
    else:
        points_ = pd.Series(points, dtype=float)
        ax.errorbar(
            labels,
            points_,
            yerr=[points_ - pd.Series(lows, dtype=float), pd.Series(highs, dtype=float) - points_],
            fmt="o",
            capsize=5,
            label="forecast and interval",
        )
        if not backtest.empty:
            ax.scatter(
                labels[: len(backtest)],
                backtest["actual_revenue"],
                color="black",
                marker="s",
                zorder=3,
                label="actual",
            )
            ax.scatter(
                labels[: len(backtest)],
                backtest["naive_revenue"],
                color="grey",
                marker="x",
                zorder=3,
                label="naive",
            )
        ax.tick_params(axis="x", rotation=45)
        ax.yaxis.set_major_formatter(lambda value, _: f"{value:,.0f}")
        ax.legend(fontsize=8)
    ax.set_title("The Insiders' next-months revenue: forecast at each origin vs actual (GBP)")
    return _png(plt, fig)
