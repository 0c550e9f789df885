"""Acceptance: the whole Dagster graph on the real data in ../shared (never skipped)."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from orchestration.cli import main
from tests.conftest import SHARED_BY_DAY, customers_without_one_segment, query, scalar


@pytest.fixture(scope="module")
def graph_warehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    assert SHARED_BY_DAY.is_dir(), f"acceptance data missing: {SHARED_BY_DAY}"
    # A folder that does not exist yet: the first step to open it may be a dbt one.
    warehouse = tmp_path_factory.mktemp("graph") / "new" / "warehouse.duckdb"
    assert main(["run", "--warehouse", str(warehouse), "--source", str(SHARED_BY_DAY)]) == 0
    return warehouse


def test_every_customer_has_exactly_one_segment(graph_warehouse):
    customers = scalar(graph_warehouse, "select count(*) from marts.dim_customers")
    assert customers > 4000
    assert customers_without_one_segment(graph_warehouse) == 0


def test_insiders_are_a_small_valuable_group(graph_warehouse, capsys):
    share, revenue_share = query(
        graph_warehouse,
        """
        select avg(s.is_insider::int),
            sum(d.monetary) filter (where s.is_insider) / sum(d.monetary)
        from marts.dim_customers as d join ml.customer_segments as s using (customer_id)
        """,
    )[0]
    assert 0.03 <= share <= 0.25
    assert revenue_share > share  # they bring more than their head count
    chosen = query(
        graph_warehouse,
        "select space, algorithm, k, silhouette from ml.model_selection where is_chosen",
    )
    assert len(chosen) == 1 and 4 <= chosen[0][2] <= 12


def test_the_insiders_spend_significantly_more(graph_warehouse):
    rows = query(
        graph_warehouse,
        "select metric, ci_low, p_value, is_significantly_higher from insiders.evidence "
        "where evidence_kind = 'insiders_vs_rest'",
    )
    assert {r[0] for r in rows} == {"monetary", "frequency"}
    assert all(r[1] > 0 and r[2] < 0.05 and r[3] for r in rows)


def test_the_membership_ledger_covers_every_monthly_re_evaluation(graph_warehouse):
    movement = query(
        graph_warehouse,
        "select evaluation_date, members, entered, left_program, stayed, qualifying "
        "from insiders.membership_movement order by 1",
    )
    assert len(movement) >= 12  # a year of monthly re-evaluations
    for _, members, entered, _, stayed, _ in movement:
        assert members == stayed + entered
    # Members after a re-evaluation = members before + entered - left.
    for before, after in itertools.pairwise(movement):
        assert after[1] == before[1] + after[2] - after[3]
    current = movement[-1]
    insiders = scalar(graph_warehouse, "select count(*) from insiders.members")
    assert current[5] == insiders  # qualifying today = the current labels
    assert current[1] >= insiders  # plus members in their grace period
    assert (
        scalar(graph_warehouse, "select count(*) from insiders.members where member_since is null")
        == 0
    )
    left = scalar(
        graph_warehouse,
        "select count(*) from insiders.membership_history where exit_reason is not null",
    )
    assert left > 0 and left == sum(row[3] for row in movement)


def test_the_time_backtest_beats_random_groups(graph_warehouse):
    rows = {
        group: (share, low, high, at_least)
        for group, share, low, high, at_least in query(
            graph_warehouse,
            """
            select customer_group, share_of_holdout_revenue, ci_low, ci_high,
                random_groups_at_least_as_good
            from insiders.evidence where evidence_kind = 'time_backtest'
            """,
        )
    }
    assert set(rows) == {"insiders", "random", "top_monetary"}
    insiders, random, top = rows["insiders"], rows["random"], rows["top_monetary"]
    assert insiders[0] > random[2]  # above the random groups' interval
    assert insiders[3] < 0.05
    # The reference figure: the top customers by past monetary take a large share.
    assert 0.3 < top[0] < 0.8
    size, cutoff = query(
        graph_warehouse,
        "select insiders, cutoff_date from insiders.evidence "
        "where evidence_id = 'time_backtest:insiders'",
    )[0]
    assert size == scalar(graph_warehouse, "select count(*) from ml.backtest_members")
    assert str(cutoff) == "2011-09-10"  # three months before the as-of 2011-12-10


def test_the_forecast_is_backtested_and_has_an_interval(graph_warehouse):
    rows = {
        (period, group): (expected, low, high, actual, error)
        for period, group, expected, low, high, actual, error in query(
            graph_warehouse,
            """
            select period, customer_group, expected_revenue, lower_bound, upper_bound,
                actual_revenue, relative_error
            from insiders.revenue_forecast
            """,
        )
    }
    expected, low, high, *_ = rows[("forecast", "insiders")]
    assert expected > 0 and 0 < low < high
    per_customer = scalar(
        graph_warehouse,
        "select sum(expected_revenue) from insiders.customer_forecast where is_insider",
    )
    assert abs(per_customer - expected) < 1e-6 * expected
    _, _, _, actual, error = rows[("backtest", "insiders")]
    assert actual > 0 and error is not None and -1 < error < 1
    assert rows[("forecast", "all")][0] == pytest.approx(
        rows[("forecast", "insiders")][0] + rows[("forecast", "others")][0]
    )


def test_the_report_answers_the_nine_questions(graph_warehouse):
    folder = graph_warehouse.parent / "reports"
    html = (folder / "insiders_report.html").read_text()
    markdown = (folder / "insiders_report.md").read_text()
    from models_py.report import QUESTIONS

    for question in QUESTIONS:
        assert question in markdown
        assert question in html
    insiders = scalar(graph_warehouse, "select count(*) from insiders.members")
    assert f"{insiders:,}" in markdown
    assert "Backtest:" in markdown and "Time backtest:" in markdown
    assert html.count("data:image/png;base64,") >= 6
