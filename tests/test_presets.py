"""The Shopify and WooCommerce presets on exports in their real layouts (issue 14).

Every fixture is written by :mod:`tests.own_data` from plain descriptions of orders;
what the warehouse must answer is derived here from those same descriptions, in plain
Python (a customer's orders, line values, refunds, last country), never from the
loader's or dbt's output. Customers are e-mail addresses: the warehouse keeps a
pseudonymous key (``cust-...``) and maps it back in ``raw.customer_identities``, which
is how these tests find a customer's row.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import orchestration.warehouse as warehouse_module
from models_py.ingest import FileSplitter, hash_file, split_file
from models_py.locations import DUCKDB_CONFIG, SNAPSHOT_FILE
from orchestration.cli import main
from tests.conftest import build, query
from tests.own_data import (
    SHOPIFY_HEADER,
    SHOPIFY_LINE_COLUMNS,
    SHOPIFY_ORDERS,
    WOO_ORDERS,
    ShopifyOrder,
    WooOrder,
    shopify_rows,
    write_csv,
    write_shopify,
    write_shopify_from_demo,
    write_woocommerce,
)

# The statuses of each preset that are no sale (models_py/presets/*.yml, "exclude").
SHOPIFY_NO_SALE = {"voided"}
WOO_NO_SALE = {"pending", "failed", "cancelled", "checkout-draft", "trash"}
# An e-mail address anywhere in text.
EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
EMAIL_SQL = r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"


def load(warehouse: Path, *sources: str | Path, mapping: str | None = None) -> int:
    """``insiders load`` through the CLI, as a store runs it."""
    extra = ["--mapping", mapping] if mapping else []
    return main(["load", "--warehouse", str(warehouse), *extra, *map(str, sources)])


# --- what the warehouse must answer, from the orders ------------------------------------


def _expected(
    orders: Sequence[tuple[str | None, datetime, str, Decimal, Decimal, int]],
) -> dict[str, dict[str, Any]]:
    """Per customer (e-mail in lower case): frequency, gross revenue, returns value and
    items, monetary, return rate, last country and first/last purchase (UTC), from
    (e-mail, ordered at UTC, country, order value, refunded, refunded items) of every
    order that is a sale."""
    found: dict[str, dict[str, Any]] = {}
    for email, at, country, value, refunded, items in orders:
        if not email:
            continue  # a guest: no customer row under the default policy
        c = found.setdefault(
            email.lower(),
            {
                "frequency": 0,
                "gross_revenue": Decimal("0"),
                "returns_value": Decimal("0"),
                "returned_items": 0,
                "first": at,
                "last": at,
                "country": country,
            },
        )
        c["frequency"] += 1
        c["gross_revenue"] += value
        c["returns_value"] += refunded
        c["returned_items"] += items
        c["first"] = min(c["first"], at)
        if at >= c["last"]:
            c["last"], c["country"] = at, country
    for c in found.values():
        c["monetary"] = c["gross_revenue"] - c["returns_value"]
        c["return_rate"] = float(c["returns_value"]) / float(c["gross_revenue"])
    return found


def shopify_expected(orders: Sequence[ShopifyOrder]) -> dict[str, dict[str, Any]]:
    """A Shopify refund is one return line per order (the preset: ``per: order``)."""
    return _expected(
        [
            (
                o.email,
                o.created.astimezone(UTC).replace(tzinfo=None),
                o.country,
                o.subtotal,
                o.refunded,
                1 if o.refunded else 0,
            )
            for o in orders
            if o.status not in SHOPIFY_NO_SALE
        ]
    )


def woo_expected(orders: Sequence[WooOrder]) -> dict[str, dict[str, Any]]:
    """A WooCommerce refund is one return line per refunded item, of its quantity."""
    return _expected(
        [
            (
                o.email,
                o.created,
                o.country,
                sum((i.total for i in o.items), Decimal("0")),
                sum((i.refunded for i in o.items), Decimal("0")),
                sum(max(abs(i.refunded_qty), 1) for i in o.items if i.refunded),
            )
            for o in orders
            if o.status not in WOO_NO_SALE
        ]
    )


def dim_customers(warehouse: Path) -> dict[str, dict[str, Any]]:
    """marts.dim_customers by the customer's e-mail (lower case), through the map back."""
    rows = query(
        warehouse,
        """
        select lower(i.customer_ref), d.frequency, d.gross_revenue, d.returns_value,
            d.returned_items, d.monetary, d.return_rate, d.country,
            d.first_purchase_at, d.last_purchase_at
        from marts.dim_customers as d
        left join raw.customer_identities as i on d.customer_id = i.customer_key
        """,
    )
    return {
        r[0]: {
            "frequency": r[1],
            "gross_revenue": r[2],
            "returns_value": r[3],
            "returned_items": r[4],
            "monetary": r[5],
            "return_rate": r[6],
            "country": r[7],
            "first": r[8],
            "last": r[9],
        }
        for r in rows
    }


