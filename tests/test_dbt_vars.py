"""The dbt vars: a hostile value never reaches SQL, and each business var does what it
says, checked against figures computed here from the loaded rows (``raw.transactions``)
with plain DuckDB SQL, never from the models' output.

Every var is checked where it enters (macros ``number_var`` and ``date_var`` in
``macros/business_rules.sql``, the name check of ``insiders_definition`` in
``definition_choice.sql``, ``BuildSettings.dbt_vars()`` for the Dagster run config).
dbt renders every model when it parses the project, so a refused value stops the
invocation before any statement runs: the warehouse file is left byte for byte as it
was, and no table named ``pwned`` can appear.
"""

from __future__ import annotations

import calendar
import hashlib
from datetime import date
from pathlib import Path

import pytest

from orchestration.dbt_runner import run_dbt
from tests.acceptance.test_full_data import (
    EXCLUDED_COUNTRIES,
    EXCLUDED_CUSTOMERS,
    EXCLUDED_STOCK_CODES,
    PRICE_FLOOR,
)
from tests.conftest import copy_warehouse, query, scalar

# SQL text an attacker would put in a var. Pasted into the SQL, the first closes a date
# literal, the second ends a number; the third is shaped for the SQL dbt wraps around
# the accepted_range test on fct_transactions.unit_price, and before the vars were
# checked it did create main.pwned (`dbt test --select fct_transactions`).
HOSTILE_VALUES = (
    "2011-01-01'); create table main.pwned as select 1; --",
    "1; create table main.pwned(x int)",
)
TEST_WRAPPER_INJECTION = (
    "0 ) dbt_internal_test; create table main.pwned as select 1; commit; begin; "
    "select 0 as failures, false as should_warn, false as should_error from (select 1"
)
# The one-line message each var's check gives (the value follows it, quoted).
VAR_MESSAGES = {
    "unit_price_floor": "var unit_price_floor must be a number >= 0, got '",
    "purchase_rate_min_tenure_days": "var purchase_rate_min_tenure_days must be a number >= 1",
    "forecast_horizon_months": "var forecast_horizon_months must be an integer >= 1, got '",
    "membership_grace_cycles": "var membership_grace_cycles must be an integer >= 0, got '",
    "as_of": "var as_of must be a date YYYY-MM-DD, got '",
    "insiders_definition": "var insiders_definition must be a definition name",
}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def pwned_tables(warehouse: Path) -> list[tuple[str, str]]:
    """Tables named pwned, looked up on a read-WRITE connection (what dbt opens)."""
    return query(
        warehouse,
        "select table_schema, table_name from information_schema.tables where table_name = 'pwned'",
    )


@pytest.fixture
def copied_warehouse(demo_warehouse: Path, tmp_path: Path) -> Path:
    """The session's built demo warehouse, copied: each test may change its copy."""
    return copy_warehouse(demo_warehouse, tmp_path / "copy.duckdb")


def refuse(
    warehouse: Path,
    capsys: pytest.CaptureFixture[str],
    variables: dict[str, object],
    message: str,
    command: str = "build",
    extra: tuple[str, ...] = (),
) -> None:
    """dbt ``command`` with ``variables`` fails with ``message``, runs no statement (the
    file is unchanged) and creates no pwned table."""
    before = sha256(warehouse)
    assert not run_dbt(command, warehouse, variables, extra)
    out = capsys.readouterr().out
    assert message in out, out[-2000:]
    assert sha256(warehouse) == before, "a statement ran before the var was refused"
    assert pwned_tables(warehouse) == []


@pytest.mark.parametrize("value", HOSTILE_VALUES)
@pytest.mark.parametrize("name", list(VAR_MESSAGES))
def test_sql_in_a_var_fails_the_build_before_any_statement(copied_warehouse, capsys, name, value):
    refuse(copied_warehouse, capsys, {name: value}, VAR_MESSAGES[name])


def test_sql_shaped_for_the_test_wrapper_fails_too(copied_warehouse, capsys):
    """A value built to run inside dbt's test SQL, given to `dbt test` only (no model is
    built, so no model's SQL would have stopped it): refused at parse all the same."""
    refuse(
        copied_warehouse,
        capsys,
        {"unit_price_floor": TEST_WRAPPER_INJECTION},
        VAR_MESSAGES["unit_price_floor"],
        command="test",
        extra=("--select", "fct_transactions"),
    )


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ({"forecast_horizon_months": 0}, "var forecast_horizon_months must be an integer >= 1"),
        ({"forecast_horizon_months": 1.5}, "var forecast_horizon_months must be an integer"),
        ({"membership_grace_cycles": -1}, "var membership_grace_cycles must be an integer >= 0"),
        ({"evaluation_min_history_months": True}, "var evaluation_min_history_months"),
        ({"recency_weight_days": 0}, "var recency_weight_days must be a number >= 1"),
        ({"unit_price_floor": "0.04"}, "var unit_price_floor must be a number >= 0"),
        ({"as_of": "2011-6-1"}, "var as_of must be a date YYYY-MM-DD"),
        ({"as_of": "2011-02-30"}, "var as_of must be a date YYYY-MM-DD"),
        ({"as_of": "2011-13-01"}, "var as_of must be a date YYYY-MM-DD"),
    ],
)
def test_a_var_of_the_wrong_type_fails_naming_it(copied_warehouse, capsys, variables, message):
    """Not SQL, just wrong: a number as text, a bool, a fraction where months are
    counted, a negative grace, a date not written YYYY-MM-DD or that does not exist."""
    refuse(copied_warehouse, capsys, variables, message)


