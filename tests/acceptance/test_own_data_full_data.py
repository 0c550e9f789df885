"""Acceptance for "your own data" on the real UCI Online Retail data in ../shared.

Issue 14 asks that the real files, converted into what another store would hand over,
give *exactly* the same customers as the original files: a CSV with other column names
in another order, an extra column and day-first dates (read with a custom mapping
written here), typed Parquet files (read with no mapping at all), and gzip-compressed
copies of the original files. Each conversion is written by this test with plain DuckDB
(or gzip) straight from the original files, loaded into a fresh warehouse of its own
through ``insiders load`` (a gzip copy of a loaded file would be skipped as a copy),
and built with dbt up to ``marts.dim_customers``; every row and column of that mart must
equal the original files' (EXCEPT ALL both ways, no rounding), and so must the canonical
columns of ``raw.transactions`` and the ledger's counts. Never skipped: the data is in CI.
"""

from __future__ import annotations

import gzip
import shutil
from collections.abc import Callable
from pathlib import Path

import duckdb
import pytest

from models_py.locations import DUCKDB_CONFIG
from orchestration.cli import main
from orchestration.warehouse import load_files, path_literal
from tests.conftest import SHARED_BY_DAY, query

# The original files, every value as the text the file holds (no type inference).
ORIGINAL = (
    f"read_csv({path_literal(SHARED_BY_DAY / '*.csv')}, header = true, all_varchar = true, "
    "filename = true)"
)
ISO = "%Y-%m-%d %H:%M:%S"
DAY_FIRST = "%d/%m/%Y %H:%M:%S"
# The files are split into a few conversion files by day: each group's days start with
# these prefixes (so a directory holds several files, not one).
GROUPS = ("2010-12", "2011-0", "2011-10", "2011-11", "2011-12")

# The canonical columns of raw.transactions (not where a line came from: source_file
# and source_line name the converted file, which differs by design).
RAW_COLUMNS = (
    "InvoiceNo, StockCode, Description, Quantity, InvoiceDate, UnitPrice, CustomerID, Country, "
    "line_kind"
)

RENAMED_MAPPING = f"""\
# The real data with its columns renamed, reordered, one extra column the mapping
# ignores, and day-first dates: mapped back onto the canonical fields.
name: renamed-retail
columns:
  order_id: order_ref
  product_id: sku
  description: product_name
  quantity: qty
  ordered_at: ordered_on
  unit_price: price_gbp
  customer_id: client
  country: nation
ordered_at:
  format: "{DAY_FIRST}"
customer_id:
  kind: integer
"""


def _duckdb() -> duckdb.DuckDBPyConnection:
    """A fresh in-memory DuckDB that never installs or loads an extension."""
    return duckdb.connect(config=DUCKDB_CONFIG)


# Keeps the original files of one group: the day (file name) starts with $1.
IN_GROUP = "where starts_with(parse_filename(filename, true), $1)"


def write_renamed_csv(root: Path) -> tuple[Path, Path]:
    """The original lines as a store's own CSV: renamed columns in another order, an
    extra column, dates rewritten day first; values otherwise the files' own text.
    Returns (directory of CSV files, mapping file)."""
    out = root / "renamed"
    out.mkdir(parents=True)
    con = _duckdb()
    for i, prefix in enumerate(GROUPS):
        target = out / f"orders-{i}.csv"
        con.execute(
            f"""
            copy (
                select
                    CustomerID as client,
                    strftime(strptime(InvoiceDate, '{ISO}'), '{DAY_FIRST}') as ordered_on,
                    InvoiceNo as order_ref,
                    Country as nation,
                    'web' as channel,
                    Quantity as qty,
                    StockCode as sku,
                    UnitPrice as price_gbp,
                    Description as product_name
                from {ORIGINAL}
                {IN_GROUP}
            ) to {path_literal(target)} (format csv, header true)
            """,
            [prefix],
        )
    mapping = root / "custom.yml"
    mapping.write_text(RENAMED_MAPPING, encoding="utf-8")
    return out, mapping