def assert_answers(got: dict[str, dict[str, Any]], expected: dict[str, dict[str, Any]]) -> None:
    assert sorted(got) == sorted(expected)
    for email, want in expected.items():
        have = got[email]
        for key, value in want.items():
            if key == "return_rate":
                assert have[key] == pytest.approx(value, abs=1e-12), (email, key)
            else:
                assert have[key] == value, (email, key, have[key], value)


def ledger(warehouse: Path) -> list[tuple[Any, ...]]:
    return query(
        warehouse,
        "select source_file, raw_lines, loaded_rows, quarantined_rows, refund_rows, layout"
        " from raw.loaded_files order by source_file",
    )


# Every raw.transactions column but where a row came from; the customer as the e-mail
# it stands for (lower case), so that warehouses with different secrets compare.
ROWS_SQL = """
select t.InvoiceNo, t.StockCode, t.Description, t.Quantity, t.InvoiceDate,
    cast(t.UnitPrice as varchar), coalesce(lower(i.customer_ref), t.CustomerID),
    t.Country, t.line_kind
from raw.transactions as t
left join raw.customer_identities as i on t.CustomerID = i.customer_key
where t.source_file like ?
"""


def raw_rows(warehouse: Path, source: str = "%") -> list[tuple[Any, ...]]:
    return sorted(query(warehouse, ROWS_SQL, [source]), key=repr)


# --- 1. each preset, detected from its header, built to known answers -------------------


def test_a_shopify_export_is_detected_loaded_and_built_to_known_answers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    export = write_shopify(tmp_path / "in" / "orders_export_1.csv", SHOPIFY_ORDERS)
    warehouse = tmp_path / "wh" / "warehouse.duckdb"
    assert load(warehouse, export) == 0
    assert f"loaded  {export} (shopify, utf-8)" in capsys.readouterr().out
    build(warehouse)

    assert_answers(dim_customers(warehouse), shopify_expected(SHOPIFY_ORDERS))
    # Every line is loaded or quarantined; the voided order's lines (Financial Status on
    # its first line only, filled down) are quarantined with the reason.
    lines = sum(len(o.lines) for o in SHOPIFY_ORDERS)
    voided = [o for o in SHOPIFY_ORDERS if o.status in SHOPIFY_NO_SALE]
    voided_lines = sum(len(o.lines) for o in voided)
    refunds = sum(1 for o in SHOPIFY_ORDERS if o.refunded and o.status not in SHOPIFY_NO_SALE)
    assert ledger(warehouse) == [
        (str(export), lines, lines - voided_lines, voided_lines, refunds, "shopify")
    ]
    reasons = query(
        warehouse,
        "select raw_record, reason from staging.stg_online_retail__quarantined_rows",
    )
    assert [r[1] for r in reasons] == ["Financial Status 'voided': not a sale"] * voided_lines
    assert not any("@" in r[0] for r in reasons)  # the address is not in the quarantine
    # Refunds are returns: one return line per refunded order, in the refund's amount.
    assert sorted(
        query(
            warehouse,
            "select invoice_no, -revenue from marts.fct_transactions where is_return",
        )
    ) == sorted((o.name, o.refunded) for o in SHOPIFY_ORDERS if o.refunded)
    # A line without a SKU is the product of its name.
    no_sku = {
        line.name
        for o in SHOPIFY_ORDERS
        if o.status not in SHOPIFY_NO_SALE
        for line in o.lines
        if not line.sku
    }
    assert no_sku
    codes = {r[0] for r in query(warehouse, "select stock_code from marts.fct_transactions")}
    assert no_sku <= codes


