"""A hostile user of "bring your own orders" (issue 14), through the real CLI.

Each test feeds ``insiders load`` an input a real store produces sooner or later (a
line longer than a megabyte, a Parquet dump with wide decimals or raw bytes, a
mis-typed value holding an e-mail address, a refund on a line that is quarantined, a
table named as the user created it) and states what the loader promises for it: every
record loaded or quarantined with a reason, counts that match the input, one clear
line instead of a traceback, no e-mail address in ``raw.quarantined_rows``. Expected
values come from the inputs themselves (Python or plain DuckDB over them), never from
the loader's output.
"""

from __future__ import annotations

import csv
import datetime as dt
import decimal
import gzip
import os
import re
import subprocess
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from models_py.locations import DUCKDB_CONFIG
from tests.conftest import query

REPO_ROOT = Path(__file__).resolve().parent.parent
INSIDERS = REPO_ROOT / ".venv" / "bin" / "insiders"
EMAIL = re.compile(r"[^\s@,;:<>\"']+@[^\s@,;:<>\"']+")

# A custom mapping of a plain export: e-mail addresses as customer ids.
MAPPING = """\
name: edges
columns:
  order_id: order
  product_id: sku
  description: desc
  quantity: qty
  unit_price: price
  ordered_at: when
  customer_id: email
ordered_at:
  format: "%Y-%m-%d %H:%M:%S"
"""
HEADER = ["order", "sku", "desc", "qty", "price", "when", "email"]


