"""Real dbt builds over generated data: rules, guest policies, as-of, layouts."""

from __future__ import annotations

import csv
from datetime import date
from pathlib import Path

import pytest

from models_py.demo_data import write_demo_data
from orchestration.cli import main
from orchestration.dbt_runner import run_dbt
from orchestration.warehouse import load_files
from tests.acceptance.test_full_data import PRICE_FLOOR
from tests.conftest import build, copy_warehouse, query, scalar
from tests.test_dbt_vars import customer_totals


def test_demo_build_reconciles_and_quarantines_the_bad_lines(demo_warehouse):
    raw_lines, loaded, quarantined = query(
        demo_warehouse,
        "select sum(raw_lines), sum(loaded_rows), sum(quarantined_rows) from raw.loaded_files",
    )[0]
    assert quarantined == 5
    assert raw_lines == loaded + quarantined
    # As many customers as the raw rows have identified customers with a kept purchase.
    customers, _, _ = customer_totals(demo_warehouse, PRICE_FLOOR)
    assert customers > 100  # the demo has 300; guests and excluded lines make no customer
    assert scalar(demo_warehouse, "select count(*) from marts.dim_customers") == customers
    kept, excluded = query(
        demo_warehouse,
        "select (select count(*) from marts.fct_transactions),"
        " (select count(*) from marts.fct_transaction_exclusions)",
    )[0]
    assert kept + excluded == loaded


def test_each_rule_is_charged_for_the_lines_it_removes(demo_warehouse):
    costs = dict(
        query(
            demo_warehouse,
            "select exclusion_rule, excluded_lines from marts.fct_exclusion_rule_costs",
        )
    )
    assert {"excluded_stock_code", "excluded_country", "unit_price_below_floor"} <= set(costs)
    # POST lines are removed by the stock-code rule, never kept.
    assert (
        scalar(
            demo_warehouse, "select count(*) from marts.fct_transactions where stock_code = 'POST'"
        )
        == 0
    )
    assert (
        scalar(
            demo_warehouse,
            "select count(*) from marts.fct_transaction_exclusions"
            " where stock_code = 'POST' and exclusion_rule = 'excluded_stock_code'",
        )
        > 0
    )
    assert scalar(demo_warehouse, "select min(unit_price) from marts.fct_transactions") >= 0.04


def test_dim_customers_matches_its_definition(demo_warehouse):
    """Recompute a few features from fct_transactions in plain SQL."""
    mismatches = scalar(
        demo_warehouse,
        """
        with lines as (
            select f.*
            from marts.fct_transactions as f
            where customer_id is not null
              and invoice_at < (select max(as_of) from marts.dim_customers)
        ),
        expected as (
            select customer_id,
                count(distinct invoice_no) filter (where quantity >= 0) as frequency,
                sum(revenue) filter (where quantity >= 0) as gross_revenue,
                coalesce(-sum(revenue) filter (where quantity < 0), 0) as returns_value
            from lines group by customer_id
            having count(*) filter (where quantity >= 0) > 0
        )
        select count(*)
        from expected full join marts.dim_customers as d using (customer_id)
        where d.frequency is distinct from expected.frequency
           or d.gross_revenue is distinct from expected.gross_revenue
           or d.returns_value is distinct from expected.returns_value
           or d.monetary is distinct from expected.gross_revenue - expected.returns_value
        """,
    )
    assert mismatches == 0
    # Guests make no customer row under the default policy, but stay in store totals.
    assert scalar(demo_warehouse, "select count(*) from marts.dim_customers where is_guest") == 0
    assert (
        scalar(
            demo_warehouse, "select count(*) from marts.fct_transactions where customer_id is null"
        )
        > 0
    )


def test_best_rfm_customers_are_recent_frequent_big_spenders(demo_warehouse):
    champions, others = query(
        demo_warehouse,
        """
        select
            avg(monetary) filter (where rfm_segment = 'Champions'),
            avg(monetary) filter (where rfm_segment = 'Hibernating')
        from marts.dim_customers
        """,
    )[0]
    assert champions > others


@pytest.fixture
def copied_warehouse(demo_warehouse, tmp_path) -> Path:
    return copy_warehouse(demo_warehouse, tmp_path / "copy.duckdb")