def test_a_woocommerce_export_is_detected_loaded_and_built_to_known_answers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    export = write_woocommerce(tmp_path / "in" / "orders-2024-03.csv", WOO_ORDERS)
    warehouse = tmp_path / "wh" / "warehouse.duckdb"
    assert load(warehouse, export) == 0
    assert f"loaded  {export} (woocommerce, utf-8)" in capsys.readouterr().out
    build(warehouse)

    assert_answers(dim_customers(warehouse), woo_expected(WOO_ORDERS))
    items = sum(len(o.items) for o in WOO_ORDERS)
    no_sale = [(o.status, len(o.items)) for o in WOO_ORDERS if o.status in WOO_NO_SALE]
    quarantined = sum(n for _, n in no_sale)
    refunds = sum(
        1 for o in WOO_ORDERS if o.status not in WOO_NO_SALE for i in o.items if i.refunded
    )
    assert ledger(warehouse) == [
        (str(export), items, items - quarantined, quarantined, refunds, "woocommerce")
    ]
    reasons = sorted(
        r[0]
        for r in query(warehouse, "select reason from staging.stg_online_retail__quarantined_rows")
    )
    assert reasons == sorted(f"status '{s}': not a sale" for s, n in no_sale for _ in range(n))
    # Each refunded item is a return of its own product, its quantity and amount.
    assert sorted(
        query(
            warehouse,
            "select invoice_no, stock_code, quantity, -revenue from marts.fct_transactions"
            " where is_return",
        )
    ) == sorted(
        (str(o.order_id), i.sku, -abs(i.refunded_qty), i.refunded)
        for o in WOO_ORDERS
        for i in o.items
        if i.refunded
    )


# --- 2. idempotent; the preset named gives the same rows --------------------------------


def test_loading_twice_changes_nothing_and_naming_the_preset_gives_the_same_rows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    export = write_shopify(tmp_path / "in" / "orders_export_1.csv", SHOPIFY_ORDERS)
    detected = tmp_path / "a" / "warehouse.duckdb"
    assert load(detected, export) == 0
    state = (
        query(detected, "select * from raw.transactions order by all"),
        query(detected, "select * from raw.quarantined_rows order by all"),
        query(detected, "select * from raw.customer_identities order by all"),
        query(detected, "select * exclude (loaded_at) from raw.loaded_files"),
    )
    capsys.readouterr()
    assert load(detected, export) == 0
    out = capsys.readouterr().out
    assert "rows loaded: 0, rows quarantined: 0" in out
    assert (
        query(detected, "select * from raw.transactions order by all"),
        query(detected, "select * from raw.quarantined_rows order by all"),
        query(detected, "select * from raw.customer_identities order by all"),
        query(detected, "select * exclude (loaded_at) from raw.loaded_files"),
    ) == state

    named = tmp_path / "b" / "warehouse.duckdb"
    assert load(named, export, mapping="shopify") == 0
    assert raw_rows(named) == raw_rows(detected)
    assert len(raw_rows(named)) == len(state[0])
    assert query(named, "select source_line, reason from raw.quarantined_rows order by 1") == [
        (r[1], r[-1]) for r in sorted(state[1], key=lambda r: r[1])
    ]
    # The customers' keys are stable per warehouse, not across warehouses (each has its
    # own secret): the map back is what a store joins on.
    keys = {r[0] for r in query(named, "select customer_key from raw.customer_identities")}
    assert keys.isdisjoint(r[0] for r in state[2])


# --- 3. a header of no preset; the fill-down across chunks ------------------------------


def test_a_header_that_fits_no_preset_fails_in_one_line_and_loads_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    odd = write_csv(
        tmp_path / "in" / "orders.csv",
        ["Order", "Customer", "When", "Item", "Qty", "Each"],
        [
            {
                "Order": "1",
                "Customer": "x@example.com",
                "When": "2024-01-05",
                "Item": "A",
                "Qty": "1",
                "Each": "2.00",
            }
        ],
    )
    warehouse = tmp_path / "wh" / "warehouse.duckdb"
    assert load(warehouse, odd) == 1
    captured = capsys.readouterr()
    errors = [line for line in (captured.out + captured.err).splitlines() if str(odd) in line]
    assert len(errors) == 1, errors
    assert "no preset fits the header" in errors[0]
    assert "--mapping" in errors[0]
    assert query(warehouse, "select count(*) from raw.transactions") == [(0,)]
    assert query(warehouse, "select count(*) from raw.loaded_files") == [(0,)]


def test_order_level_fields_fill_down_across_a_chunk_boundary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    export = write_shopify(tmp_path / "in" / "orders_export_1.csv", SHOPIFY_ORDERS)
    rows = shopify_rows(SHOPIFY_ORDERS)
    # The first line number of each record (a note may span lines), as Python's csv
    # module reads the file; those of the continuation lines (no Email of their own).
    with export.open(encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle)
        next(reader)
        starts_at, previous = [], reader.line_num
        for _ in reader:
            starts_at.append(previous + 1)
            previous = reader.line_num
    assert len(starts_at) == len(rows) and starts_at[-1] > len(rows) + 1  # a note spans
    firsts: dict[str, dict[str, str]] = {}
    continuation = set()
    for start, r in zip(starts_at, rows, strict=True):
        if r["Name"] in firsts:  # the layout under test: order fields blank here
            continuation.add(start)
            assert all(r[c] == "" for c in SHOPIFY_HEADER if c not in SHOPIFY_LINE_COLUMNS)
        firsts.setdefault(r["Name"], r)
    assert continuation

    whole = split_file(export)
    # Small chunks: every chunk holds a line or two, so orders straddle chunks.
    splitter = FileSplitter(export, hash_file(export), chunk_bytes=200)
    pieces = list(splitter.pieces())
    starts = [p.records.column("source_line")[0].as_py() for p in pieces if p.records.num_rows]
    assert continuation & set(starts), "no order straddles two chunks"
    chunked = pa.concat_tables([p.records for p in pieces])
    assert chunked.to_pylist() == whole.records.to_pylist()
    for record in chunked.to_pylist():
        first = firsts[record["InvoiceNo"]]
        assert record["CustomerID"] == first["Email"]
        assert record["InvoiceDate"] == first["Created at"]
        assert record["Country"] == first["Billing Country"]
        assert record["ExcludeStatus"] == first["Financial Status"]
        assert record["Currency"] == first["Currency"]
    # The refund counts once per order, on its first line.
    refunds = [r["RefundAmount"] for r in chunked.to_pylist() if r["RefundAmount"]]
    assert sorted(refunds) == sorted(f"{o.refunded:.2f}" for o in SHOPIFY_ORDERS)

    # And the loader, chunk by chunk, loads what it loads from the file read at once.
    at_once = tmp_path / "once" / "warehouse.duckdb"
    assert load(at_once, export) == 0
    monkeypatch.setattr(warehouse_module, "CHUNK_BYTES", 200)
    small = tmp_path / "small" / "warehouse.duckdb"
    assert load(small, export) == 0
    assert raw_rows(small) == raw_rows(at_once)
    assert query(small, "select source_line, reason from raw.quarantined_rows order by 1") == (
        query(at_once, "select source_line, reason from raw.quarantined_rows order by 1")
    )


# --- 4. privacy, end to end -------------------------------------------------------------


def _is_duckdb(path: Path) -> bool:
    with path.open("rb") as handle:
        head = handle.read(12)
    return head[8:12] == b"DUCK"


def _tables_with_emails(database: Path, schemas: Sequence[str] | None) -> list[str]:
    """``schema.table (n rows)`` of every table or view (of ``schemas``; None: all)
    that holds text shaped like an e-mail address in any column."""
    con = duckdb.connect(str(database), read_only=True, config=DUCKDB_CONFIG)
    try:
        tables = con.execute(
            "select table_schema, table_name from information_schema.tables"
            " where table_catalog = current_database()"
        ).fetchall()
        found = []
        for schema, table in tables:
            if schemas is not None and schema not in schemas:
                continue
            relation = '"' + schema.replace('"', '""') + '"."' + table.replace('"', '""') + '"'
            hits = con.execute(
                f"select count(*) from {relation} as t"  # names from the catalogue
                " where regexp_matches(cast(t as varchar), ?)",
                [EMAIL_SQL],
            ).fetchall()[0][0]
            if hits:
                found.append(f"{schema}.{table} ({hits} rows)")
        return found
    finally:
        con.close()


def _files_with_emails(root: Path, skip: Callable[[Path], bool], emails: set[str]) -> list[str]:
    """Files under ``root`` (but those ``skip`` names) holding an e-mail address: any
    e-mail-shaped text in a text file, the export's own addresses in any file."""
    found = []
    needles = [e.lower().encode() for e in emails]
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        if skip(path):
            continue
        data = path.read_bytes()
        if _is_duckdb(path):
            hits = _tables_with_emails(path, None)
            if hits:
                found.append(f"{path}: {', '.join(hits)}")
            continue
        if data[:4] == data[-4:] == b"PAR1":  # compressed pages: read the values
            con = duckdb.connect(config=DUCKDB_CONFIG)
            try:
                hits = con.execute(
                    "select count(*) from read_parquet(?) as t"
                    " where regexp_matches(cast(t as varchar), ?)",
                    [str(path), EMAIL_SQL],
                ).fetchall()[0][0]
            finally:
                con.close()
            if hits:
                found.append(f"{path}: {hits} rows")
            continue
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            text = None
        if text is not None and (match := EMAIL.search(text)):
            found.append(f"{path}: {match.group(0)!r}")
        elif any(needle in data.lower() for needle in needles):
            found.append(f"{path}: an address of the export")
    return found


def test_no_email_address_leaves_raw_in_a_whole_run(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    export = write_shopify_from_demo(tmp_path / "data", customers=150, seed=7)
    root = tmp_path / "wh"
    warehouse = root / "warehouse.duckdb"
    # Dagster's event log and its captured step logs go to files the test can read.
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))
    (tmp_path / "dagster").mkdir()
    code = main(["run", "--warehouse", str(warehouse), "--source", str(export.path), "--verbose"])
    out, err = capfd.readouterr()
    assert code == 0, err[-3000:]

    # Nothing but raw holds an address...
    schemas = ("marts", "insiders", "staging", "intermediate", "ml")
    assert _tables_with_emails(warehouse, schemas) == []
    # ... nor the snapshot, the report, any other file the run wrote, its output or log.
    snapshot = root / "bi" / SNAPSHOT_FILE
    assert snapshot.is_file()
    assert _tables_with_emails(snapshot, None) == []
    reports = list((root / "reports").glob("insiders_report.*"))
    assert {p.suffix for p in reports} == {".html", ".md"}

    def warehouse_copy(path: Path) -> bool:  # raw holds the map back: checked above
        return path == warehouse or (path.parent.name == ".work" and _is_duckdb(path))

    leaks = _files_with_emails(root, warehouse_copy, set(export.emails))
    leaks += _files_with_emails(tmp_path / "dagster", lambda _: False, set(export.emails))
    assert leaks == []
    assert EMAIL.findall(out) == [] and EMAIL.findall(err) == []
    assert "Insiders" in out
    # What was searched holds what a leak would be in: Dagster's event log and step
    # logs, dbt's log, the Parquet of the snapshot, the verbose output.
    searched = [p.name for p in [*root.rglob("*"), *(tmp_path / "dagster").rglob("*")]]
    assert {"dbt.log", "event.log"} <= set(searched)
    assert any(name.endswith(".parquet") for name in searched)
    assert "STEP_SUCCESS" in out + err
    # And the searches find an address where there is one (raw, the export itself).
    assert [t for t in _tables_with_emails(warehouse, ("raw",)) if "customer_identities" in t]
    assert _files_with_emails(export.path.parent, lambda p: p != export.path, set())

    # The store maps every key back to an address of its export.
    keyed = query(
        warehouse,
        "select d.customer_id, i.customer_ref from marts.dim_customers as d"
        " left join raw.customer_identities as i on d.customer_id = i.customer_key",
    )
    assert keyed and all(k.startswith("cust-") for k, _ in keyed)
    assert {ref for _, ref in keyed} <= set(export.emails)
    # And the run answered: some customers are Insiders, the nine answers are there.
    members = query(warehouse, "select count(*) from insiders.members")[0][0]
    assert 0 < members < len(keyed)
    assert query(warehouse, "select count(*) from insiders.answers")[0][0] > 0


# --- 5. Parquet files, a directory of them, a table in place ---------------------------