def load(
    warehouse: Path | None,
    *sources: str | Path,
    mapping: str | Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """``insiders load`` as a user runs it, in its own process: into a DuckDB
    warehouse, or with ``warehouse`` None into the PostgreSQL database of the PG*
    variables."""
    command = [str(INSIDERS), "load"]
    command += ["--warehouse", str(warehouse)] if warehouse else ["--target", "postgres"]
    if mapping is not None:
        command += ["--mapping", str(mapping)]
    env = {k: v for k, v in os.environ.items() if k not in ("INSIDERS_MAPPING", "INSIDERS_TARGET")}
    return subprocess.run(
        [*command, *map(str, sources)],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env=env,
        timeout=300,
    )


def write_csv(path: Path, rows: list[list[object]], header: list[str] = HEADER) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture
def mapping(tmp_path: Path) -> Path:
    path = tmp_path / "orders.yml"
    path.write_text(MAPPING, encoding="utf-8")
    return path


def ledger(warehouse: Path) -> list[tuple[str, int, int, int]]:
    return query(
        warehouse,
        "select source_file, raw_lines, loaded_rows, quarantined_rows "
        "from raw.loaded_files order by source_file",
    )


def assert_no_traceback(result: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stderr, result.stderr[-2000:]


# --- a very long line ------------------------------------------------------------------


def test_a_line_longer_than_a_megabyte_does_not_swallow_the_records_after_it(
    tmp_path: Path, mapping: Path
) -> None:
    """One record with a 2 MB description (a pasted HTML body) must not take the rest
    of the file with it. Today Arrow's reader gives up on the long line, the csv module
    stops at its 128 KiB field limit, and everything after the long line becomes ONE
    quarantined "record" (``unreadable CSV from here on``): raw_lines = 1 for a file of
    51 records and the 50 good orders are lost."""
    good = [
        [f"G{i}", "S1", "ok", 1, "2.50", "2024-01-05 10:00:00", f"u{i}@x.com"] for i in range(50)
    ]
    rows = [["L1", "S1", "x" * (2 * 2**20), 1, "2.50", "2024-01-05 10:00:00", "l@x.com"], *good]
    source = write_csv(tmp_path / "long.csv", rows)
    records = source.read_bytes().count(b"\n") - 1  # one record a line, none quoted
    warehouse = tmp_path / "w.duckdb"
    result = load(warehouse, source, mapping=mapping)
    assert result.returncode == 0, result.stderr
    [(_, raw_lines, loaded, quarantined)] = ledger(warehouse)
    assert raw_lines == records == 51
    assert loaded + quarantined == raw_lines
    assert {order for (order,) in query(warehouse, "select InvoiceNo from raw.transactions")} >= {
        f"G{i}" for i in range(50)
    }


# --- Parquet -----------------------------------------------------------------------------


def _orders_table(price: pa.Array, sku: pa.Array | None = None) -> pa.Table:
    return pa.table(
        {
            "order": ["A", "B", "C"],
            "sku": sku if sku is not None else pa.array(["S1", "S2", "S3"]),
            "desc": ["a", "b", "c"],
            "qty": pa.array([1, 2, 3], pa.int64()),
            "price": price,
            "when": pa.array([dt.datetime(2024, 1, 5, 10)] * 3, pa.timestamp("ns")),
            "email": ["a@x.com", "b@x.com", "c@x.com"],
        }
    )


def test_parquet_decimal_prices_with_six_places_load(tmp_path: Path, mapping: Path) -> None:
    """A data lake's ``decimal(12, 6)`` price column holds 2.500000: an exact price that
    fits raw's decimal(18, 4). columnar.py promises typed numbers "as their shortest
    exact decimal", but renders ``2.500000``, which the typing SQL's price pattern (at
    most 4 places) refuses: every line is quarantined ``bad price '2.500000'``."""
    prices = [decimal.Decimal("2.500000"), decimal.Decimal("1.250000"), decimal.Decimal("3.1000")]
    source = tmp_path / "orders.parquet"
    pq.write_table(_orders_table(pa.array(prices, pa.decimal128(12, 6))), source)
    expected = (
        duckdb.connect(config=DUCKDB_CONFIG)
        .execute(
            'select "order", cast(price as decimal(18, 4)) from read_parquet(?) order by 1',
            [str(source)],
        )
        .fetchall()
    )
    warehouse = tmp_path / "w.duckdb"
    result = load(warehouse, source, mapping=mapping)
    assert result.returncode == 0, result.stderr
    assert query(warehouse, "select reason from raw.quarantined_rows") == []
    loaded = query(warehouse, "select InvoiceNo, UnitPrice from raw.transactions order by 1")
    assert loaded == expected


def test_a_parquet_binary_column_that_is_not_utf8_is_one_line_not_a_traceback(
    tmp_path: Path, mapping: Path
) -> None:
    """A ``binary`` product id holding b"\\xff\\xfe" (raw bytes from a legacy system):
    today ``pyarrow.lib.ArrowInvalid: Invalid UTF8 payload`` escapes as a traceback
    (columnar._as_text casts binary to string unchecked) and nothing loads. Either the
    record is quarantined (or decoded as the CSV path decodes odd bytes) and the other
    two load, or the file fails in one line naming it."""
    sku = pa.array([b"S1", b"\xff\xfe", b"S3"], pa.binary())
    source = tmp_path / "bytes.parquet"
    pq.write_table(_orders_table(pa.array([1.5, 1.5, 1.5]), sku), source)
    warehouse = tmp_path / "w.duckdb"
    result = load(warehouse, source, mapping=mapping)
    assert_no_traceback(result)
    if result.returncode == 0:
        [(_, raw_lines, loaded, quarantined)] = ledger(warehouse)
        assert (raw_lines, loaded + quarantined) == (3, 3)
        orders = {o for (o,) in query(warehouse, "select InvoiceNo from raw.transactions")}
        assert {"A", "C"} <= orders
    else:
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and str(source) in lines[0], result.stderr


def test_a_null_quantity_price_or_date_in_parquet_is_quarantined(
    tmp_path: Path, mapping: Path
) -> None:
    """Typed columns have nulls (a CSV has only empty strings): each such record is
    quarantined with a reason naming the column, the others load (pinned: this was a
    NOT NULL traceback while the reasons were built with format(..., NULL))."""
    table = pa.table(
        {
            "order": ["A", "B", "C", "D"],
            "sku": ["S"] * 4,
            "desc": ["d"] * 4,
            "qty": pa.array([1, None, 3, 4], pa.int64()),
            "price": pa.array([1.5, 1.5, None, 1.5]),
            "when": pa.array([dt.datetime(2024, 1, 5)] * 3 + [None]),
            "email": ["a@x.com"] * 4,
        }
    )
    source = tmp_path / "nulls.parquet"
    pq.write_table(table, source)
    warehouse = tmp_path / "w.duckdb"
    result = load(warehouse, source, mapping=mapping)
    assert result.returncode == 0, result.stderr
    assert ledger(warehouse) == [(str(source), 4, 1, 3)]
    reasons = dict(query(warehouse, "select source_line, reason from raw.quarantined_rows"))
    assert reasons[2] == "bad qty ''"
    assert reasons[3] == "bad price ''"
    assert reasons[4].startswith("bad when ''")


# --- e-mail addresses stay out of the quarantine -------------------------------------------


def test_an_email_in_a_bad_value_does_not_reach_the_quarantine_reason(
    tmp_path: Path, mapping: Path
) -> None:
    """README: "an e-mail in a quarantined record is replaced by its key or <e-mail>".
    The raw_record is redacted, but the reason quotes the bad value as it is: a
    shifted export row with the e-mail in the quantity or date column puts
    ``bad qty 'bob@x.com'`` into raw.quarantined_rows (ingest._TYPED_SQL ``reason``,
    not passed through the e-mail pattern as ``raw_record`` is)."""
    rows = [
        ["A1", "S1", "ok", 1, "2.50", "2024-01-05 10:00:00", "ann@x.com"],
        ["A2", "S1", "ok", "bob@x.com", "2.50", "2024-01-05 10:00:00", "ann@x.com"],
        ["A3", "S1", "ok", 1, "2.50", "carl@x.com", "ann@x.com"],
        ["A4", "S1", "ok", 1, "dan@x.com", "2024-01-05 10:00:00", "ann@x.com"],
    ]
    source = write_csv(tmp_path / "shifted.csv", rows)
    warehouse = tmp_path / "w.duckdb"
    result = load(warehouse, source, mapping=mapping)
    assert result.returncode == 0, result.stderr
    quarantined = query(
        warehouse, "select source_line, raw_record, reason from raw.quarantined_rows"
    )
    assert sorted(line for line, _, _ in quarantined) == [3, 4, 5]
    leaked = [row for row in quarantined if any(EMAIL.search(v or "") for v in row[1:])]
    assert leaked == []


def test_an_email_in_an_integer_customer_id_column_is_not_kept_in_the_quarantine(
    tmp_path: Path, mapping: Path
) -> None:
    """``customer_id: {kind: integer}`` (what the Online Retail presets use): an id
    that is no whole number is quarantined, which is right, but an e-mail address
    there is then copied verbatim into raw_record and the reason
    (``bad email 'Ann.Smith@Example.com'``): ingest._file_row sets ``redact`` only
    for text ids. The README promises no e-mail in a quarantined record."""
    custom = tmp_path / "integer.yml"
    custom.write_text(MAPPING + "customer_id: {kind: integer}\n", encoding="utf-8")
    rows = [
        ["A1", "S1", "ok", 1, "2.50", "2024-01-05 10:00:00", "17850"],
        ["A2", "S1", "ok", 1, "2.50", "2024-01-05 10:00:00", "Ann.Smith@Example.com"],
    ]
    source = write_csv(tmp_path / "ids.csv", rows)
    warehouse = tmp_path / "w.duckdb"
    result = load(warehouse, source, mapping=custom)
    assert result.returncode == 0, result.stderr
    assert ledger(warehouse) == [(str(source), 2, 1, 1)]
    [(raw_record, reason)] = query(warehouse, "select raw_record, reason from raw.quarantined_rows")
    assert not EMAIL.search(raw_record), raw_record
    assert not EMAIL.search(reason), reason


# --- refunds --------------------------------------------------------------------------------


SHOPIFY = [
    "Name",
    "Email",
    "Financial Status",
    "Currency",
    "Refunded Amount",
    "Created at",
    "Lineitem quantity",
    "Lineitem name",
    "Lineitem price",
    "Lineitem sku",
    "Billing Country",
]


def test_a_refund_on_a_quarantined_first_line_does_not_vanish(tmp_path: Path) -> None:
    """Shopify puts an order's Refunded Amount on its first line only. When that line
    is quarantined for a line-level problem (quantity 'x'), the order's other line
    loads (with the e-mail filled down from the quarantined line), but the 30.00
    refund is nowhere: no refund line, and raw_record of the quarantined row omits the
    refund column. Revenue of the order is overstated by 30 with no trace. Expected:
    the refund reaches the warehouse as a refund line of order #3001 (or, at the
    least, the quarantined record keeps the amount)."""
    created = "2024-01-05 10:22:33 +0000"
    rows = [
        ["#3001", "d@x.com", "refunded", "GBP", "30.00", created, "x", "Hat", "10.00", "H1", "UK"],
        ["#3001", "", "", "", "", "", "2", "Cap", "10.00", "C1", ""],
    ]
    source = write_csv(tmp_path / "orders_export.csv", rows, SHOPIFY)
    warehouse = tmp_path / "w.duckdb"
    result = load(warehouse, source, mapping="shopify")
    assert result.returncode == 0, result.stderr
    assert ledger(warehouse) == [(str(source), 2, 1, 1)]
    refunds = query(
        warehouse,
        "select -Quantity * UnitPrice from raw.transactions "
        "where InvoiceNo = '#3001' and line_kind = 'refund'",
    )
    kept = query(warehouse, "select raw_record from raw.quarantined_rows")
    assert refunds == [(decimal.Decimal("30.0000"),)] or "30.00" in kept[0][0], (refunds, kept)


# --- table: names as the user wrote them ------------------------------------------------------


def test_a_table_created_unquoted_is_found_by_its_name_in_any_case(
    tmp_path: Path, mapping: Path
) -> None:
    """DuckDB identifiers match case-insensitively: ``create table Orders`` is
    ``select * from orders``. table_source.open_duckdb compares the name with
    ``information_schema`` exactly, so ``table:orders`` says "no such table or view"
    for a table the warehouse's own SQL finds by that name."""
    warehouse = tmp_path / "w.duckdb"
    con = duckdb.connect(str(warehouse), config=DUCKDB_CONFIG)
    con.execute(
        'create table Orders ("order" varchar, sku varchar, "desc" varchar, qty integer, '
        'price decimal(10, 2), "when" timestamp, email varchar)'
    )
    con.execute("insert into orders values ('A', 'S', 'd', 1, 2.5, '2024-01-05', 'a@x.com')")
    assert con.execute("select count(*) from ORDERS").fetchall() == [(1,)]
    con.close()
    result = load(warehouse, "table:orders", mapping=mapping)
    assert result.returncode == 0, result.stderr
    assert query(warehouse, "select count(*) from raw.transactions") == [(1,)]


def _pg_execute(sql: str) -> list[tuple[object, ...]]:
    import psycopg

    with psycopg.connect(autocommit=True) as con:
        cursor = con.execute(sql)
        return cursor.fetchall() if cursor.description else []


def test_postgres_numeric_prices_with_six_places_load(pg_database: str, mapping: Path) -> None:
    """The same promise on PostgreSQL: a ``numeric(12, 6)`` price column of a table
    read in place comes as ``2.500000`` (table_source.open_postgres, ``::text``) and
    every line is quarantined ``bad price '2.500000'``."""
    _pg_execute(
        'create table shop_orders ("order" text, sku text, "desc" text, qty integer, '
        'price numeric(12, 6), "when" timestamp, email text)'
    )
    _pg_execute(
        "insert into shop_orders values ('A', 'S', 'd', 1, 2.5, '2024-01-05', 'a@x.com'), "
        "('B', 'S', 'd', 2, 1.25, '2024-01-05', 'b@x.com')"
    )
    expected = _pg_execute('select "order", price from shop_orders order by 1')
    result = load(None, "table:shop_orders", mapping=mapping)
    assert result.returncode == 0, result.stderr
    assert _pg_execute("select reason from raw.quarantined_rows") == []
    assert _pg_execute("select invoiceno, unitprice from raw.transactions order by 1") == expected


def test_postgres_table_created_unquoted_is_found_by_its_mixed_case_name(
    pg_database: str, mapping: Path
) -> None:
    """PostgreSQL folds unquoted names to lower case: ``create table Orders`` is
    ``orders``, and ``select * from Orders`` finds it. ``table:Orders`` says "no such
    table or view" (table_source.open_postgres looks the name up exactly)."""
    _pg_execute(
        'create table Orders ("order" text, sku text, "desc" text, qty integer, '
        'price numeric(10, 2), "when" timestamp, email text)'
    )
    _pg_execute("insert into Orders values ('A', 'S', 'd', 1, 2.5, '2024-01-05', 'a@x.com')")
    assert _pg_execute("select count(*) from Orders") == [(1,)]
    result = load(None, "table:Orders", mapping=mapping)
    assert result.returncode == 0, result.stderr
    assert _pg_execute("select count(*) from raw.transactions") == [(1,)]


# --- header problems name the column -----------------------------------------------------------


def test_a_mapped_column_named_twice_in_the_header_is_named_in_the_error(
    tmp_path: Path, mapping: Path
) -> None:
    """Two ``qty`` columns: the file fails whole (right: which one is the quantity?),
    but the line says only "duplicate column names in header", not which column,
    where the brief asks for the file, the column and the problem."""
    header = ["order", "sku", "desc", "qty", "qty", "price", "when", "email"]
    source = write_csv(
        tmp_path / "dup.csv",
        [["A", "S", "d", 1, 2, "2.5", "2024-01-05 10:00:00", "a@x.com"]],
        header,
    )
    warehouse = tmp_path / "w.duckdb"
    result = load(warehouse, source, mapping=mapping)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and str(source) in lines[0], result.stderr
    assert "'qty'" in lines[0] or '"qty"' in lines[0], lines[0]


# --- pinned: what already holds ------------------------------------------------------------------


def test_odd_column_names_bom_crlf_and_cp1252_load_with_their_rows_counted(tmp_path: Path) -> None:
    """Column names with quotes, a semicolon, '%', braces and non-ASCII letters are
    data, never SQL; a BOM + CRLF file and a Windows-1252 file read with a mapping
    load every record, counted in the ledger (pinned)."""
    custom = tmp_path / "odd.yml"
    custom.write_text(
        "name: odd\ncolumns:\n"
        '  order_id: "ord\'er; drop table raw.transactions --"\n'
        "  product_id: 'sku \"q\"'\n"
        "  description: désc ription\n"
        "  quantity: qty)\n"
        "  unit_price: pri%ce\n"
        "  ordered_at: wh{en}\n"
        "  customer_id: e mail\n"
        'ordered_at: {format: "%Y-%m-%d %H:%M:%S"}\n',
        encoding="utf-8",
    )
    header = [
        "ord'er; drop table raw.transactions --",
        'sku "q"',
        "désc ription",
        "qty)",
        "pri%ce",
        "wh{en}",
        "e mail",
    ]
    rows = [["A1", "S1", "£5 café", 1, "2.50", "2024-01-05 10:00:00", "a@x.com"]] * 2
    bom = tmp_path / "bom.csv"
    with bom.open("w", newline="", encoding="utf-8-sig") as handle:  # BOM, CRLF
        writer = csv.writer(handle, lineterminator="\r\n")
        writer.writerow(header)
        writer.writerows(
            [f"B{i}", "S1", "plain", 1, "2.50", "2024-01-05 10:00:00", "b@x.com"] for i in range(3)
        )
    cp = tmp_path / "cp1252.csv"
    with cp.open("w", newline="", encoding="cp1252") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    warehouse = tmp_path / "w.duckdb"
    result = load(warehouse, bom, cp, mapping=custom)
    assert result.returncode == 0, result.stderr
    assert ledger(warehouse) == [(str(bom), 3, 3, 0), (str(cp), 2, 2, 0)]
    descriptions = query(
        warehouse,
        "select distinct Description from raw.transactions where source_file = ?",
        [str(cp)],
    )
    assert descriptions == [("£5 café",)]


def test_loading_again_a_gzip_copy_or_another_mapping_never_doubles_rows(
    tmp_path: Path, mapping: Path
) -> None:
    """Idempotence with a mapping (pinned): the same file again is skipped, its gzip
    copy is skipped as a copy, and the file read with a changed mapping replaces its
    own rows (a cancelled-order prefix now makes A2's line a return)."""
    rows = [
        ["A1", "S1", "ok", 2, "2.50", "2024-01-05 10:00:00", "ann@x.com"],
        ["A2", "S1", "ok", 1, "1.00", "2024-01-05 11:00:00", "bob@x.com"],
    ]
    source = write_csv(tmp_path / "orders.csv", rows)
    packed = tmp_path / "orders.csv.gz"
    packed.write_bytes(gzip.compress(source.read_bytes()))
    changed = tmp_path / "changed.yml"
    changed.write_text(MAPPING + "returns: {cancelled_prefix: A2}\n", encoding="utf-8")
    warehouse = tmp_path / "w.duckdb"
    for spec, sources in (
        (mapping, [source]),
        (mapping, [source, packed]),
        (changed, [packed, source]),
    ):
        result = load(warehouse, *sources, mapping=spec)
        assert result.returncode == 0, result.stderr
    assert ledger(warehouse) == [(str(source), 2, 2, 0)]
    assert query(warehouse, "select InvoiceNo, Quantity from raw.transactions order by 1") == [
        ("A1", 2),
        ("A2", -1),
    ]