def test_per_invoice_guest_policy_makes_one_guest_customer_per_invoice(
    demo_warehouse, copied_warehouse
):
    build(copied_warehouse, guest_policy="per_invoice")
    guests = scalar(copied_warehouse, "select count(*) from marts.dim_customers where is_guest")
    guest_invoices = scalar(
        demo_warehouse,
        """
        select count(distinct invoice_no) from marts.fct_transactions
        where is_guest and not is_return
        """,
    )
    assert guests == guest_invoices > 0
    assert (
        scalar(
            copied_warehouse,
            "select count(*) from marts.dim_customers"
            " where is_guest and customer_id not like 'guest-%'",
        )
        == 0
    )
    identified = scalar(copied_warehouse, "select count(*) from marts.dim_customers")
    assert identified - guests == scalar(demo_warehouse, "select count(*) from marts.dim_customers")


def test_unknown_guest_policy_fails_the_build(copied_warehouse, capsys):
    assert not run_dbt("build", copied_warehouse, {"guest_policy": "ignore"})
    assert "guest_policy must be 'exclude' or 'per_invoice'" in capsys.readouterr().out


def _split_by_date(source: Path, cutoff: date, before: Path, after: Path) -> None:
    with source.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    header, body = rows[0], rows[1:]
    parts: dict[Path, list[list[str]]] = {before: [header], after: [header]}
    for row in body:
        target = before if len(row) == 8 and row[4][:10] < cutoff.isoformat() else after
        parts[target].append(row)
    for path, part in parts.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="", encoding="utf-8") as fh:
            csv.writer(fh).writerows(part)


def test_a_past_as_of_gives_what_the_warehouse_said_then(tmp_path):
    """Build as of D with only the lines before D, and with everything: same customers."""
    demo = write_demo_data(tmp_path / "src", customers=150, seed=11, layout="daily")
    cutoff = date(2011, 7, 1)
    before, after = tmp_path / "parts" / "before.csv", tmp_path / "parts" / "after.csv"
    _split_by_date(demo.path, cutoff, before, after)

    then = tmp_path / "then.duckdb"
    now = tmp_path / "now.duckdb"
    load_files(then, [before])
    load_files(now, [before, after])
    build(then)  # default as_of: the day after the last line before the cutoff
    as_of = scalar(then, "select max(as_of) from marts.dim_customers")
    assert as_of <= cutoff
    assert main(["build", "--warehouse", str(now), "--as-of", as_of.isoformat()]) == 0

    columns = "* exclude (as_of)"
    then_rows = query(then, f"select {columns} from marts.dim_customers order by customer_id")
    now_rows = query(now, f"select {columns} from marts.dim_customers order by customer_id")
    assert len(then_rows) > 50
    assert then_rows == now_rows
    assert scalar(now, "select max(last_purchase_at) from marts.dim_customers").date() < as_of
    assert scalar(now, "select max(invoice_date) from marts.fct_transactions") > as_of


def test_the_three_layouts_give_the_same_customers(tmp_path):
    results = {}
    for layout in ("kaggle", "uci", "daily"):
        demo = write_demo_data(tmp_path / layout, customers=120, seed=5, layout=layout)
        warehouse = tmp_path / f"{layout}.duckdb"
        report = load_files(warehouse, [demo.path])
        assert report.loaded[0].layout == layout
        build(warehouse)
        results[layout] = query(
            warehouse,
            """
            select customer_id, country, frequency, recency_days, tenure_days, monetary,
                returns_value, distinct_products, r_score, f_score, m_score, rfm_segment
            from marts.dim_customers order by customer_id
            """,
        )
    assert len(results["kaggle"]) > 50
    assert results["kaggle"] == results["uci"] == results["daily"]


def test_run_without_data_uses_demo_data_and_says_so(tmp_path, capsys):
    """No source and nothing loaded: the run says SYNTHETIC, builds the demo in its own
    warehouse (demo/ beside the real one) and leaves the real warehouse without data."""
    warehouse = tmp_path / "fresh" / "warehouse.duckdb"
    assert main(["run", "--warehouse", str(warehouse)]) == 0
    out = capsys.readouterr().out
    assert "SYNTHETIC demo data" in out
    demo = warehouse.parent / "demo" / warehouse.name
    customers, _, _ = customer_totals(demo, PRICE_FLOOR)
    assert customers > 500  # of the 1,000 synthetic customers, those with a kept purchase
    assert scalar(demo, "select count(*) from marts.dim_customers") == customers
    assert scalar(demo, "select bool_and(is_synthetic) from raw.loaded_files")
    if warehouse.exists():
        assert scalar(warehouse, "select count(*) from raw.loaded_files") == 0
