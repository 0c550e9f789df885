"""The report says what the marts say: built from small hand-made marts, read as text."""

from __future__ import annotations

import statistics
from decimal import Decimal

import pandas as pd
import pytest

from models_py.report import DEFINITION_SECTION, QUESTIONS, REPORT_TABLES, build_report

AS_OF = pd.Timestamp("2011-12-10")
ORIGINS = [pd.Timestamp("2011-07-10"), pd.Timestamp("2011-08-10"), pd.Timestamp("2011-09-10")]
DESCRIPTIONS = {
    "insiders_cluster": "the clustering's Insiders cluster",
    "top_past_revenue": "the customers with the highest net revenue before the date",
    "expected_revenue": "the highest expected revenue over the horizon",
}
# Ratio to the top past spenders per origin: the cluster trails, expected_revenue is
# better on average but dips below once.
RATIOS = {
    "insiders_cluster": [0.70, 0.80, 0.90],
    "top_past_revenue": [1.0, 1.0, 1.0],
    "expected_revenue": [1.05, 0.98, 1.04],
}
# Per origin: forecast, naive, BG/NBD sum, actual.
FORECASTS = [
    (1000.0, 1100.0, 700.0, 1250.0),
    (1500.0, 1300.0, 900.0, 1400.0),
    (2000.0, 1800.0, 1200.0, 2300.0),
]


def _evaluation() -> pd.DataFrame:
    rows = []
    for i, origin in enumerate(ORIGINS):
        for order, (definition, ratios) in enumerate(RATIOS.items(), start=1):
            rows.append(
                {
                    "origin_date": origin,
                    "horizon_end": origin + pd.DateOffset(months=3),
                    "definition": definition,
                    "description": DESCRIPTIONS[definition],
                    "sort_order": order,
                    "is_baseline_random": False,
                    "members": 10,
                    "horizon_revenue": 600 * ratios[i],
                    "share_of_horizon_revenue": 0.6 * ratios[i],
                    "share_low": None,
                    "share_high": None,
                    "ratio_to_top_past_revenue": ratios[i],
                }
            )
        rows.append(
            {
                "origin_date": origin,
                "horizon_end": origin + pd.DateOffset(months=3),
                "definition": "random",
                "description": "random customers of the same number",
                "sort_order": 99,
                "is_baseline_random": True,
                "members": 10,
                "horizon_revenue": 150.0,
                "share_of_horizon_revenue": 0.15,
                "share_low": 0.10,
                "share_high": 0.21,
                "ratio_to_top_past_revenue": 0.25,
            }
        )
    return pd.DataFrame(rows)


def _choice(chosen: str, chosen_by: str) -> pd.DataFrame:
    rows = []
    ranked = sorted(RATIOS, key=lambda d: (min(RATIOS[d]) < 1, -statistics.mean(RATIOS[d])))
    for order, (definition, ratios) in enumerate(RATIOS.items(), start=1):
        rows.append(
            {
                "definition": definition,
                "description": DESCRIPTIONS[definition],
                "sort_order": order,
                "origins": len(ORIGINS),
                "origins_evaluated": len(ORIGINS),
                "mean_ratio": Decimal(str(round(statistics.mean(ratios), 6))),
                "min_ratio": min(ratios),
                "max_ratio": max(ratios),
                "origins_below_top_past_revenue": sum(r < 1 for r in ratios),
                "mean_share": 0.6 * statistics.mean(ratios),
                "qualifies": min(ratios) >= 1,
                "evidence_rank": ranked.index(definition) + 1,
                "is_chosen": definition == chosen,
                "chosen_by": chosen_by if definition == chosen else None,
                "as_of": AS_OF,
            }
        )
    return pd.DataFrame(rows)


def _forecast_evaluation() -> pd.DataFrame:
    rows = []
    for origin, (forecast, naive, model, actual) in zip(ORIGINS, FORECASTS, strict=True):
        rows.append(
            {
                "origin_date": origin,
                "horizon_end": origin + pd.DateOffset(months=3),
                "definition": "top_past_revenue",
                "customers": 10,
                "forecast_revenue": forecast,
                "lower_bound": forecast * 0.8,
                "upper_bound": forecast * 1.25,
                "naive_revenue": Decimal(str(naive)),
                "model_revenue": model,
                "trend_factor": forecast / naive,
                "seasonal_factor": 1.0,
                "errors_behind_interval": 0,
                "actual_revenue": actual,
                "relative_error": forecast / actual - 1,
                "naive_relative_error": naive / actual - 1,
                "model_relative_error": model / actual - 1,
                "interval_covers_actual": forecast * 0.8 <= actual <= forecast * 1.25,
                "interval_width_ratio": 0.45,
            }
        )
    return pd.DataFrame(rows)


