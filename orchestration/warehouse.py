"""The DuckDB warehouse: where it lives, and loading transaction files into ``raw``.

Loading is idempotent per file content. A file whose path and content are already
loaded is skipped; a file whose content changed replaces its own rows; content
already loaded under another path is skipped, so a copy cannot double the revenue.
All files of one call are written in a single transaction: a crash leaves the
warehouse as it was.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from models_py.ingest import (
    STAGED_TABLE,
    RawFile,
    TransactionFileError,
    file_sha256,
    split_file,
    stage_records,
)
from orchestration.ml_tables import ML_DDL

WAREHOUSE_ENV = "INSIDERS_WAREHOUSE"
SOURCE_ENV = "INSIDERS_SOURCE"  # default source of `insiders run` and the sensor
# Not "insiders.duckdb": DuckDB names the catalog after the file, and a catalog
# "insiders" would make the schema reference insiders.members ambiguous.
DEFAULT_WAREHOUSE = Path("warehouse") / "insiders_warehouse.duckdb"
SCHEMAS = ("raw", "staging", "intermediate", "marts", "ml", "insiders", "main")
_WORKERS = min(4, os.cpu_count() or 1)

RAW_DDL = """
create schema if not exists raw;
create table if not exists raw.transactions (
    InvoiceNo varchar not null,
    StockCode varchar not null,
    Description varchar,
    Quantity integer not null,
    InvoiceDate timestamp not null,
    UnitPrice decimal(18, 4) not null,
    CustomerID varchar,
    Country varchar,
    source_file varchar not null,
    source_line bigint not null
);
create table if not exists raw.quarantined_rows (
    source_file varchar not null,
    source_line bigint not null,
    raw_record varchar,
    reason varchar not null
);
create table if not exists raw.loaded_files (
    source_file varchar primary key,
    file_sha256 varchar not null,
    layout varchar not null,
    encoding varchar not null,
    raw_lines bigint not null,
    loaded_rows bigint not null,
    quarantined_rows bigint not null,
    loaded_at timestamp not null
);
"""


def resolve_warehouse(path: str | os.PathLike[str] | None = None) -> Path:
    """``--warehouse``, else ``$INSIDERS_WAREHOUSE``, else the default file.

    Refuses a file named like one of the warehouse's schemas (``insiders.duckdb``):
    DuckDB would name its catalog ``insiders`` and ``insiders.members`` would become
    ambiguous for every reader.
    """
    chosen = Path(path or os.environ.get(WAREHOUSE_ENV) or DEFAULT_WAREHOUSE)
    if chosen.stem.lower() in SCHEMAS:
        raise ValueError(
            f"{chosen}: a warehouse file may not be named like a schema "
            f"({', '.join(SCHEMAS)}): DuckDB would make '{chosen.stem}.<table>' ambiguous"
        )
    return chosen.expanduser().resolve()


def connect(path: Path, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """Open the warehouse file; when writing, create its folder and the Python-owned
    tables (``raw`` and ``ml``), so dbt sources exist before their first load."""
    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(path), read_only=read_only)
    if not read_only:
        con.execute(RAW_DDL)
        con.execute(ML_DDL)
    return con


@dataclass
class LoadReport:
    """What one ``load`` did, file by file, with the row counts that reconcile."""

    loaded: list[RawFile] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    failed: list[TransactionFileError] = field(default_factory=list)
    rows_loaded: int = 0
    rows_quarantined: int = 0

    def summary(self) -> str:
        return (
            f"files loaded: {len(self.loaded)}, skipped: {len(self.skipped)}, "
            f"failed: {len(self.failed)}; rows loaded: {self.rows_loaded}, "
            f"rows quarantined: {self.rows_quarantined}"
        )


def discover_files(paths: Iterable[str | os.PathLike[str]]) -> list[Path | TransactionFileError]:
    """Expand directories into their ``*.csv`` files (recursively, hidden ones left out).

    A file named twice (``f.csv f.csv``, or ``dir dir/f.csv``) is one file: listed once,
    at its first mention, so its rows are loaded once.
    """
    found: list[Path | TransactionFileError] = []
    seen: set[str] = set()

    def add(item: Path | TransactionFileError) -> None:
        key = str(item) if isinstance(item, Path) else item.path
        if key not in seen:
            seen.add(key)
            found.append(item)

    for raw in paths:
        path = Path(raw).expanduser().resolve()
        if path.is_dir():
            for item in sorted(
                p
                for p in path.rglob("*")
                if p.is_file()
                and p.suffix.lower() == ".csv"
                and not any(part.startswith(".") for part in p.relative_to(path).parts)
            ):
                add(item.resolve())
        elif path.is_file():
            add(path)
        else:
            add(TransactionFileError(path, "no such file or directory"))
    return found


def _read(item: Path) -> tuple[Path, bytes, str] | TransactionFileError:
    try:
        data = item.read_bytes()
    except OSError as exc:
        return TransactionFileError(item, f"cannot read ({exc.strerror})")
    return item, data, file_sha256(data)


def _split(job: tuple[Path, bytes, str]) -> RawFile | TransactionFileError:
    try:
        return split_file(*job)
    except TransactionFileError as exc:
        return exc


def load_files(warehouse: Path, paths: Sequence[str | os.PathLike[str]]) -> LoadReport:
    """Load files and directories into ``raw``; see the module docstring for the rules.

    Reading, hashing and splitting run on a small thread pool: Arrow's CSV reader and
    hashlib release the GIL, so the cores share the work of many daily files.
    """
    report = LoadReport()
    con = connect(warehouse)
    try:
        known = dict(
            con.execute("select source_file, file_sha256 from raw.loaded_files").fetchall()
        )
        owner_of = {sha: source for source, sha in known.items()}
        found = discover_files(paths)
        report.failed.extend(f for f in found if isinstance(f, TransactionFileError))
        jobs: list[tuple[Path, bytes, str]] = []
        with ThreadPoolExecutor(max_workers=_WORKERS) as pool:
            for read in pool.map(_read, [f for f in found if isinstance(f, Path)]):
                if isinstance(read, TransactionFileError):
                    report.failed.append(read)
                    continue
                source, sha = str(read[0]), read[2]
                if known.get(source) == sha:
                    report.skipped.append((source, "unchanged"))
                elif sha in owner_of and owner_of[sha] != source:
                    report.skipped.append(
                        (source, f"same content already loaded from {owner_of[sha]}")
                    )
                else:
                    owner_of[sha] = source
                    jobs.append(read)
            for parsed in pool.map(_split, jobs):
                if isinstance(parsed, TransactionFileError):
                    report.failed.append(parsed)
                else:
                    report.loaded.append(parsed)
        if report.loaded:
            _write(con, report.loaded, report)
    finally:
        con.close()
    return report


def _write(con: duckdb.DuckDBPyConnection, files: list[RawFile], report: LoadReport) -> None:
    con.execute("begin transaction")
    try:
        stage_records(con, files)
        con.execute(
            f"""
            delete from raw.transactions
            where source_file in (select distinct source_file from {STAGED_TABLE});
            delete from raw.quarantined_rows
            where source_file in (select distinct source_file from {STAGED_TABLE});
            insert into raw.transactions
            select
                InvoiceNo, StockCode, Description, Quantity, InvoiceDate, UnitPrice,
                CustomerID, Country, source_file, source_line
            from {STAGED_TABLE}
            where reason is null;
            insert into raw.quarantined_rows
            select source_file, source_line, raw_record, reason
            from {STAGED_TABLE}
            where reason is not null;
            """
        )
        counts = dict(
            (row[0], (row[1], row[2]))
            for row in con.execute(
                f"""
                select source_file, count(*) filter (where reason is null),
                    count(*) filter (where reason is not null)
                from {STAGED_TABLE} group by source_file
                """
            ).fetchall()
        )
        rows = []
        for f in files:
            loaded, quarantined = counts.get(f.path, (0, 0))
            rows.append((f.path, f.sha256, f.layout, f.encoding, f.raw_lines, loaded, quarantined))
            report.rows_loaded += loaded
            report.rows_quarantined += quarantined
        con.executemany(
            """
            insert or replace into raw.loaded_files
            values (?, ?, ?, ?, ?, ?, ?, current_localtimestamp())
            """,
            rows,
        )
        con.execute(f"drop table {STAGED_TABLE}")
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise
