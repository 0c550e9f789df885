"""A source is one source however it is given: typed Parquet and tables are skipped
when unchanged, a table is keyed by the name the engine resolves (not the spelling
typed), a table's rows read in no particular order still fill an order's fields from
its other lines, and the checks agree with the typing (Z offsets, long decimals)."""

from __future__ import annotations

import random
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from models_py.locations import DUCKDB_CONFIG
from models_py.mapping import MappingError, read_mapping
from orchestration.warehouse import load_files
from tests.conftest import query
from tests.own_data import SHOPIFY_ORDERS, write_shopify
from tests.test_presets import ROWS_SQL


def _rows(warehouse: Path, source: str) -> list[tuple]:
    """The loaded lines, customers as their ids (keys differ between warehouses)."""
    return sorted(query(warehouse, ROWS_SQL, [source]), key=repr)


def _shopify_table(csv: Path, warehouse: Path, name: str, shuffle: bool = False) -> None:
    """The export as a table of the warehouse, its rows in another physical order."""
    table = pacsv.read_csv(
        csv, convert_options=pacsv.ConvertOptions(strings_can_be_null=False)
    ).cast(pa.schema([(n, pa.string()) for n in pacsv.read_csv(csv).column_names]))
    if shuffle:
        order = list(range(table.num_rows))
        random.Random(3).shuffle(order)
        table = table.take(order)
    warehouse.parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(warehouse), config=DUCKDB_CONFIG)
    con.execute("create schema if not exists shop")
    con.register("export", table)
    con.execute(f"create or replace table {name} as select * from export")
    con.close()


def test_a_shopify_table_in_any_row_order_gives_the_exports_rows(
    tmp_path: Path, warehouse: Path
) -> None:
    csv = write_shopify(tmp_path / "orders_export.csv", SHOPIFY_ORDERS)
    expected_wh = tmp_path / "csv.duckdb"
    load_files(expected_wh, [csv])
    _shopify_table(csv, warehouse, "shop.Orders", shuffle=True)
    report = load_files(warehouse, ["table:shop.orders"])
    assert report.failed == []
    assert [f.path for f in report.loaded] == ["table:shop.Orders"]  # as DuckDB names it
    assert _rows(warehouse, "table:%") == _rows(expected_wh, "%orders_export.csv")
    # However it is spelt, it is the same source: unchanged, then replaced, never doubled.
    again = load_files(warehouse, ["table:SHOP.ORDERS"])
    assert again.skipped == [("table:shop.Orders", "unchanged")]
    con = duckdb.connect(str(warehouse), config=DUCKDB_CONFIG)
    con.execute("delete from shop.Orders where Name = (select min(Name) from shop.Orders)")
    left = con.execute("select count(*) from shop.Orders").fetchall()[0][0]
    con.close()
    changed = load_files(warehouse, ["table:shop.orders"])
    assert [f.path for f in changed.loaded] == ["table:shop.Orders"]
    assert query(warehouse, "select count(distinct source_file) from raw.transactions") == [(1,)]
    assert query(warehouse, "select sum(raw_lines) from raw.loaded_files") == [(left,)]


def test_typed_timestamp_parquet_is_skipped_when_unchanged(tmp_path: Path, warehouse: Path) -> None:
    csv = write_shopify(tmp_path / "orders_export.csv", SHOPIFY_ORDERS)
    table = pacsv.read_csv(csv, convert_options=pacsv.ConvertOptions(strings_can_be_null=False))
    created = table.column_names.index("Created at")
    stamps = pa.array(
        [
            None if v.strip() == "" else v
            for v in table.column("Created at").cast(pa.string()).to_pylist()
        ]
    )
    parsed = pa.compute.strptime(stamps, format="%Y-%m-%d %H:%M:%S %z", unit="s")
    table = table.set_column(created, "Created at", parsed)
    parquet = tmp_path / "orders.parquet"
    pq.write_table(table, parquet)
    first = load_files(warehouse, [parquet])
    assert first.failed == [] and [f.layout for f in first.loaded] == ["shopify"]
    second = load_files(warehouse, [parquet])
    assert second.loaded == [] and second.skipped == [(str(parquet), "unchanged")]


def test_dates_all_in_z_and_prices_with_many_decimals_load(tmp_path: Path, warehouse: Path) -> None:
    source = tmp_path / "orders.csv"
    source.write_text(
        "order,sku,qty,price,at\n"
        "1,A,2,0.30000000000000004,2024-01-05T10:00:00Z\n"
        "2,B,1,2.123456,2024-01-06T11:30:00Z\n"
    )
    mapping = tmp_path / "orders.yml"
    mapping.write_text(
        "name: iso\n"
        "columns: {order_id: order, product_id: sku, quantity: qty, unit_price: price, "
        "ordered_at: at}\n"
        'ordered_at: {format: "%Y-%m-%dT%H:%M:%S%z"}\n'
    )
    report = load_files(warehouse, [source], read_mapping(mapping))
    assert report.failed == [] and report.rows_loaded == 2
    assert [tuple(map(str, r)) for r in query(
        warehouse, "select UnitPrice, InvoiceDate from raw.transactions order by source_line"
    )] == [("0.3000", "2024-01-05 10:00:00"), ("2.1235", "2024-01-06 11:30:00")]  # fmt: skip


def test_integer_ids_cannot_be_pseudonymised_always(tmp_path: Path) -> None:
    mapping = tmp_path / "m.yml"
    mapping.write_text("name: m\nextends: uci\ncustomer_id:\n  pseudonymise: always\n")
    with pytest.raises(MappingError, match=r"m\.yml:4: customer_id\.pseudonymise: always"):
        read_mapping(mapping)


def test_a_header_that_is_a_record_is_not_printed_with_its_email(tmp_path: Path) -> None:
    source = tmp_path / "no_header.csv"
    source.write_text("1001,ann.smith@example.com,2,3.50\n1002,bob@example.com,1,2.00\n")
    report = load_files(tmp_path / "w.duckdb", [source])
    message = str(report.failed[0])
    assert "@" not in message and "<e-mail>" in message


def test_identities_are_kept_for_loaded_customers_only(tmp_path: Path, warehouse: Path) -> None:
    csv = write_shopify(tmp_path / "orders_export.csv", SHOPIFY_ORDERS)
    load_files(warehouse, [csv])
    keys = {k for (k,) in query(warehouse, "select customer_key from raw.customer_identities")}
    loaded = {
        k
        for (k,) in query(
            warehouse,
            "select distinct CustomerID from raw.transactions where CustomerID is not null",
        )
    }
    assert keys == loaded