def _revenue_forecast(season_observed: bool, with_origins: bool = True) -> pd.DataFrame:
    """The mart's two rows; the Insiders' row carries the record over the origins that
    dbt summarises from forecast_evaluation (medians of the absolute relative errors)."""
    n = len(FORECASTS) if with_origins else 0
    record = {
        "evaluation_origins": n,
        "origins_covered": n,
        "median_abs_relative_error": statistics.median(abs(f / a - 1) for f, _, _, a in FORECASTS)
        if n
        else None,
        "naive_median_abs_relative_error": statistics.median(
            abs(v / a - 1) for _, v, _, a in FORECASTS
        )
        if n
        else None,
        "model_median_abs_relative_error": statistics.median(
            abs(m / a - 1) for _, _, m, a in FORECASTS
        )
        if n
        else None,
    }
    rows = []
    for group, customers, expected in (("insiders", 10, 2400.0), ("all_customers", 40, 3600.0)):
        rows.append(
            {
                "customer_group": group,
                "definition": "top_past_revenue" if group == "insiders" else group,
                "customers": customers,
                "period_start": AS_OF,
                "period_end": AS_OF + pd.DateOffset(months=3),
                "horizon_days": 91,
                "expected_revenue": expected,
                "lower_bound": expected * 0.75,
                "upper_bound": expected * 1.3,
                "naive_revenue": Decimal("2300.00") if group == "insiders" else 3500.0,
                "trend_factor": 1.1,
                "seasonal_factor": 0.9 if season_observed else 1.0,
                "season_observed": season_observed,
                "model_revenue": expected * 0.6,
                "errors_behind_interval": 3,
                "interval_method": "rolling_max_error",
                **(record if group == "insiders" else dict.fromkeys(record)),
            }
        )
    return pd.DataFrame(rows)


