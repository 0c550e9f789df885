"""The DuckDB warehouse: where it lives, and loading transaction files into ``raw``.

Loading is idempotent per file content. A file whose path and content are already
loaded is skipped; a file whose content changed replaces its own rows; content
already loaded under another path is skipped, so a copy cannot double the revenue.
All files of one call are written in a single transaction: a crash leaves the
warehouse as it was.

Synthetic demo data (files listed in their folder's ``SYNTHETIC_MARKER`` manifest) is
marked ``is_synthetic`` in ``raw.loaded_files``. It never mixes with real data: the
first real file loaded removes every synthetic file's rows in the same transaction, and
synthetic files are not loaded into a warehouse that holds real data.

Every DuckDB connection the project opens uses :data:`DUCKDB_CONFIG`: no extension is
ever installed or loaded behind our back (no internet, and a SQLite file given as a
warehouse once made DuckDB try to download ``sqlite_scanner``). DuckDB refuses two
connections to one file in one process with different configurations, so in-process
readers (dbt through ``profiles.yml``'s ``config_options``, tests) pass the same one.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from models_py.ingest import (
    COMPRESSED_SUFFIXES,
    STAGED_TABLE,
    SYNTHETIC_MARKER,
    RawFile,
    TransactionFileError,
    display_path,
    file_sha256,
    split_file,
    stage_records,
    synthetic_hashes,
)
from models_py.locations import DUCKDB_CONFIG

SOURCE_ENV = "INSIDERS_SOURCE"  # default source of `insiders run` and the sensor
_WORKERS = min(4, os.cpu_count() or 1)
# Bytes 8..12 of every DuckDB database file.
_DUCKDB_MAGIC = b"DUCK"

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
    loaded_at timestamp not null,
    is_synthetic boolean default false
);
alter table raw.loaded_files add column if not exists is_synthetic boolean default false;
"""


def path_literal(path: Path) -> str:
    """A path as a SQL string literal, for the statements that take no parameters
    (ATTACH, COPY ... TO): the one place such text is quoted."""
    return "'" + str(path).replace("'", "''") + "'"


class WarehouseError(ValueError):
    """A warehouse path that is not (and cannot become) a DuckDB database; one line."""


def check_warehouse(path: Path, write: bool = True) -> None:
    """Refuse, in one line, a path DuckDB would choke on or silently misuse.

    Before this check an existing CSV given as ``--warehouse`` "loaded" its rows
    nowhere (rc 0), and a directory, ``/proc/x.duckdb``, a read-only place or a SQLite
    file each ended in a DuckDB traceback. An existing non-empty file must carry
    DuckDB's header magic; a new (or empty) file must be creatable when writing.
    """
    shown = display_path(path)
    if path.is_dir():
        raise WarehouseError(f"{shown}: is a directory, expected a DuckDB database file")
    if path.exists():
        if not path.is_file():
            raise WarehouseError(f"{shown}: not a regular file, expected a DuckDB database")
        try:
            with path.open("rb") as handle:
                head = handle.read(16)
        except OSError as exc:
            raise WarehouseError(f"{shown}: cannot read the warehouse ({exc.strerror})") from None
        if not head and not write:
            raise WarehouseError(f"{shown}: empty file, not a DuckDB warehouse yet")
        if head and head[8:12] != _DUCKDB_MAGIC:
            if head.startswith(b"SQLite format 3\x00"):
                what = "a SQLite database"
            elif _looks_like_text(head):
                what = "a text file"
            else:
                what = "some other file"
            raise WarehouseError(
                f"{shown}: not a DuckDB database ({what}); give a new file or an existing "
                "warehouse, e.g. warehouse/insiders_warehouse.duckdb"
            )
        if write and not os.access(path, os.W_OK):
            raise WarehouseError(f"{shown}: the warehouse is not writable")
        return
    if not write:
        raise WarehouseError(f"{shown}: no such warehouse (load data first: insiders load PATH)")
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise WarehouseError(
            f"{shown}: cannot create the warehouse: {display_path(folder)} is not a directory"
        )
    _probe_creatable(path)


def _looks_like_text(head: bytes) -> bool:
    """CSV and other text have no NUL byte in their first bytes; database files do."""
    return b"\x00" not in head


