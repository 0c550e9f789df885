"""The loader on Spark gives the DuckDB loader's raw tables, report and errors.

Every expectation is the DuckDB loader's result on the same files (read back with
DuckDB), never a copied figure; Spark's tables are read with ``spark.table``. Each
scenario gets a warehouse of its own (a new one costs about a second of session
restart), since loading real data removes demo data by design.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pytest

pytest.importorskip("pyspark")

from models_py.demo_data import write_demo_data
from models_py.locations import DUCKDB_CONFIG
from orchestration import spark_loader
from orchestration.spark import SparkWarehouse, session, stop_session
from orchestration.warehouse import (
    LoadReport,
    connect,
    load_files,
    pseudonym_secret,
)
from tests.own_data import (
    SHOPIFY_HEADER,
    SHOPIFY_ORDERS,
    shopify_rows,
    write_csv,
    write_shopify_from_demo,
)

REAL_DATA = Path("/work/shared/data/online-retail/by-day")

TRANSACTIONS = (
    "InvoiceNo, StockCode, Description, Quantity, InvoiceDate, UnitPrice, CustomerID, "
    "Country, source_file, source_line, line_kind"
)
QUARANTINED = "source_file, source_line, raw_record, reason"
LEDGER = (
    "source_file, file_sha256, layout, encoding, raw_lines, loaded_rows, quarantined_rows, "
    "is_synthetic, refund_rows, mapping_fingerprint"
)
TABLES = {
    "transactions": TRANSACTIONS,
    "quarantined_rows": QUARANTINED,
    "loaded_files": LEDGER,
    "customer_identities": "customer_key, customer_ref, first_source_file",
}


@pytest.fixture(scope="module", autouse=True)
def _stop_at_end() -> Any:
    yield
    stop_session()


def duck_raw(database: Path) -> dict[str, list[tuple[Any, ...]]]:
    """raw's tables of a DuckDB warehouse, sorted rows of the compared columns."""
    con = duckdb.connect(str(database), read_only=True, config=DUCKDB_CONFIG)
    try:
        return {
            table: sorted(con.execute(f"select {columns} from raw.{table}").fetchall(), key=repr)
            for table, columns in TABLES.items()
        }
    finally:
        con.close()


def spark_raw(warehouse: SparkWarehouse) -> dict[str, list[tuple[Any, ...]]]:
    """The same of a Spark warehouse, read by Spark."""
    spark = session(warehouse)
    result = {}
    for table, columns in TABLES.items():
        names = [c.strip() for c in columns.split(",")]
        rows = spark.table(f"raw.{table}").select(*names).toArrow().to_pylist()
        result[table] = sorted((tuple(row[n] for n in names) for row in rows), key=repr)
    return result


def same_report(spark: LoadReport, duck: LoadReport) -> None:
    assert spark.summary() == duck.summary()
    assert sorted(spark.skipped) == sorted(duck.skipped)
    assert [str(e) for e in spark.failed] == [str(e) for e in duck.failed]
    assert spark.loaded == duck.loaded
    assert spark.removed_synthetic == duck.removed_synthetic


@dataclass(frozen=True)
class Pair:
    """A Spark warehouse and a DuckDB file given the same loads in the same order."""

    spark: SparkWarehouse
    duck: Path

    def load(self, paths: list[Any]) -> tuple[LoadReport, LoadReport]:
        duck = load_files(self.duck, paths)
        return load_files(self.spark, paths), duck

    def assert_same_raw(self) -> None:
        spark, duck = spark_raw(self.spark), duck_raw(self.duck)
        for table in TABLES:
            assert spark[table] == duck[table], table

    def load_ids(self) -> tuple[int, int]:
        """Distinct load ids in raw.transactions, and in the ledger."""
        spark = session(self.spark)
        return tuple(  # type: ignore[return-value]
            spark.table(f"raw.{t}").select("load_id").distinct().count()
            for t in ("transactions", "loaded_files")
        )


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> Pair:
    """The module's warehouse of real (not synthetic) data: one Spark metastore (its
    first use costs some 15 s), shared by the tests below in file order, each of which
    compares the whole of raw with the DuckDB file's. The DuckDB warehouse's pseudonym
    secret is made first and copied into Spark, so the keys can be compared."""
    folder = tmp_path_factory.mktemp("spark-real")
    pair = Pair(SparkWarehouse(folder / "wh"), folder / "duck.duckdb")
    con = connect(pair.duck)
    secret = pseudonym_secret(con, "?").hex()
    con.close()
    spark = session(pair.spark)
    spark_loader.ensure_raw_tables(spark)
    spark.createDataFrame([(secret,)], "secret string").write.insertInto("raw.pseudonym_secret")
    return pair


def test_demo_data_loads_as_on_duckdb_and_a_second_load_changes_nothing(tmp_path: Path) -> None:
    kaggle = write_demo_data(tmp_path / "kaggle", customers=300, seed=7, layout="kaggle")
    daily = write_demo_data(tmp_path / "daily", customers=300, seed=8, layout="daily")
    paths = [kaggle.path.parent, daily.path.parent]
    demo = Pair(SparkWarehouse(tmp_path / "wh"), tmp_path / "demo.duckdb")
    spark, duck = demo.load(paths)
    same_report(spark, duck)
    assert spark.rows_quarantined == 10 and all(f.synthetic for f in spark.loaded)
    demo.assert_same_raw()
    first = spark_raw(demo.spark)
    assert first["quarantined_rows"] and all(row[3] for row in first["quarantined_rows"])

    again, duck_again = demo.load(paths)
    same_report(again, duck_again)
    assert {reason for _, reason in again.skipped} == {"unchanged"} and not again.loaded
    assert spark_raw(demo.spark) == first


