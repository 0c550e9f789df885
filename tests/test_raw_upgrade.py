"""A warehouse loaded before mappings existed keeps working: its ``raw`` tables gain
``line_kind``, ``refund_rows`` and ``mapping_fingerprint`` on the next load, its files
count as unchanged (the Online Retail layouts' fingerprint is empty), and new exports
load beside them."""

from __future__ import annotations

from pathlib import Path

import duckdb

from models_py.locations import DUCKDB_CONFIG
from orchestration.warehouse import load_files
from tests.conftest import build, query
from tests.test_ingest import DAILY, UCI

# raw as the loader of issue 13 (commit d897c05) created it.
OLD_RAW_DDL = """
create schema if not exists raw;
create table if not exists raw.transactions (
    InvoiceNo varchar not null, StockCode varchar not null, Description varchar,
    Quantity integer not null, InvoiceDate timestamp not null,
    UnitPrice decimal(18, 4) not null, CustomerID varchar, Country varchar,
    source_file varchar not null, source_line bigint not null
);
create table if not exists raw.quarantined_rows (
    source_file varchar not null, source_line bigint not null, raw_record varchar,
    reason varchar not null
);
create table if not exists raw.loaded_files (
    source_file varchar primary key, file_sha256 varchar not null, layout varchar not null,
    encoding varchar not null, raw_lines bigint not null, loaded_rows bigint not null,
    quarantined_rows bigint not null, loaded_at timestamp not null,
    is_synthetic boolean default false
);
"""

SHOPIFY = (
    "Name,Email,Financial Status,Currency,Created at,Lineitem quantity,Lineitem name,"
    "Lineitem price,Lineitem sku,Billing Country,Refunded Amount\n"
    "#1001,ann@example.com,paid,GBP,2011-12-01 10:00:00 +0000,2,Mug,3.50,MUG,GB,0.00\n"
    "#1001,,,,,1,Jug,4.00,JUG,,\n"
)


def test_an_old_warehouse_gains_the_new_columns_and_keeps_its_files(
    tmp_path: Path, warehouse: Path
) -> None:
    old = tmp_path / "old.csv"
    old.write_text(DAILY)
    warehouse.parent.mkdir(parents=True)
    con = duckdb.connect(str(warehouse), config=DUCKDB_CONFIG)
    con.execute(OLD_RAW_DDL)
    con.close()
    # The old loader's rows, written as it wrote them (no line_kind column).
    first = load_files(tmp_path / "scratch.duckdb", [old])
    rows = query(
        tmp_path / "scratch.duckdb",
        "select InvoiceNo, StockCode, Description, Quantity, InvoiceDate, UnitPrice, "
        "CustomerID, Country, source_file, source_line from raw.transactions",
    )
    files = query(
        tmp_path / "scratch.duckdb",
        "select source_file, file_sha256, layout, encoding, raw_lines, loaded_rows, "
        "quarantined_rows, loaded_at, is_synthetic from raw.loaded_files",
    )
    con = duckdb.connect(str(warehouse), config=DUCKDB_CONFIG)
    con.executemany("insert into raw.transactions values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    con.executemany("insert into raw.loaded_files values (?, ?, ?, ?, ?, ?, ?, ?, ?)", files)
    con.close()

    shop = tmp_path / "orders_export.csv"
    shop.write_text(SHOPIFY)
    uci = tmp_path / "uci.csv"
    uci.write_text(UCI)
    report = load_files(warehouse, [old, shop, uci])

    assert report.failed == []
    assert report.skipped == [(str(old), "unchanged")]
    assert sorted(f.layout for f in report.loaded) == ["shopify", "uci"]
    assert query(warehouse, "select distinct line_kind from raw.transactions") == [("record",)]
    assert query(
        warehouse,
        "select count(*) from raw.transactions where source_file = ?",
        [str(old)],
    ) == [(first.rows_loaded,)]
    assert query(
        warehouse,
        "select refund_rows, mapping_fingerprint from raw.loaded_files where source_file = ?",
        [str(old)],
    ) == [(0, "")]
    build(warehouse)  # the staging models read the new columns; every dbt test passes