def _probe_creatable(path: Path) -> None:
    """Create the folder and an empty file where the warehouse goes, then remove the
    file: the only check that holds for root, read-only mounts and ``/proc`` alike."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return  # appeared meanwhile: DuckDB will judge it
    except OSError as exc:
        raise WarehouseError(
            f"{display_path(path)}: cannot create the warehouse ({exc.strerror})"
        ) from None
    os.close(fd)
    path.unlink()


def connect(path: Path, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """Open the warehouse file; when writing, create its folder and the loader's
    ``raw`` tables, so dbt sources exist before their first load (the ``ml`` tables
    are the clustering's: ``orchestration.ml_tables.ensure_ml_tables``).

    Raises :class:`WarehouseError` (one line) for a path that is no DuckDB database.
    An empty file (as ``mktemp`` leaves) holds nothing and DuckDB refuses it, so a
    writer replaces it with a new database.
    """
    check_warehouse(path, write=not read_only)
    if not read_only and path.is_file() and path.stat().st_size == 0:
        path.unlink()
    con = duckdb.connect(str(path), read_only=read_only, config=DUCKDB_CONFIG)
    if not read_only:
        con.execute(RAW_DDL)
    return con


@dataclass(frozen=True)
class SkippedFile:
    """A file a directory scan passes over by design, with the reason it gives."""

    path: str
    reason: str


@dataclass
class LoadReport:
    """What one ``load`` did, file by file, with the row counts that reconcile.

    ``skipped`` holds (path, reason) pairs: unchanged files, copies, and the files a
    directory scan passes over (not CSV, hidden, compressed). ``removed_synthetic``
    lists the synthetic demo files whose rows this load removed.
    """

    loaded: list[RawFile] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    failed: list[TransactionFileError] = field(default_factory=list)
    rows_loaded: int = 0
    rows_quarantined: int = 0
    removed_synthetic: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"files loaded: {len(self.loaded)}, skipped: {len(self.skipped)}, "
            f"failed: {len(self.failed)}; rows loaded: {self.rows_loaded}, "
            f"rows quarantined: {self.rows_quarantined}"
        )

    def synthetic_note(self) -> str | None:
        """The one line that says demo data was removed, or None."""
        if not self.removed_synthetic:
            return None
        n = len(self.removed_synthetic)
        return (
            f"removed synthetic demo data ({n} file{'s' if n != 1 else ''}) "
            "before loading real data"
        )


Found = Path | TransactionFileError | SkippedFile


def discover_files(paths: Iterable[str | os.PathLike[str]]) -> list[Found]:
    """Expand directories into their ``*.csv`` files (recursively), in path order.

    What a directory holds besides is listed as :class:`SkippedFile` with the reason
    (not a .csv file, hidden file or directory, compressed, a link to a directory not
    followed), so nothing is passed over in silence; the synthetic-data manifest is
    the loader's own and is not listed. A file named twice (``f.csv f.csv``, or ``dir
    dir/f.csv``) is one file: listed once, at its first mention, so its rows are loaded
    once.
    """
    found: list[Found] = []
    seen: set[str] = set()

    def add(item: Found) -> None:
        key = _found_key(item)
        if key not in seen:
            seen.add(key)
            found.append(item)

    for raw in paths:
        try:
            path = Path(raw).expanduser().resolve()
        except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop
            add(TransactionFileError(Path(raw), f"cannot resolve the path ({exc})"))
            continue
        if path.is_dir():
            for item in sorted(_scan(path), key=_found_key):
                add(item)
        elif path.is_file():
            add(path)
        elif path.exists():
            add(TransactionFileError(path, "not a regular file (a FIFO, socket or device)"))
        else:
            add(TransactionFileError(path, "no such file or directory"))
    return found


def _found_key(item: Found) -> str:
    return str(item) if isinstance(item, Path) else item.path


def _scan(root: Path) -> Iterator[Found]:
    """The files under ``root``: ``*.csv`` as paths, the rest with a reason."""
    errors: list[OSError] = []
    for folder, dirs, files in os.walk(root, onerror=errors.append):
        here = Path(folder)
        for name in list(dirs):
            sub = here / name
            if name.startswith("."):
                dirs.remove(name)
                yield SkippedFile(display_path(sub), "hidden directory")
            elif sub.is_symlink():
                yield SkippedFile(display_path(sub), "link to a directory, not followed")
        for name in files:
            item = here / name
            suffix = item.suffix.lower()
            if name == SYNTHETIC_MARKER:
                continue
            if name.startswith("."):
                yield SkippedFile(display_path(item), "hidden file")
            elif suffix in COMPRESSED_SUFFIXES:
                yield SkippedFile(display_path(item), COMPRESSED_SUFFIXES[suffix])
            elif suffix != ".csv":
                yield SkippedFile(display_path(item), "not a .csv file")
            elif not item.exists():
                yield TransactionFileError(item, "broken symbolic link")
            elif not item.is_file():
                yield TransactionFileError(item, "not a regular file (a FIFO, socket or device)")
            else:
                yield item.resolve()
    for error in errors:
        where = Path(error.filename) if error.filename else root
        yield TransactionFileError(where, f"cannot read the directory ({error.strerror})")


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


_NOT_BESIDE_REAL = "synthetic demo data: not loaded into a warehouse that holds real data"


def load_files(warehouse: Path, paths: Sequence[str | os.PathLike[str]]) -> LoadReport:
    """Load files and directories into ``raw``; see the module docstring for the rules.

    Reading, hashing and splitting run on a small thread pool: Arrow's CSV reader and
    hashlib release the GIL, so the cores share the work of many daily files.
    """
    report = LoadReport()
    con = connect(warehouse)
    try:
        known: dict[str, tuple[str, bool]] = {
            source: (sha, bool(synthetic))
            for source, sha, synthetic in con.execute(
                "select source_file, file_sha256, is_synthetic from raw.loaded_files"
            ).fetchall()
        }
        owner_of = {sha: source for source, (sha, _) in known.items()}
        holds_real = any(not synthetic for _, synthetic in known.values())
        found = discover_files(paths)
        for item in found:
            if isinstance(item, TransactionFileError):
                report.failed.append(item)
            elif isinstance(item, SkippedFile):
                report.skipped.append((item.path, item.reason))
        jobs: list[tuple[Path, bytes, str]] = []
        with ThreadPoolExecutor(max_workers=_WORKERS) as pool:
            for read in pool.map(_read, [f for f in found if isinstance(f, Path)]):
                if isinstance(read, TransactionFileError):
                    report.failed.append(read)
                    continue
                source, sha = display_path(read[0]), read[2]
                if known.get(source, ("",))[0] == sha:
                    report.skipped.append((source, "unchanged"))
                elif sha in owner_of and owner_of[sha] != source:
                    report.skipped.append(
                        (source, f"same content already loaded from {owner_of[sha]}")
                    )
                else:
                    owner_of[sha] = source
                    jobs.append(read)
            manifests: dict[Path, frozenset[str]] = {}
            for job, parsed in zip(jobs, pool.map(_split, jobs), strict=True):
                if isinstance(parsed, TransactionFileError):
                    report.failed.append(parsed)
                    continue
                folder = job[0].parent
                if folder not in manifests:
                    manifests[folder] = synthetic_hashes(folder)
                report.loaded.append(
                    dataclasses.replace(parsed, synthetic=parsed.sha256 in manifests[folder])
                )
        if holds_real or any(not f.synthetic for f in report.loaded):
            report.skipped.extend((f.path, _NOT_BESIDE_REAL) for f in report.loaded if f.synthetic)
            report.loaded = [f for f in report.loaded if not f.synthetic]
            report.removed_synthetic = sorted(
                source for source, (_, synthetic) in known.items() if synthetic
            )
        if report.loaded:
            _write(con, report.loaded, report)
        else:
            report.removed_synthetic = []
    finally:
        con.close()
    return report


def _write(con: duckdb.DuckDBPyConnection, files: list[RawFile], report: LoadReport) -> None:
    """Replace the rows of ``files`` (and remove ``report.removed_synthetic``'s) in one
    transaction: any failure rolls all of it back."""
    con.execute("begin transaction")
    try:
        stage_records(con, files)
        if report.removed_synthetic:
            con.execute(
                """
                delete from raw.transactions where source_file in
                    (select source_file from raw.loaded_files where is_synthetic);
                delete from raw.quarantined_rows where source_file in
                    (select source_file from raw.loaded_files where is_synthetic);
                delete from raw.loaded_files where is_synthetic;
                """
            )
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
            rows.append(
                (
                    f.path,
                    f.sha256,
                    f.layout,
                    f.encoding,
                    f.raw_lines,
                    loaded,
                    quarantined,
                    f.synthetic,
                )
            )
            report.rows_loaded += loaded
            report.rows_quarantined += quarantined
        _record_files(con, rows)
        con.execute(f"drop table {STAGED_TABLE}")
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        report.rows_loaded = report.rows_quarantined = 0
        report.removed_synthetic = []
        raise


def _record_files(con: duckdb.DuckDBPyConnection, rows: list[tuple[Any, ...]]) -> None:
    """One ``raw.loaded_files`` row per file: what it held and how it was read."""
    con.executemany(
        """
        insert or replace into raw.loaded_files (
            source_file, file_sha256, layout, encoding, raw_lines, loaded_rows,
            quarantined_rows, is_synthetic, loaded_at
        )
        values (?, ?, ?, ?, ?, ?, ?, ?, current_localtimestamp())
        """,
        rows,
    )