@pytest.mark.skipif(not REAL_DATA.is_dir(), reason="the real data is not on this machine")
def test_a_slice_of_the_real_data_loads_as_on_duckdb(real: Pair) -> None:
    files = sorted(REAL_DATA.glob("*.csv"))[:10]
    spark, duck = real.load(files)
    same_report(spark, duck)
    assert spark.rows_loaded > 10_000
    real.assert_same_raw()
    again, duck_again = real.load(files)
    same_report(again, duck_again)
    assert len(again.skipped) == 10 and not again.loaded
    real.assert_same_raw()


def test_bad_files_fail_with_the_duckdb_loaders_line_and_load_nothing(
    real: Pair, tmp_path: Path
) -> None:
    good = write_demo_data(tmp_path / "good", customers=60, seed=3, layout="daily")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "no_date.csv").write_text(
        "InvoiceNo,StockCode,Description,Quantity,UnitPrice,CustomerID,Country\n"
        "536365,85123A,HEART,6,2.55,17850,United Kingdom\n"
    )
    # A Shopify export whose dates are no dates: refused on its first records, which
    # only the task reads (the driver checks the header).
    rows = [{**row, "Created at": "soon"} for row in shopify_rows(SHOPIFY_ORDERS)]
    write_csv(bad / "no_dates.csv", SHOPIFY_HEADER, rows)
    (bad / "binary.csv").write_bytes(bytes(range(256)) * 64)
    shutil.copyfile(good.path, bad / "good.csv")  # outside the manifest: real data
    spark, duck = real.load([bad])
    assert len(duck.failed) == 3 and len(duck.loaded) == 1, [str(e) for e in duck.failed]
    same_report(spark, duck)
    sources = {row[8] for row in spark_raw(real.spark)["transactions"]}
    assert str(bad / "good.csv") in sources
    assert not sources & {str(bad / name) for name in ("no_date.csv", "no_dates.csv")}
    real.assert_same_raw()


def test_a_changed_file_replaces_its_rows_and_keeps_its_neighbours(
    real: Pair, tmp_path: Path
) -> None:
    folder = tmp_path / "shop"
    folder.mkdir()
    for name, seed in (("a.csv", 11), ("b.csv", 12)):
        demo = write_demo_data(tmp_path / name, customers=80, seed=seed, layout="daily")
        shutil.copyfile(demo.path, folder / name)  # outside the manifest: real data
    real.load([folder])  # a.csv and b.csv: one load, one partition
    lines = (folder / "a.csv").read_text(encoding="utf-8").splitlines(keepends=True)
    (folder / "a.csv").write_text("".join(lines[: len(lines) // 2]), encoding="utf-8")
    spark, duck = real.load([folder])
    same_report(spark, duck)
    assert [f.path for f in spark.loaded] == [str(folder / "a.csv")]
    real.assert_same_raw()
    sources = {row[8] for row in spark_raw(real.spark)["transactions"]}
    assert {str(folder / "a.csv"), str(folder / "b.csv")} <= sources
    # b.csv's rows moved with a.csv's new ones; the old partition is gone.
    assert real.load_ids()[0] == real.load_ids()[1]


def test_a_load_killed_before_the_ledger_then_loaded_again_is_a_clean_load(
    real: Pair, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "shop"
    folder.mkdir()
    first = write_demo_data(tmp_path / "one", customers=80, seed=21, layout="daily")
    shutil.copyfile(first.path, folder / "a.csv")
    real.load([folder])
    second = write_demo_data(tmp_path / "two", customers=80, seed=22, layout="daily")
    shutil.copyfile(second.path, folder / "b.csv")
    lines = (folder / "a.csv").read_text(encoding="utf-8").splitlines(keepends=True)
    (folder / "a.csv").write_text("".join(lines[:200]), encoding="utf-8")
    before = spark_raw(real.spark)
    partitions, ledgers = real.load_ids()

    def killed(*args: Any) -> None:
        raise RuntimeError("killed before the ledger write")

    monkeypatch.setattr(spark_loader, "_switch_ledger", killed)
    with pytest.raises(RuntimeError, match="killed"):
        load_files(real.spark, [folder])
    monkeypatch.undo()
    # The killed load's rows are in a partition of their own, which no ledger row names.
    assert real.load_ids() == (partitions + 1, ledgers)
    # The next load removes them first, even one with nothing to load.
    real.load([])
    real.assert_same_raw()
    assert spark_raw(real.spark) == before and real.load_ids() == (partitions, ledgers)

    spark, duck = real.load([folder])
    same_report(spark, duck)
    assert sorted(f.path for f in spark.loaded) == [str(folder / "a.csv"), str(folder / "b.csv")]
    real.assert_same_raw()
    assert spark_raw(real.spark) != before
    assert real.load_ids()[0] == real.load_ids()[1]


def test_a_shopify_export_gets_duckdbs_pseudonymous_keys_for_the_same_secret(
    real: Pair, tmp_path: Path
) -> None:
    export = write_shopify_from_demo(tmp_path / "data", customers=60, seed=7)
    spark, duck = real.load([export.path])
    same_report(spark, duck)
    assert spark.loaded[0].layout == "shopify"
    real.assert_same_raw()
    keys = {row[6] for row in spark_raw(real.spark)["transactions"] if row[8] == str(export.path)}
    assert len(keys) > 10
    assert all(k is None or (k.startswith("cust-") and len(k) == 25) for k in keys)
    assert session(real.spark).table("raw.pseudonym_secret").count() == 1


def test_table_sources_are_refused_in_one_line(real: Pair) -> None:
    report = load_files(real.spark, ["table:shop.orders"])
    assert [str(e) for e in report.failed] == [
        f"table:shop.orders: {spark_loader.TABLE_SOURCES_UNSUPPORTED}"
    ]
    assert not report.loaded
