"""Acceptance on the real UCI Online Retail data in ../shared (never skipped in CI).

The expected figures are not typed in: they are recomputed here with plain DuckDB SQL
straight from the CSV files, applying the business rules as the issue states them.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import duckdb
import pytest

from orchestration.warehouse import load_files
from tests.conftest import SHARED_BY_DAY, build, query, scalar

EXCLUDED_STOCK_CODES = (
    "POST", "D", "DOT", "M", "S", "AMAZONFEE", "m", "DCGSSBOY", "DCGSSGIRL", "PADS", "B", "CRUK",
)  # fmt: skip
EXCLUDED_COUNTRIES = ("European Community", "Unspecified")
EXCLUDED_CUSTOMERS = ("16446",)
PRICE_FLOOR = 0.04
# Every raw line, typed as the issue states the files: the base of each independent figure.
TYPED_LINES = f"""
    select
        StockCode as stock,
        cast(Quantity as integer) as q,
        cast(UnitPrice as decimal(18, 4)) as p,
        cast(InvoiceDate as timestamp) as t,
        nullif(split_part(CustomerID, '.', 1), '') as c,
        Country as country,
        InvoiceNo as inv
    from read_csv('{SHARED_BY_DAY}/*.csv', header = true, all_varchar = true)
"""


def independent_customer_totals(as_of: date | None) -> tuple[int, float, float]:
    """(customers, gross revenue, monetary) straight from the CSV files."""
    con = duckdb.connect()
    as_of_sql = (
        f"date '{as_of.isoformat()}'" if as_of else "(select cast(max(t) as date) + 1 from typed)"
    )
    return con.execute(
        f"""
        with typed as ({TYPED_LINES}),
        kept as (
            select * from typed
            where c is not null
              and c not in {EXCLUDED_CUSTOMERS!r}
              and country not in {EXCLUDED_COUNTRIES!r}
              and stock not in {EXCLUDED_STOCK_CODES!r}
              and p >= {PRICE_FLOOR}
              and t < {as_of_sql}
        ),
        customers as (
            select c,
                sum(q * p) filter (where q >= 0) as gross,
                sum(q * p) as net
            from kept group by c
            having count(*) filter (where q >= 0) > 0
        )
        select count(*), sum(gross), sum(net) from customers
        """.replace(",)", ")")
    ).fetchone()


@pytest.fixture(scope="module")
def full_warehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    assert SHARED_BY_DAY.is_dir(), f"acceptance data missing: {SHARED_BY_DAY}"
    warehouse = tmp_path_factory.mktemp("full") / "warehouse.duckdb"
    report = load_files(warehouse, [SHARED_BY_DAY])
    assert not report.failed, [str(e) for e in report.failed]
    assert len(report.loaded) == 305
    build(warehouse)
    return warehouse


def test_every_raw_line_is_loaded_or_quarantined(full_warehouse):
    direct = (
        duckdb.connect()
        .execute(
            f"select count(*) from read_csv('{SHARED_BY_DAY}/*.csv', header = true,"
            " all_varchar = true)"
        )
        .fetchone()[0]
    )
    raw_lines, loaded, quarantined = query(
        full_warehouse,
        "select sum(raw_lines), sum(loaded_rows), sum(quarantined_rows) from raw.loaded_files",
    )[0]
    assert direct == raw_lines == 541_909
    assert loaded + quarantined == raw_lines
    assert scalar(full_warehouse, "select count(*) from raw.transactions") == loaded
    assert (
        scalar(full_warehouse, "select count(distinct CustomerID) from raw.transactions") == 4_372
    )
    assert (
        scalar(full_warehouse, "select count(*) from raw.transactions where InvoiceNo like 'C%'")
        == 9_288
    )


def test_customer_mart_equals_an_independent_computation(full_warehouse):
    customers, gross, monetary = independent_customer_totals(None)
    assert query(
        full_warehouse,
        "select count(*), sum(gross_revenue), sum(monetary) from marts.dim_customers",
    )[0] == (customers, gross, monetary)
    assert scalar(full_warehouse, "select max(as_of) from marts.dim_customers") == date(
        2011, 12, 10
    )


def test_kept_and_excluded_lines_add_up(full_warehouse):
    loaded, kept, excluded = query(
        full_warehouse,
        """
        select (select count(*) from raw.transactions),
               (select count(*) from marts.fct_transactions),
               (select sum(excluded_lines) from marts.fct_exclusion_rule_costs)
        """,
    )[0]
    assert kept + excluded == loaded
    costs = dict(
        query(
            full_warehouse,
            "select exclusion_rule, excluded_lines from marts.fct_exclusion_rule_costs",
        )
    )
    assert set(costs) == {
        "excluded_customer", "excluded_country", "excluded_stock_code", "unit_price_below_floor",
    }  # fmt: skip


def test_a_past_as_of_on_the_full_data(full_warehouse, tmp_path):
    as_of = date(2011, 6, 1)
    build(full_warehouse, as_of=as_of.isoformat())
    try:
        customers, gross, monetary = independent_customer_totals(as_of)
        assert query(
            full_warehouse,
            "select count(*), sum(gross_revenue), sum(monetary), max(as_of)"
            " from marts.dim_customers",
        )[0] == (customers, gross, monetary, as_of)
    finally:
        build(full_warehouse)