def make_tables(
    chosen: str = "top_past_revenue",
    chosen_by: str = "best_evidence",
    season_observed: bool = True,
    with_origins: bool = True,
) -> dict[str, pd.DataFrame]:
    profile = pd.DataFrame(
        {
            "cluster_id": [0, 1],
            "cluster_name": ["Insiders", "Big baskets"],
            "is_insider": [True, False],
            "as_of": [AS_OF, AS_OF],
            "customers": [10, 30],
            "insiders_members": [7, 3],
            "insiders_members_share": [0.7, 0.1],
            "share_of_customers": [0.25, 0.75],
            "share_of_revenue": [0.6, 0.4],
            "median_recency_days": [10.0, 60.0],
            "median_frequency": [8.0, 2.0],
            "median_monetary": [3000.0, 500.0],
            "median_avg_ticket": [400.0, 300.0],
            "median_return_rate": [0.01, 0.0],
            "mean_recency_days": [20.0, 80.0],
            "recency_vs_base": [0.3, 1.2],
            "frequency_vs_base": [2.5, 0.5],
            "monetary_vs_base": [3.0, 0.4],
            "ticket_vs_base": [1.2, 0.9],
            "return_rate_vs_base": [0.5, 1.1],
        }
    )
    members = pd.DataFrame(
        {
            "customer_id": [f"c{i}" for i in range(10)],
            "cluster_id": [0] * 7 + [1] * 3,
            "cluster_name": ["Insiders"] * 7 + ["Big baskets"] * 3,
            "country": ["United Kingdom"] * 10,
            "recency_days": list(range(10)),
            "frequency": list(range(1, 11)),
            "monetary": [1000.0 - 10 * i for i in range(10)],
            "member_since": [pd.Timestamp("2011-08-10")] * 10,
            "member_rank": list(range(1, 11)),
            "definition": [chosen] * 10,
        }
    )
    kpis = pd.DataFrame(
        [
            {
                "as_of": AS_OF,
                "insiders": 10,
                "customers": 40,
                "share_of_customers": 0.25,
                "share_of_customer_revenue": 0.7,
                "share_of_all_revenue": 0.6,
                "share_of_items": 0.65,
                "insiders_avg_ticket": 600.0,
                "others_avg_ticket": 250.0,
            }
        ]
    )
    evidence = pd.DataFrame(
        [
            {
                "evidence_kind": "insiders_vs_rest",
                "metric": metric,
                "insiders_mean": mean,
                "others_mean": mean / 4,
                "ci_low": mean / 2,
                "ci_high": mean,
                "p_value": 0.001,
            }
            for metric, mean in (("monetary", 6000.0), ("frequency", 12.0))
        ]
    )
    evaluation = _evaluation()
    forecast_evaluation = _forecast_evaluation()
    if not with_origins:
        evaluation, forecast_evaluation = evaluation.iloc[0:0], forecast_evaluation.iloc[0:0]
    tables = {
        "kpis": kpis,
        "members": members,
        "cluster_profile": profile,
        "cluster_actions": pd.DataFrame(
            {
                "cluster_name": ["Insiders", "Big baskets"],
                "customers": [10, 30],
                "share_of_revenue": [0.6, 0.4],
                "recommended_action": ["Invite to the program", "Volume pricing"],
                "why": ["They bring most revenue", "They buy rarely"],
            }
        ),
        "eligibility_rules": pd.DataFrame(
            {
                "rule_id": [1],
                "rule": ["frequency > 4.50"],
                "customers": [11],
                "precision": [0.8],
                "recall": [0.9],
            }
        ),
        "evidence": evidence,
        "definition_evaluation": evaluation,
        "definition_choice": _choice(chosen, chosen_by),
        "revenue_forecast": _revenue_forecast(season_observed, with_origins),
        "forecast_evaluation": forecast_evaluation,
        "membership_movement": pd.DataFrame(
            {
                "evaluation_date": ORIGINS,
                "members": [8, 9, 10],
                "entered": [8, 2, 1],
                "left_program": [0, 1, 0],
                "stayed": [0, 7, 9],
                "qualifying": [8, 9, 10],
                "in_grace": [0, 0, 1],
            }
        ),
        "monthly_revenue": pd.DataFrame(
            {
                "month_start": pd.to_datetime(["2011-10-01", "2011-11-01"]),
                "insiders_revenue": [Decimal("700.5"), Decimal("800.25")],
                "others_revenue": [300.0, 350.0],
            }
        ),
        "customer_embedding": pd.DataFrame(
            {"customer_id": ["c0", "x1"], "x": [0.0, 1.0], "y": [1.0, 0.0], "cluster_id": [0, 1]}
        ),
    }
    assert set(tables) == set(REPORT_TABLES)
    return tables


@pytest.fixture(scope="module")
def report():
    return build_report(make_tables())


def _flat(text: str) -> str:
    return " ".join(text.split())


def test_all_nine_questions_are_answered_in_both_renderings(report):
    for question in QUESTIONS:
        assert question in report.markdown
        assert question in report.html
        assert report.answers[question].strip()
    assert list(report.answers) == list(QUESTIONS)
    assert DEFINITION_SECTION in report.markdown
    assert report.html.count("data:image/png;base64,") == len(report.charts) == 7
    for name in report.charts:
        assert f"]({name})" in report.markdown


def test_the_members_of_the_chosen_definition_are_who_and_how_many(report):
    first = report.answers[QUESTIONS[0]]
    assert "The 10 customers chosen by the definition **top_past_revenue**" in first
    assert DESCRIPTIONS["top_past_revenue"] in first
    assert "10 of 40 customers, 25.0% of the customer base" in report.answers[QUESTIONS[1]]
    # First ten in rank order.
    assert report.markdown.index("| 1 ") < report.markdown.index("| 10 ")


def test_the_definition_section_names_the_choice_its_ratio_and_the_cluster(report):
    section = report.definition_section
    for description in DESCRIPTIONS.values():
        assert description in section
    assert "The chosen definition (**top_past_revenue**) took 1.00x at every origin" in section
    cluster_mean = statistics.mean(RATIOS["insiders_cluster"])
    assert (
        f"The clustering's own Insiders cluster would have taken {cluster_mean:.2f}x of what "
        "the top spenders took" in section
    )
    # A rival with a better mean but a dip below the top spenders is explained away.
    assert "expected_revenue did slightly better on average" in section
    assert "at 1 of 3 origins" in section
    # The origin x definition table, with the random groups' interval.
    assert "top_past_revenue (chosen)" in report.markdown
    assert "15.0% (10.0% to 21.0%)" in report.markdown
    assert "0.700x" in report.markdown