def write_parquet(root: Path) -> tuple[Path, None]:
    """The original lines as typed Parquet files (a data lake's dump): timestamps,
    integer quantities, double prices and customer ids, the Online Retail header."""
    out = root / "parquet"
    out.mkdir(parents=True)
    con = _duckdb()
    for i, prefix in enumerate(GROUPS):
        target = out / f"orders-{i}.parquet"
        con.execute(
            f"""
            copy (
                select
                    InvoiceNo,
                    StockCode,
                    Description,
                    cast(Quantity as integer) as Quantity,
                    strptime(InvoiceDate, '{ISO}') as InvoiceDate,
                    cast(UnitPrice as double) as UnitPrice,
                    cast(CustomerID as double) as CustomerID,
                    Country
                from {ORIGINAL}
                {IN_GROUP}
            ) to {path_literal(target)} (format parquet)
            """,
            [prefix],
        )
    return out, None


def write_gzip(root: Path) -> tuple[Path, None]:
    """Each original file's bytes gzip-compressed, one .csv.gz per day."""
    out = root / "gzip"
    out.mkdir(parents=True)
    for source in sorted(SHARED_BY_DAY.glob("*.csv")):
        with source.open("rb") as plain, gzip.open(out / f"{source.name}.gz", "wb", 1) as packed:
            shutil.copyfileobj(plain, packed)
    return out, None


# The layout raw.loaded_files records for each conversion's files: the custom mapping's
# name, or the Online Retail preset the dates choose (ISO: the daily files').
LAYOUTS = {"renamed_csv_with_mapping": "renamed-retail", "parquet": "daily", "gzip_csv": "daily"}
CONVERSIONS: dict[str, Callable[[Path], tuple[Path, Path | None]]] = {
    "renamed_csv_with_mapping": write_renamed_csv,
    "parquet": write_parquet,
    "gzip_csv": write_gzip,
}


def build_dim_customers(warehouse: Path) -> None:
    """``insiders build --select +dim_customers``: the seeds, models and tests up to the
    mart (the clustering's labels are not needed to compare it); fail on any failure."""
    assert main(["build", "--warehouse", str(warehouse), "--select", "+dim_customers"]) == 0


def snapshot(warehouse: Path, target: Path) -> Path:
    """Copy what is compared out of a warehouse into Parquet files under ``target``:
    dbt, run in this process, may hold the warehouse open, so the comparisons read
    these copies instead of attaching the file."""
    target.mkdir(parents=True)
    query(
        warehouse,
        f"copy marts.dim_customers to {path_literal(target / 'dim_customers.parquet')}"
        " (format parquet)",
    )
    query(
        warehouse,
        f"copy (select {RAW_COLUMNS} from raw.transactions) to "
        f"{path_literal(target / 'transactions.parquet')} (format parquet)",
    )
    return target


def differences(left: Path, right: Path) -> tuple[int, int, list[tuple]]:
    """Rows of ``left`` missing from ``right`` and the reverse (EXCEPT ALL, so duplicates
    count), with a few of them to show."""
    con = _duckdb()
    a, b = path_literal(left), path_literal(right)
    only_left = f"select * from {a} except all select * from {b}"
    only_right = f"select * from {b} except all select * from {a}"
    n_left = con.execute(f"select count(*) from ({only_left})").fetchone()[0]
    n_right = con.execute(f"select count(*) from ({only_right})").fetchone()[0]
    shown = con.execute(
        f"select 'baseline only', * from ({only_left}) union all "
        f"select 'conversion only', * from ({only_right}) order by 2 limit 6"
    ).fetchall()
    return n_left, n_right, shown


def ledger(warehouse: Path) -> tuple[int, int, int, int]:
    """(files, raw lines, loaded rows, quarantined rows) of raw.loaded_files."""
    return query(
        warehouse,
        "select count(*), sum(raw_lines), sum(loaded_rows), sum(quarantined_rows)"
        " from raw.loaded_files",
    )[0]


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, tuple[int, int, int, int]]:
    """The original daily files loaded and built: (snapshot directory, ledger)."""
    assert SHARED_BY_DAY.is_dir(), f"acceptance data missing: {SHARED_BY_DAY}"
    root = tmp_path_factory.mktemp("own_data_baseline")
    warehouse = root / "warehouse.duckdb"
    report = load_files(warehouse, [SHARED_BY_DAY])
    assert not report.failed, [str(e) for e in report.failed]
    build_dim_customers(warehouse)
    # Not vacuous: equal empty marts would compare equal.
    assert query(warehouse, "select count(*) from marts.dim_customers")[0][0] > 0
    return snapshot(warehouse, root / "compare"), ledger(warehouse)