@pytest.mark.parametrize("value", HOSTILE_VALUES)
def test_run_settings_refuse_sql_before_dbt(value):
    """settings.config.as_of and insiders_definition (Dagster run config) are checked
    in BuildSettings.dbt_vars(), before any dbt step; the message names the value."""
    from orchestration.resources import BuildSettings

    assert BuildSettings(as_of=" 2011-06-01").dbt_vars() == {"as_of": "2011-06-01"}
    with pytest.raises(ValueError, match=r"settings\.as_of: not a date") as error:
        BuildSettings(as_of=value).dbt_vars()
    assert repr(value) in str(error.value)
    with pytest.raises(ValueError, match=r"settings\.insiders_definition: unknown"):
        BuildSettings(insiders_definition=value).dbt_vars()


# --- what the business vars do -------------------------------------------------------


def _sql_list(values: tuple[str, ...]) -> str:
    """A SQL list of string literals (these are the test's own constants)."""
    return "(" + ", ".join("'" + v.replace("'", "''") + "'" for v in values) + ")"


def rule_of(floor: float) -> str:
    """The first business rule that removes a raw line, as the README states the rules
    (null: kept), over raw.transactions' columns."""
    return f"""
        case
            when CustomerID in {_sql_list(EXCLUDED_CUSTOMERS)} then 'excluded_customer'
            when Country in {_sql_list(EXCLUDED_COUNTRIES)} then 'excluded_country'
            when StockCode in {_sql_list(EXCLUDED_STOCK_CODES)} then 'excluded_stock_code'
            when UnitPrice < {floor} then 'unit_price_below_floor'
        end
    """


def lines_by_rule(warehouse: Path, floor: float) -> dict[str | None, int]:
    return dict(
        query(
            warehouse, f"select {rule_of(floor)} as rule, count(*) from raw.transactions group by 1"
        )
    )


def customer_totals(warehouse: Path, floor: float) -> tuple[int, object, object]:
    """(customers, gross revenue, monetary) of dim_customers' definition, from the raw
    rows: identified kept lines before the as-of (the day after the last loaded line),
    customers with at least one purchase line."""
    return query(
        warehouse,
        f"""
        with kept as (
            select CustomerID as c, Quantity as q, cast(Quantity * UnitPrice as decimal(18, 4)) as r
            from raw.transactions
            where {rule_of(floor)} is null and CustomerID is not null
              and InvoiceDate < (select cast(max(InvoiceDate) as date) + 1 from raw.transactions)
        ),
        customers as (
            select c, sum(r) filter (where q >= 0) as gross, sum(r) as net
            from kept group by c having count(*) filter (where q >= 0) > 0
        )
        select count(*), sum(gross), sum(net) from customers
        """,
    )[0]


def test_unit_price_floor_moves_lines_between_kept_and_excluded(demo_warehouse, copied_warehouse):
    """Raising the floor from 0.04 to 1.00 moves exactly the lines priced in between (and
    not removed by an earlier rule) from fct_transactions to the exclusions, charged to
    unit_price_below_floor; the customers' revenue drops by exactly their value."""
    floor = 1.0
    assert run_dbt(
        "build",
        copied_warehouse,
        {"unit_price_floor": floor},
        [
            "--select",
            "int_transaction_lines__rules_applied",
            "fct_transactions",
            "fct_transaction_exclusions",
            "fct_exclusion_rule_costs",
            "int_customer_lines__as_of",
            "dim_customers",
        ],
    )
    default, raised = (
        lines_by_rule(demo_warehouse, PRICE_FLOOR),
        lines_by_rule(copied_warehouse, floor),
    )
    moved = scalar(
        copied_warehouse,
        f"select count(*) from raw.transactions where {rule_of(0)} is null "
        f"and UnitPrice >= {PRICE_FLOOR} and UnitPrice < {floor}",
    )
    assert moved > 100  # the demo prices most products between 0.29 and 15.00
    assert raised[None] == default[None] - moved
    assert raised["unit_price_below_floor"] == default["unit_price_below_floor"] + moved

    def marts(warehouse: Path) -> tuple[int, dict[str, int], float]:
        kept = scalar(warehouse, "select count(*) from marts.fct_transactions")
        costs = dict(
            query(
                warehouse,
                "select exclusion_rule, excluded_lines from marts.fct_exclusion_rule_costs",
            )
        )
        cheapest = scalar(warehouse, "select min(unit_price) from marts.fct_transactions")
        return kept, costs, float(cheapest)

    for warehouse, counts, price_floor in (
        (demo_warehouse, default, PRICE_FLOOR),
        (copied_warehouse, raised, floor),
    ):
        kept, costs, cheapest = marts(warehouse)
        assert kept == counts[None]
        assert costs == {rule: n for rule, n in counts.items() if rule is not None}
        assert cheapest >= price_floor
        assert query(
            warehouse,
            "select count(*), sum(gross_revenue), sum(monetary) from marts.dim_customers",
        )[0] == customer_totals(warehouse, price_floor)
    assert customer_totals(copied_warehouse, floor) != customer_totals(demo_warehouse, PRICE_FLOOR)