def _parquet_table(rows: Sequence[dict[str, str]]) -> pa.Table:
    """The export's rows as a data lake would hold them: typed quantity, price and
    refund, ``Created at`` an instant (UTC), blanks null in the typed columns."""
    columns: dict[str, pa.Array] = {}
    for name in SHOPIFY_HEADER:
        values = [r[name] for r in rows]
        if name == "Created at":
            stamps = [
                datetime.strptime(v, "%Y-%m-%d %H:%M:%S %z").astimezone(UTC) if v else None
                for v in values
            ]
            columns[name] = pa.array(stamps, pa.timestamp("us", tz="UTC"))
        elif name == "Lineitem quantity":
            columns[name] = pa.array([int(v) for v in values], pa.int64())
        elif name == "Lineitem price":
            columns[name] = pa.array([float(v) for v in values], pa.float64())
        elif name == "Refunded Amount":
            columns[name] = pa.array(
                [Decimal(v) if v else None for v in values], pa.decimal128(12, 2)
            )
        else:
            columns[name] = pa.array(values, pa.string())
    return pa.table(columns)


def test_parquet_a_directory_of_parquet_and_a_warehouse_table_load_as_the_csv(
    tmp_path: Path,
) -> None:
    rows = shopify_rows(SHOPIFY_ORDERS)
    csv_path = write_shopify(tmp_path / "in" / "orders.csv", SHOPIFY_ORDERS)
    one = tmp_path / "in" / "orders.parquet"
    pq.write_table(_parquet_table(rows), one)
    assert pa.types.is_timestamp(pq.read_schema(one).field("Created at").type)
    # Two files split between orders (a lake partitions by order, not inside one).
    cut = next(i for i, r in enumerate(rows) if r["Name"] == SHOPIFY_ORDERS[4].name)
    lake = tmp_path / "in" / "lake"
    lake.mkdir()
    pq.write_table(_parquet_table(rows[:cut]), lake / "part-0.parquet")
    pq.write_table(_parquet_table(rows[cut:]), lake / "part-1.parquet")

    warehouse = tmp_path / "wh" / "warehouse.duckdb"
    warehouse.parent.mkdir()
    con = duckdb.connect(str(warehouse), config=DUCKDB_CONFIG)
    try:  # the store's own table: the export with typed order times and quantities
        con.execute("create schema shop")
        con.execute(
            """
            create table shop.orders as
            select * replace (
                try_strptime(nullif("Created at", ''), '%Y-%m-%d %H:%M:%S %z') as "Created at",
                cast("Lineitem quantity" as integer) as "Lineitem quantity",
                cast("Lineitem price" as decimal(10, 2)) as "Lineitem price"
            )
            from read_csv(?, all_varchar = true)
            """,
            [str(csv_path)],
        )
        created = con.execute(
            "select data_type from information_schema.columns"
            " where table_schema = 'shop' and column_name = 'Created at'"
        ).fetchall()
    finally:
        con.close()
    assert created == [("TIMESTAMP WITH TIME ZONE",)]

    assert load(warehouse, csv_path, one, lake, "table:shop.orders") == 0
    loaded = query(warehouse, "select * from raw.transactions order by all")
    assert load(warehouse, csv_path, one, lake, "table:shop.orders") == 0  # all unchanged
    assert query(warehouse, "select * from raw.transactions order by all") == loaded
    expected = raw_rows(warehouse, str(csv_path))
    sales = [o for o in SHOPIFY_ORDERS if o.status not in SHOPIFY_NO_SALE]
    assert len(expected) == sum(len(o.lines) + bool(o.refunded) for o in sales)
    assert raw_rows(warehouse, str(one)) == expected
    assert raw_rows(warehouse, str(lake) + "/%") == expected
    assert raw_rows(warehouse, "table:shop.orders") == expected
    quarantined = query(
        warehouse,
        "select source_file, count(*), min(reason), max(reason) from raw.quarantined_rows"
        " group by 1 order by 1",
    )
    reason = "Financial Status 'voided': not a sale"
    voided = sum(len(o.lines) for o in SHOPIFY_ORDERS if o.status in SHOPIFY_NO_SALE)
    assert {r[1:] for r in quarantined} == {(voided, reason, reason)}
    # The CSV, the Parquet file, the lake's first part (the voided order's), the table.
    assert len(quarantined) == 4