@pytest.mark.parametrize("conversion", list(CONVERSIONS))
def test_a_converted_copy_gives_the_same_customers(
    conversion: str, baseline: tuple[Path, tuple[int, int, int, int]], tmp_path: Path
) -> None:
    expected, (files, raw_lines, loaded, quarantined) = baseline
    data, mapping = CONVERSIONS[conversion](tmp_path / "data")
    warehouse = tmp_path / "wh" / "warehouse.duckdb"
    command = ["load", "--warehouse", str(warehouse), str(data)]
    if mapping is not None:
        command += ["--mapping", str(mapping)]
    assert main(command) == 0

    # Counts reconcile: every line of the originals is loaded (none lost, none added)
    # and as many are quarantined as from the originals.
    got_files, got_raw, got_loaded, got_quarantined = ledger(warehouse)
    assert got_files == (files if conversion == "gzip_csv" else len(GROUPS))
    assert (got_raw, got_loaded, got_quarantined) == (raw_lines, loaded, quarantined)
    assert query(warehouse, "select distinct layout from raw.loaded_files") == [
        (LAYOUTS[conversion],)
    ]

    build_dim_customers(warehouse)
    got = snapshot(warehouse, tmp_path / "compare")
    found = {
        table: differences(expected / f"{table}.parquet", got / f"{table}.parquet")
        for table in ("dim_customers", "transactions")
    }
    assert {table: counts for table, (*counts, _) in found.items()} == {
        "dim_customers": [0, 0],
        "transactions": [0, 0],
    }, "; ".join(
        f"{table}: {a} rows only from the originals, {b} only from the {conversion}, e.g. {shown}"
        for table, (a, b, shown) in found.items()
        if a or b
    )


def test_the_conversions_are_what_they_claim(tmp_path: Path) -> None:
    """The converted files are what the comparison relies on: the renamed CSV has none
    of the Online Retail names, the extra column, and day-first dates only (so the
    mapping's format matters); the Parquet columns are typed; the gzip files are the
    original bytes."""
    con = _duckdb()
    renamed, mapping = write_renamed_csv(tmp_path / "csv")
    csv_files = f"read_csv({path_literal(renamed / '*.csv')}, header = true, all_varchar = true)"
    header = [row[0] for row in con.execute(f"describe select * from {csv_files}").fetchall()]
    assert header == [
        "client", "ordered_on", "order_ref", "nation", "channel", "qty", "sku", "price_gbp",
        "product_name",
    ]  # fmt: skip
    day_first, iso, lines = con.execute(
        "select count(*) filter (where try_strptime(ordered_on, $1) is not null),"
        " count(*) filter (where try_strptime(ordered_on, $2) is not null), count(*)"
        f" from {csv_files}",
        [DAY_FIRST, ISO],
    ).fetchone()
    assert (day_first, iso) == (lines, 0)
    assert mapping.read_text(encoding="utf-8") == RENAMED_MAPPING

    parquet, _ = write_parquet(tmp_path / "pq")
    assert len(list(parquet.glob("*.parquet"))) == len(GROUPS)
    types = con.execute(
        f"select column_name, column_type from (describe select * from "
        f"read_parquet({path_literal(parquet / '*.parquet')}))"
    ).fetchall()
    assert types == [
        ("InvoiceNo", "VARCHAR"), ("StockCode", "VARCHAR"), ("Description", "VARCHAR"),
        ("Quantity", "INTEGER"), ("InvoiceDate", "TIMESTAMP"), ("UnitPrice", "DOUBLE"),
        ("CustomerID", "DOUBLE"), ("Country", "VARCHAR"),
    ]  # fmt: skip

    packed, _ = write_gzip(tmp_path / "gz")
    originals = sorted(SHARED_BY_DAY.glob("*.csv"))
    assert sorted(p.name for p in packed.iterdir()) == [f"{p.name}.gz" for p in originals]
    for original in originals[:: len(originals) // 10]:
        assert gzip.decompress((packed / f"{original.name}.gz").read_bytes()) == (
            original.read_bytes()
        )
