"""Acceptance: the whole Dagster graph on the real data in ../shared (never skipped)."""

from __future__ import annotations

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
        "select metric, ci_low, p_value, is_significantly_higher from insiders.evidence",
    )
    assert {r[0] for r in rows} == {"monetary", "frequency"}
    assert all(r[1] > 0 and r[2] < 0.05 and r[3] for r in rows)