def test_a_postgresql_table_loads_as_the_csv(
    tmp_path: Path, pg_database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    import psycopg
    from psycopg import sql

    rows = shopify_rows(SHOPIFY_ORDERS)
    csv_path = write_shopify(tmp_path / "in" / "orders.csv", SHOPIFY_ORDERS)
    duck = tmp_path / "duck" / "warehouse.duckdb"
    assert load(duck, csv_path) == 0
    expected = raw_rows(duck)

    typed = {
        "Created at": "timestamptz",
        "Lineitem quantity": "integer",
        "Lineitem price": "numeric",
    }
    with psycopg.connect("", autocommit=True) as con:
        con.execute("create schema shop")
        con.execute(
            sql.SQL("create table shop.orders ({})").format(
                sql.SQL(", ").join(
                    sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(typed.get(c, "text")))
                    for c in SHOPIFY_HEADER
                )
            )
        )
        with con.cursor() as cursor:
            cursor.executemany(
                sql.SQL("insert into shop.orders values ({})").format(
                    sql.SQL(", ").join(sql.Placeholder() * len(SHOPIFY_HEADER))
                ),
                [[r[c] if r[c] or c not in typed else None for c in SHOPIFY_HEADER] for r in rows],
            )
    local = tmp_path / "pg" / "warehouse.duckdb"
    assert (
        main(["load", "--target", "postgres", "--warehouse", str(local), "table:shop.orders"]) == 0
    )
    assert "loaded  table:shop.orders (shopify" in capsys.readouterr().out
    with psycopg.connect("") as con:
        got = con.execute(
            """
            select t.invoiceno, t.stockcode, t.description, t.quantity, t.invoicedate,
                cast(t.unitprice as varchar), coalesce(lower(i.customer_ref), t.customerid),
                t.country, t.line_kind
            from raw.transactions as t
            left join raw.customer_identities as i on t.customerid = i.customer_key
            """
        ).fetchall()
        quarantined = con.execute("select reason from raw.quarantined_rows").fetchall()
    assert sorted((tuple(r) for r in got), key=repr) == expected
    assert [r[0] for r in quarantined] == ["Financial Status 'voided': not a sale"] * 2


def test_null_values_in_a_parquet_file_or_a_table_are_quarantined_not_a_crash(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A data lake's file or a warehouse table holds NULLs where a CSV holds blanks: a
    record with no order date or no quantity is quarantined with a reason naming the
    column, like a blank in a CSV, and the other records load."""
    rows = shopify_rows(SHOPIFY_ORDERS)
    table = _parquet_table(rows)
    # #1005 (one line): no order date; #1001's second line: no quantity.
    lost_date = next(i for i, r in enumerate(rows) if r["Name"] == SHOPIFY_ORDERS[4].name)
    dates = table.column("Created at").to_pylist()
    dates[lost_date] = None
    quantities = table.column("Lineitem quantity").to_pylist()
    quantities[1] = None
    table = table.set_column(
        table.schema.get_field_index("Created at"),
        "Created at",
        pa.array(dates, table.schema.field("Created at").type),
    )
    table = table.set_column(
        table.schema.get_field_index("Lineitem quantity"),
        "Lineitem quantity",
        pa.array(quantities, pa.int64()),
    )
    lake = tmp_path / "in" / "orders.parquet"
    lake.parent.mkdir()
    pq.write_table(table, lake)
    warehouse = tmp_path / "wh" / "warehouse.duckdb"
    warehouse.parent.mkdir()
    con = duckdb.connect(str(warehouse), config=DUCKDB_CONFIG)
    try:
        con.execute("create schema shop")
        con.execute("create table shop.orders as select * from read_parquet(?)", [str(lake)])
    finally:
        con.close()

    code = load(warehouse, lake, "table:shop.orders")
    out = capsys.readouterr()
    assert code == 0, out.out + out.err
    voided = sum(len(o.lines) for o in SHOPIFY_ORDERS if o.status in SHOPIFY_NO_SALE)
    for source in (str(lake), "table:shop.orders"):
        assert query(
            warehouse,
            "select raw_lines, loaded_rows, quarantined_rows from raw.loaded_files"
            " where source_file = ?",
            [source],
        ) == [(len(rows), len(rows) - voided - 2, voided + 2)]
        reasons = dict(
            query(
                warehouse,
                "select source_line, reason from raw.quarantined_rows where source_file = ?",
                [source],
            )
        )
        assert "Created at" in reasons[lost_date + 1]  # source_line: the row's number
        assert "Lineitem quantity" in reasons[2]