def test_forced_definition_says_the_analyst_forced_it_and_where_evidence_pointed():
    report = build_report(make_tables(chosen="insiders_cluster", chosen_by="forced"))
    section = _flat(report.definition_section)
    assert "forced by the analyst (var `insiders_definition` = `insiders_cluster`)" in section
    assert "The evidence would have pointed to **top_past_revenue**" in section
    assert (
        "The 10 customers chosen by the definition **insiders_cluster**"
        in (report.answers[QUESTIONS[0]])
    )


def test_none_qualified_says_no_definition_matched_the_top_spenders():
    report = build_report(
        make_tables(chosen="expected_revenue", chosen_by="best_mean_none_qualified")
    )
    section = report.definition_section
    assert "No definition matched the top spenders at every origin" in section
    assert "(**expected_revenue**) has the best mean" in section


def test_without_origins_it_says_there_is_not_enough_history():
    report = build_report(
        make_tables(chosen="insiders_cluster", chosen_by="no_evaluation_origin", with_origins=False)
    )
    section = report.definition_section
    assert "not enough history for the evaluation yet" in section
    assert "No out-of-sample evidence yet" in report.answers[QUESTIONS[7]]
    assert len(report.charts) == 7


def test_forecast_quotes_median_errors_computed_from_the_origins(report):
    five = report.answers[QUESTIONS[4]]
    forecast_error = statistics.median(abs(f / a - 1) for f, _, _, a in FORECASTS)
    naive_error = statistics.median(abs(n / a - 1) for _, n, _, a in FORECASTS)
    model_error = statistics.median(abs(m / a - 1) for _, _, m, a in FORECASTS)
    assert f"median absolute relative error of {forecast_error:.1%}" in five
    assert f"against {naive_error:.1%} for the naive forecast" in five
    assert f"missed by a median of {model_error:.1%}" in five
    assert "**GBP 2,400**" in five and "between 1,800 and 3,120" in five
    assert "All 40 customers: 3,600" in five
    assert "2,300 for the Insiders" in five  # the naive forecast beside
    assert "used only to split the forecast among customers" in five
    covered = sum(0.8 * f <= a <= 1.25 * f for f, _, _, a in FORECASTS)
    assert f"covered the actual at {covered} of 3 origins" in five
    # The per-origin table.
    assert "1,250" in report.markdown and "-20.0%" in report.markdown


def test_forecast_says_a_full_yearly_cycle_has_not_been_observed(report):
    five = report.answers[QUESTIONS[4]]
    assert "a full yearly cycle has not been observed" in five
    assert "could not be backtested" in five
    assert "It is applied here" in five
    unseen = build_report(make_tables(season_observed=False)).answers[QUESTIONS[4]]
    assert "a full yearly cycle has not been observed" in unseen
    assert "It is not applied here (factor 1)" in unseen


def test_clusters_still_describe_the_base_with_the_insiders_in_each(report):
    three = report.answers[QUESTIONS[2]]
    assert "The clustering still describes the whole base" in three
    assert "7 in Insiders, 3 in Big baskets" in three
    assert "70.0%" in report.markdown  # insiders_members_share as a percentage


def test_no_trace_of_the_old_single_cut_off_backtest(report):
    for old in ("Time backtest", "Backtest:", "calibrated", "cut-off"):
        assert old not in report.markdown


def test_out_of_sample_evidence_against_random_groups(report):
    eight = report.answers[QUESTIONS[7]]
    assert "above the random groups' 90% range at 3 of 3 origins" in eight
    assert "In sample, the Insiders against the rest today" in eight


def test_evidence_and_rules_of_the_chosen_members_are_worded_as_such(report):
    assert "In sample, the Insiders against the rest today" in report.answers[QUESTIONS[7]]
    assert "The same membership in readable rules" in report.answers[QUESTIONS[5]]


def test_a_missing_mart_is_named():
    tables = make_tables()
    del tables["definition_choice"]
    with pytest.raises(ValueError, match="definition_choice"):
        build_report(tables)