def _add_months(day: date, months: int) -> date:
    """``day`` moved by whole months, clamped to the month's last day (2011-03-31 minus
    one month is 2011-02-28), as SQL date arithmetic does."""
    y, m = divmod(day.year * 12 + day.month - 1 + months, 12)
    return date(y, m + 1, min(day.day, calendar.monthrange(y, m + 1)[1]))


def expected_calendar(warehouse: Path, horizon: int, min_history: int = 3) -> list[tuple]:
    """The re-evaluation calendar from the raw rows: the as-of (the day after the last
    loaded line), then one month earlier each step while after the first purchase of a
    kept, identified line; each date's horizon end; origins have ``horizon`` months of
    data after them and ``min_history`` months of purchases before."""
    as_of, first = query(
        warehouse,
        f"""
        select
            (select cast(max(InvoiceDate) as date) + 1 from raw.transactions),
            (select cast(min(InvoiceDate) as date) from raw.transactions
             where {rule_of(PRICE_FLOOR)} is null and CustomerID is not null and Quantity >= 0)
        """,
    )[0]
    rows, k = [], 0
    while (day := _add_months(as_of, -k)) > first:
        origin = k >= horizon and day >= _add_months(first, min_history)
        rows.append((day, k, _add_months(day, horizon), origin))
        k += 1
    return sorted(rows)


def test_forecast_horizon_months_sets_horizons_and_windows(demo_warehouse, copied_warehouse):
    """With a 2-month horizon every re-evaluation's horizon ends 2 months after it, the
    origins are the dates with 2 months of data after them, and each customer's horizon
    and recent revenue are the kept revenue of the 2 months after and before the date."""
    horizon = 2
    assert run_dbt(
        "build",
        copied_warehouse,
        {"forecast_horizon_months": horizon},
        ["--select", "int_evaluation_dates", "int_customer_scores__evaluations"],
    )
    calendar_sql = (
        "select evaluation_date, cycles_before_as_of, horizon_end, is_evaluation_origin "
        "from intermediate.int_evaluation_dates order by 1"
    )
    expected = expected_calendar(copied_warehouse, horizon)
    assert query(copied_warehouse, calendar_sql) == expected
    assert query(demo_warehouse, calendar_sql) == expected_calendar(demo_warehouse, 3)
    assert expected != expected_calendar(demo_warehouse, 3)
    as_of = max(day for day, *_ in expected)
    assert sum(origin for *_, origin in expected) > 0

    # Per customer and date, the revenue windows, from the raw rows of the kept lines.
    mismatches, compared, full = query(
        copied_warehouse,
        f"""
        with dates as (
            select unnest($days) as evaluation_date, unnest($ends) as horizon_end,
                unnest($starts) as recent_start
        ),
        kept as (
            select CustomerID as customer_id, InvoiceDate as t,
                cast(Quantity * UnitPrice as decimal(18, 4)) as revenue
            from raw.transactions
            where {rule_of(PRICE_FLOOR)} is null and CustomerID is not null
        ),
        expected as (
            select s.customer_id, s.evaluation_date,
                coalesce(sum(k.revenue) filter (
                    where k.t >= d.evaluation_date and k.t < d.horizon_end), 0) as after,
                coalesce(sum(k.revenue) filter (
                    where k.t >= d.recent_start and k.t < d.evaluation_date), 0) as recent,
                any_value(d.horizon_end) <= $as_of as full_horizon
            from intermediate.int_customer_scores__evaluations as s
            join dates as d using (evaluation_date)
            left join kept as k on k.customer_id = s.customer_id
            group by s.customer_id, s.evaluation_date
        )
        select
            count(*) filter (where
                s.recent_net_revenue is distinct from cast(e.recent as double)
                or s.horizon_net_revenue is distinct from
                    case when e.full_horizon then cast(e.after as double) end),
            count(*),
            count(*) filter (where e.full_horizon)
        from intermediate.int_customer_scores__evaluations as s
        join expected as e using (customer_id, evaluation_date)
        """,
        {
            "days": [d for d, *_ in expected],
            "ends": [end for _, _, end, _ in expected],
            "starts": [_add_months(d, -horizon) for d, *_ in expected],
            "as_of": as_of,
        },
    )[0]
    assert compared == scalar(
        copied_warehouse, "select count(*) from intermediate.int_customer_scores__evaluations"
    )
    assert full > 0 and mismatches == 0
