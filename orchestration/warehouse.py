"""The DuckDB warehouse: where it lives, and loading order lines into ``raw`` (of a
DuckDB file, or of a PostgreSQL database: ``orchestration.pg_loader``): CSV files
(gzip-compressed too), Parquet files, directories of them, and ``table:SCHEMA.NAME``
sources (``orchestration.table_source``), each read with a mapping
(``models_py.mapping``).

Loading is idempotent per file content. A file whose path and content are already
loaded is skipped; a file whose content changed replaces its own rows; content
already loaded under another path is skipped, so a copy cannot double the revenue.
All files of one call are written in a single transaction: a crash leaves the
warehouse as it was. Everything but the writes is shared by both targets: the files,
rows, quarantine reasons, counts and report are the same on DuckDB and PostgreSQL
(:class:`RawSink` is the part that differs).

Memory does not grow with the input: files are hashed in blocks, then split, typed and
inserted in batches of :data:`BATCH_BYTES` of CSV (a file larger than ``CHUNK_BYTES``
alone, chunk by chunk), each batch gone before the next is read, all in that one
transaction. 30 times the real data (16 M lines, 1.4 GB) loads in under 1 GiB.

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
import gzip
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from models_py.columnar import ColumnarSplitter, is_parquet, parquet_splitter
from models_py.ingest import (
    CHUNK_BYTES,
    COMPRESSED_SUFFIXES,
    GZIP_MAGIC,
    STAGED_TABLE,
    SYNTHETIC_MARKER,
    FileInfo,
    FileSplitter,
    Piece,
    TransactionFileError,
    display_path,
    hash_file,
    mapping_fingerprint,
    read_header,
    stage_records,
    synthetic_hashes,
)
from models_py.locations import DUCKDB_CONFIG
from models_py.mapping import Mapping
from orchestration import table_source
from orchestration.table_source import TableRef

if TYPE_CHECKING:
    from orchestration.postgres import PgWarehouse
    from orchestration.spark import SparkWarehouse

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
    source_line bigint not null,
    line_kind varchar not null default 'record'
);
alter table raw.transactions add column if not exists line_kind varchar default 'record';
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
    is_synthetic boolean default false,
    refund_rows bigint default 0,
    mapping_fingerprint varchar default ''
);
alter table raw.loaded_files add column if not exists is_synthetic boolean default false;
alter table raw.loaded_files add column if not exists refund_rows bigint default 0;
alter table raw.loaded_files add column if not exists mapping_fingerprint varchar default '';
create table if not exists raw.customer_identities (
    customer_key varchar primary key,
    customer_ref varchar not null,
    first_source_file varchar not null
);
create table if not exists raw.pseudonym_secret (secret varchar not null);
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

    loaded: list[FileInfo] = field(default_factory=list)
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


Found = Path | TransactionFileError | SkippedFile | TableRef


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
        if isinstance(raw, str) and table_source.is_table(raw):
            try:
                add(table_source.parse(raw))
            except TransactionFileError as exc:
                add(exc)
            continue
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


_LOADABLE = (".csv", ".parquet")


def _scan(root: Path) -> Iterator[Found]:
    """The files under ``root``: CSV (``*.csv``, gzip-compressed ``*.csv.gz``) and
    Parquet (``*.parquet``) as paths, the rest with a reason."""
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
            elif suffix == ".gz" and not name.lower().endswith(".csv.gz"):
                yield SkippedFile(display_path(item), "gzip-compressed, but not a .csv.gz file")
            elif suffix not in _LOADABLE and not name.lower().endswith(".csv.gz"):
                yield SkippedFile(display_path(item), "not a .csv, .csv.gz or .parquet file")
            elif not item.exists():
                yield TransactionFileError(item, "broken symbolic link")
            elif not item.is_file():
                yield TransactionFileError(item, "not a regular file (a FIFO, socket or device)")
            else:
                yield item.resolve()
    for error in errors:
        where = Path(error.filename) if error.filename else root
        yield TransactionFileError(where, f"cannot read the directory ({error.strerror})")


# Files are split, typed and inserted in batches of at most this many bytes of CSV, so
# the loader's memory does not grow with the input (about 5x a batch at its peak: the
# Arrow records and DuckDB's typed copy); a file larger than CHUNK_BYTES is streamed
# in chunks, alone. All batches are written in one transaction.
BATCH_BYTES = 32 * 2**20
# While a load runs, DuckDB may keep at most this much (or the configured limit if
# lower): the load's uncommitted rows stay in its buffer pool (about 13 MB per million
# lines) until evicted, so under the configured 4 GB a load of 100 times the real data
# would hold 700 MB of them. Evicting costs nothing: they are already written to the
# file. The configured limit is set back when the load ends.
LOAD_MEMORY_LIMIT = "512MB"
# The staging DuckDB (typing one batch, in memory): room for a batch's typed copy.
_STAGING_MEMORY_LIMIT = "1GB"
_SIZE = re.compile(r"\s*([0-9]+(?:\.[0-9]*)?)\s*([A-Za-z]*)\s*")
_UNITS = {
    "": 1, "b": 1, "byte": 1, "bytes": 1,
    "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
    "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
}  # fmt: skip


@dataclass(frozen=True)
class _Job:
    """A file found by the scan, hashed and its head checked, before it is split."""

    file: Path
    path: str  # display_path(file)
    sha256: str
    size: int
    problem: TransactionFileError | None  # read_header's verdict
    mapping: Mapping | None = None  # the --mapping given (None: a preset per header)
    fingerprint: str = ""  # mapping_fingerprint of the mapping the header resolved to
    parquet: bool = False
    table: table_source.OpenedTable | None = None  # a table:SCHEMA.NAME source

    text_bytes: int | None = None  # what a compressed file holds (_text_bytes)

    @property
    def weight(self) -> int:
        """About the bytes of text the file holds, what batches are measured in."""
        return self.size if self.text_bytes is None else self.text_bytes

    @property
    def streamed(self) -> bool:
        """Loaded alone, piece by piece: a large file, any table."""
        return self.table is not None or self.weight > CHUNK_BYTES

    def splitter(self) -> FileSplitter | ColumnarSplitter:
        if self.table is not None:
            return _table_splitter(self.table, self.mapping)
        if self.parquet:
            return parquet_splitter(self.file, self.sha256, self.mapping)
        return FileSplitter(self.file, self.sha256, CHUNK_BYTES, self.mapping)


def _probe(item: Path, mapping: Mapping | None = None) -> _Job | TransactionFileError:
    """Hash a file (in blocks: nothing kept) and check its head; an unreadable file is
    an error, a file that is no transaction file a job that will fail."""
    try:
        size = item.stat().st_size
        sha = hash_file(item)
    except gzip.BadGzipFile as exc:
        return TransactionFileError(item, str(exc))
    except OSError as exc:
        return TransactionFileError(item, f"cannot read ({exc.strerror})")
    parquet = is_parquet(item)
    if not parquet and item.suffix.lower() == ".parquet":
        problem = TransactionFileError(item, "not a Parquet file (no PAR1 magic bytes)")
        return _Job(item, display_path(item), sha, size, problem, mapping)
    try:
        if parquet:
            header = parquet_splitter(item, sha, mapping).header()
        else:
            header = read_header(item, mapping)
    except TransactionFileError as exc:
        return _Job(item, display_path(item), sha, size, exc, mapping, parquet=parquet)
    fingerprint = mapping_fingerprint(header.mapping)
    return _Job(
        item, display_path(item), sha, size, None, mapping, fingerprint, parquet,
        text_bytes=_text_bytes(item, parquet),
    )  # fmt: skip


# Bytes of text a Parquet row is counted as (the real data's lines average 89 bytes).
# Its footer's uncompressed size is no measure: dictionary-encoded text is tiny there
# (34 MB of Parquet at 10x the real data said 80 MB, and batches of it peaked at 2.1 GB).
_PARQUET_ROW_BYTES = 100
# CSV text rarely packs more than this (the real data: 5.8); see _text_bytes.
_GZIP_RATIO = 10


def _text_bytes(path: Path, parquet: bool) -> int | None:
    """About the bytes of text a compressed file holds once unpacked, None for plain
    text: a batch of files is measured in these (counted by file size, 34 MB of
    Parquet holding 466 MB of text made one batch that peaked at 1.1 GB). Parquet: its
    rows times :data:`_PARQUET_ROW_BYTES`; gzip: its last 4 bytes (the last member's
    size modulo 4 GiB), at least :data:`_GZIP_RATIO` times the compressed size."""
    try:
        if parquet:
            return pq.ParquetFile(path).metadata.num_rows * _PARQUET_ROW_BYTES
        with path.open("rb") as handle:
            if handle.read(2) != GZIP_MAGIC:
                return None
            handle.seek(-4, os.SEEK_END)
            unpacked = int.from_bytes(handle.read(4), "little")
            # The trailer is the last member's size (a file of concatenated members says
            # less than it holds): at least _GZIP_RATIO times the compressed size.
            return max(unpacked, path.stat().st_size * _GZIP_RATIO)
    except (OSError, pa.ArrowException):
        return None


def _table_splitter(table: table_source.OpenedTable, mapping: Mapping | None) -> ColumnarSplitter:
    return ColumnarSplitter(
        table.path,
        table.fingerprint,
        table.names,
        table.reader,
        table.types,
        "table",
        mapping,
    )


def _probe_table(
    sink: RawSink, ref: TableRef, mapping: Mapping | None
) -> _Job | TransactionFileError:
    """Look a table up and check its columns against the mapping (or the presets)."""
    try:
        opened = sink.open_table(ref, mapping)
    except TransactionFileError as exc:
        return exc
    job = _Job(Path(), opened.path, opened.fingerprint, 0, None, mapping, table=opened)
    try:
        header = _table_splitter(opened, mapping).header()
    except TransactionFileError as exc:
        return dataclasses.replace(job, problem=exc)
    return dataclasses.replace(job, fingerprint=mapping_fingerprint(header.mapping))


def _split_whole(job: _Job) -> tuple[FileInfo, list[Piece]] | TransactionFileError:
    """Split one file (at most CHUNK_BYTES) into pieces, in a worker thread."""
    splitter = job.splitter()
    try:
        pieces = list(splitter.pieces())
    except TransactionFileError as exc:
        return exc
    return splitter.info(), pieces


def _batches(jobs: list[_Job], limit: int) -> Iterator[list[_Job]]:
    """Consecutive runs of jobs holding at most ``limit`` bytes (or one larger file)."""
    batch: list[_Job] = []
    size = 0
    for job in jobs:
        if batch and size + job.weight > limit:
            yield batch
            batch, size = [], 0
        batch.append(job)
        size += job.weight
    if batch:
        yield batch


_NOT_BESIDE_REAL = "synthetic demo data: not loaded into a warehouse that holds real data"


def load_files(
    warehouse: Path | PgWarehouse | SparkWarehouse,
    paths: Sequence[str | os.PathLike[str]],
    mapping: Mapping | None = None,
) -> LoadReport:
    """Load files and directories into ``raw``; see the module docstring for the rules.

    ``warehouse`` is a DuckDB file, or a :class:`~orchestration.postgres.PgWarehouse`
    (the PostgreSQL database the ``PG*`` variables name): the same files give the same
    rows, quarantine, counts and report on both, because everything but the writes
    (discovery, hashing, splitting, typing in a staging DuckDB, the decisions of what
    to load) is this one function; only the :class:`RawSink` differs.

    Two passes over the files, neither holding more than a batch: the first hashes
    each file in blocks and checks its head (so unchanged files, copies and files that
    are no transaction files are known before anything is written); the second splits,
    types and inserts the files in batches of :data:`BATCH_BYTES`, all in one
    transaction. Hashing and splitting run on a small thread pool: Arrow's CSV reader
    and hashlib release the GIL, so the cores share the work of many daily files.

    ``mapping`` reads every file with one mapping (``models_py.mapping``); without it,
    each file is read with the preset its header fits. A file loaded before is loaded
    again when it is read with another mapping.
    """
    from orchestration.spark import SparkWarehouse

    if isinstance(warehouse, SparkWarehouse):
        from orchestration.spark_loader import load_files as load_on_spark

        return load_on_spark(warehouse, paths, mapping)
    report = LoadReport()
    sink = _open_sink(warehouse)
    try:
        known = sink.known_files()
        owner_of = {sha: source for source, (sha, _, _) in known.items()}
        holds_real = any(not synthetic for _, synthetic, _ in known.values())
        found = discover_files(paths)
        for item in found:
            if isinstance(item, TransactionFileError):
                report.failed.append(item)
            elif isinstance(item, SkippedFile):
                report.skipped.append((item.path, item.reason))
        jobs: list[_Job] = []
        with ThreadPoolExecutor(max_workers=_WORKERS) as pool:
            files = [f for f in found if isinstance(f, Path)]
            tables = [_probe_table(sink, f, mapping) for f in found if isinstance(f, TableRef)]
            for probed in [*pool.map(_probe, files, [mapping] * len(files)), *tables]:
                if isinstance(probed, TransactionFileError):
                    report.failed.append(probed)
                    continue
                source, sha = probed.path, probed.sha256
                before = known.get(source)
                if before and before[0] == sha and before[2] == probed.fingerprint:
                    report.skipped.append((source, "unchanged"))
                elif sha in owner_of and owner_of[sha] != source:
                    report.skipped.append(
                        (source, f"same content already loaded from {owner_of[sha]}")
                    )
                else:
                    owner_of[sha] = source
                    jobs.append(probed)
            report.failed.extend(job.problem for job in jobs if job.problem is not None)
            jobs = [job for job in jobs if job.problem is None]
            manifests: dict[Path, frozenset[str]] = {}
            synthetic: dict[str, bool] = {}
            for job in jobs:
                if job.table is not None:  # a warehouse table is the store's own
                    synthetic[job.path] = False
                    continue
                folder = job.file.parent
                if folder not in manifests:
                    manifests[folder] = synthetic_hashes(folder)
                synthetic[job.path] = job.sha256 in manifests[folder]
            if holds_real or any(not synthetic[job.path] for job in jobs):
                report.skipped.extend(
                    (job.path, _NOT_BESIDE_REAL) for job in jobs if synthetic[job.path]
                )
                jobs = [job for job in jobs if not synthetic[job.path]]
                report.removed_synthetic = sorted(
                    source for source, (_, is_synthetic, _) in known.items() if is_synthetic
                )
            if jobs:
                # Typing runs in a DuckDB of its own (see _insert), spilling where the
                # sink says (beside a DuckDB warehouse, as its own connection does), not
                # in the cwd.
                staging = duckdb.connect(
                    ":memory:",
                    config={
                        **DUCKDB_CONFIG,
                        "memory_limit": _STAGING_MEMORY_LIMIT,
                        "temp_directory": sink.spill_directory,
                    },
                )
                try:
                    _write(sink, staging, pool, jobs, synthetic, set(known), report)
                finally:
                    staging.close()
            else:
                report.removed_synthetic = []
    finally:
        sink.close()
    return report


class RawSink(Protocol):
    """Where :func:`load_files` writes: the tables of schema ``raw`` of one target.

    The loader decides everything else (which files, which rows, which reasons, the
    counts); a sink only reads the ledger and applies the writes, all between
    :meth:`begin` and :meth:`commit` (or :meth:`rollback`): :class:`_DuckDBSink` here,
    ``orchestration.pg_loader.PgSink`` for PostgreSQL (bulk ``COPY``).
    """

    # Where the staging DuckDB may spill a batch it cannot hold in memory.
    spill_directory: str

    def known_files(self) -> dict[str, tuple[str, bool, str]]:
        """``raw.loaded_files``: source file -> (SHA-256, is synthetic, mapping
        fingerprint)."""
        ...

    def open_table(self, ref: TableRef, mapping: Mapping | None) -> table_source.OpenedTable:
        """A table or view of the warehouse to read in place (``table:SCHEMA.NAME``);
        raises :class:`TransactionFileError` when there is none of that name."""
        ...

    def pseudonym_secret(self) -> bytes:
        """The warehouse's key of customer pseudonyms (``raw.pseudonym_secret``),
        made on first use, inside the load's transaction."""
        ...

    def record_identities(self, rows: pa.RecordBatchReader) -> None:
        """Add (customer_key, customer_ref, first_source_file) rows to
        ``raw.customer_identities``; a key already there keeps its row."""
        ...

    def begin(self) -> None:
        """Start the load's one transaction."""
        ...

    def remove_synthetic(self) -> None:
        """Delete every synthetic file's rows and ledger entries."""
        ...

    def delete_rows(self, sources: list[str]) -> None:
        """Delete the transactions and quarantined rows of these files."""
        ...

    def forget_file(self, source: str) -> None:
        """Delete everything of one file, its ledger entry included."""
        ...

    def append(self, table: str, columns: str, rows: pa.RecordBatchReader) -> None:
        """Append typed rows (``columns``, in that order) to ``raw.<table>``."""
        ...

    def record_files(self, rows: list[tuple[Any, ...]]) -> None:
        """Insert or replace ``raw.loaded_files`` rows (:data:`FILE_COLUMNS`)."""
        ...

    def commit(self) -> None: ...

    def rollback(self) -> None: ...

    def after_commit(self) -> None:
        """Work after a successful commit (DuckDB folds its log into the file)."""
        ...

    def close(self) -> None: ...


def _open_sink(warehouse: Path | PgWarehouse) -> RawSink:
    """The sink of a DuckDB file or of a PostgreSQL database; raises
    :class:`WarehouseError` (one line) when the target cannot be opened."""
    from orchestration.postgres import PgWarehouse

    if isinstance(warehouse, PgWarehouse):
        from orchestration.pg_loader import PgSink

        return PgSink(warehouse)
    return _DuckDBSink(warehouse)


class _DuckDBSink:
    """``raw`` in a DuckDB warehouse file, written under :data:`LOAD_MEMORY_LIMIT`."""

    def __init__(self, warehouse: Path) -> None:
        self.spill_directory = f"{warehouse}.tmp"
        self.con = connect(warehouse)
        self.configured = str(DUCKDB_CONFIG["memory_limit"])
        try:
            # Bound parameters: the configured limit comes from the environment.
            self.con.execute(
                "set memory_limit = ?", [min(self.configured, LOAD_MEMORY_LIMIT, key=_size_bytes)]
            )
        except BaseException:
            self.con.close()
            raise

    def known_files(self) -> dict[str, tuple[str, bool, str]]:
        return {
            source: (sha, bool(synthetic), fingerprint or "")
            for source, sha, synthetic, fingerprint in self.con.execute(
                "select source_file, file_sha256, is_synthetic, mapping_fingerprint "
                "from raw.loaded_files"
            ).fetchall()
        }

    def pseudonym_secret(self) -> bytes:
        return pseudonym_secret(self.con, "?")

    def open_table(self, ref: TableRef, mapping: Mapping | None) -> table_source.OpenedTable:
        return table_source.open_duckdb(self.con, ref)

    def record_identities(self, rows: pa.RecordBatchReader) -> None:
        self.con.register("ingest_identities", rows)
        try:
            self.con.execute(
                "insert or ignore into raw.customer_identities select * from ingest_identities"
            )
        finally:
            self.con.unregister("ingest_identities")

    def begin(self) -> None:
        self.con.execute("begin transaction")

    def remove_synthetic(self) -> None:
        self.con.execute(
            """
            delete from raw.transactions where source_file in
                (select source_file from raw.loaded_files where is_synthetic);
            delete from raw.quarantined_rows where source_file in
                (select source_file from raw.loaded_files where is_synthetic);
            delete from raw.loaded_files where is_synthetic;
            """
        )

    def delete_rows(self, sources: list[str]) -> None:
        for table in ("transactions", "quarantined_rows"):
            self.con.execute(
                f"delete from raw.{table} where list_contains(?, source_file)", [sources]
            )

    def forget_file(self, source: str) -> None:
        for table in ("transactions", "quarantined_rows", "loaded_files"):
            self.con.execute(f"delete from raw.{table} where source_file = ?", [source])

    def append(self, table: str, columns: str, rows: pa.RecordBatchReader) -> None:
        self.con.register("ingest_typed_rows", rows)
        try:
            self.con.execute(f"insert into raw.{table} ({columns}) select * from ingest_typed_rows")
        finally:
            self.con.unregister("ingest_typed_rows")

    def record_files(self, rows: list[tuple[Any, ...]]) -> None:
        _record_files(self.con, rows)  # looked up at call time (tests replace it)

    def commit(self) -> None:
        self.con.execute("commit")

    def rollback(self) -> None:
        self.con.execute("rollback")

    def after_commit(self) -> None:
        # Fold the load into the file now, under the load's memory limit: DuckDB
        # checkpoints when the connection closes, after the configured limit is back,
        # and a checkpoint of 16 M new rows then took 1.3 GB.
        self.con.execute("checkpoint")

    def close(self) -> None:
        try:  # another connection in this process may share the database instance
            self.con.execute("set memory_limit = ?", [self.configured])
        finally:
            self.con.close()


def pseudonym_secret(con: Any, mark: str) -> bytes:
    """Read, or make and store, the warehouse's pseudonym key (``mark``: the driver's
    parameter marker). 32 random bytes, kept as hex in ``raw.pseudonym_secret``."""
    import secrets

    row = con.execute("select secret from raw.pseudonym_secret limit 1").fetchall()
    if row:
        return bytes.fromhex(row[0][0])
    secret = secrets.token_hex(32)
    con.execute(f"insert into raw.pseudonym_secret (secret) values ({mark})", [secret])
    return bytes.fromhex(secret)


def _size_bytes(text: str) -> float:
    """Bytes of a DuckDB memory size (``4GB``, ``512 MiB``); infinite if not of that
    form (DuckDB judges it when it connects), so the loader's own limit applies."""
    match = _SIZE.fullmatch(text)
    if match is None or match[2].lower() not in _UNITS:
        return float("inf")
    return float(match[1]) * _UNITS[match[2].lower()]


def _write(
    sink: RawSink,
    staging: duckdb.DuckDBPyConnection,
    pool: ThreadPoolExecutor,
    jobs: list[_Job],
    synthetic: dict[str, bool],
    known: set[str],
    report: LoadReport,
) -> None:
    """Replace the rows of ``jobs``' files (and remove ``report.removed_synthetic``'s)
    in one transaction: any failure rolls all of it back.

    Files up to CHUNK_BYTES are split on the pool a batch at a time; a larger file is
    streamed alone, piece by piece. A file that fails before its first piece (it changed
    into something that is no transaction file since it was probed) fails alone and
    keeps its earlier rows; one that cannot be read to its end (an I/O error) is not in
    the warehouse after the load, old rows included, and is reported failed.
    """
    sink.begin()
    try:
        if report.removed_synthetic:
            sink.remove_synthetic()
        counts: dict[str, list[int]] = {}
        done: dict[str, FileInfo] = {}
        small = [job for job in jobs if not job.streamed]
        for batch in _batches(small, BATCH_BYTES):
            pieces: list[Piece] = []
            replace: list[str] = []
            for split in pool.map(_split_whole, batch):
                if isinstance(split, TransactionFileError):
                    report.failed.append(split)
                    continue
                info, file_pieces = split
                done[info.path] = info
                pieces += file_pieces
                if info.path in known:
                    replace.append(info.path)
            _insert(sink, staging, pieces, replace, counts)
            del pieces
        for job in jobs:
            if job.streamed:
                info = _stream(sink, staging, job, job.path in known, counts, report)
                if info is not None:
                    done[info.path] = info
        rows = []
        for job in jobs:
            if job.path not in done:
                continue
            info = dataclasses.replace(done[job.path], synthetic=synthetic[job.path])
            report.loaded.append(info)
            loaded, quarantined, refunds = counts.get(info.path, (0, 0, 0))
            rows.append(
                (
                    info.path,
                    info.sha256,
                    info.layout,
                    info.encoding,
                    info.raw_lines,
                    loaded,
                    quarantined,
                    info.synthetic,
                    refunds,
                    info.mapping_fingerprint,
                )
            )
            report.rows_loaded += loaded
            report.rows_quarantined += quarantined
        sink.record_files(rows)
        sink.commit()
    except BaseException:
        sink.rollback()
        report.loaded = []
        report.rows_loaded = report.rows_quarantined = 0
        report.removed_synthetic = []
        raise
    sink.after_commit()


def _stream(
    sink: RawSink,
    staging: duckdb.DuckDBPyConnection,
    job: _Job,
    replaces: bool,
    counts: dict[str, list[int]],
    report: LoadReport,
) -> FileInfo | None:
    """Load one large file piece by piece (one chunk's records in memory at a time)."""
    splitter = job.splitter()
    started = False
    try:
        for piece in splitter.pieces():
            replace = [job.path] if replaces and not started else []
            _insert(sink, staging, [piece], replace, counts)
            started = True
    except TransactionFileError as exc:
        report.failed.append(exc)
        counts.pop(job.path, None)
        if started:
            sink.forget_file(job.path)
        return None
    return splitter.info()


def _insert(
    sink: RawSink,
    staging: duckdb.DuckDBPyConnection,
    pieces: list[Piece],
    replace: list[str],
    counts: dict[str, list[int]],
) -> None:
    """Type ``pieces`` and append them to ``raw`` (first removing the rows of the files
    in ``replace``, loaded before); add each file's loaded and quarantined rows to
    ``counts``.

    The records are typed in ``staging``, a DuckDB of their own in memory, outside the
    load's transaction, and stream from there into the sink as Arrow record batches: a
    table dropped inside the transaction would be kept until the commit (for a
    rollback), so every batch's typed copy would stay in memory to the end of the load
    (10x the real data peaked at 2.2 GB so, at 1 GB with this).
    """
    if replace:
        sink.delete_rows(replace)
    if not pieces:
        return
    try:
        stage_records(staging, pieces, sink.pseudonym_secret)
        for table, columns, keep in (
            ("transactions", TRANSACTION_COLUMNS, "reason is null"),
            ("quarantined_rows", QUARANTINE_COLUMNS, "reason is not null"),
        ):
            rows = staging.sql(f"select {columns} from {STAGED_TABLE} where {keep}")
            reader = rows.to_arrow_reader()
            try:
                sink.append(table, columns, reader)
            finally:
                # A sink that failed half-way leaves the result open, and staging
                # would refuse the drop below with an error hiding the sink's.
                reader.close()
        identities = staging.sql(
            f"""
            select CustomerID as customer_key, min(customer_ref) as customer_ref,
                min(source_file) as first_source_file
            from {STAGED_TABLE}
            where customer_ref is not null and reason is null
            group by CustomerID
            """
        ).to_arrow_reader()
        try:
            sink.record_identities(identities)
        finally:
            identities.close()
        for source, loaded, quarantined, refunds in staging.execute(
            f"""
            select source_file,
                count(*) filter (where reason is null and line_kind = 'record'),
                count(*) filter (where reason is not null),
                count(*) filter (where line_kind = 'refund')
            from {STAGED_TABLE} group by source_file
            """
        ).fetchall():
            total = counts.setdefault(source, [0, 0, 0])
            total[0] += loaded
            total[1] += quarantined
            total[2] += refunds
    finally:
        staging.execute(f"drop table if exists {STAGED_TABLE}")


# The columns of raw.transactions and raw.quarantined_rows, in table order: what the
# staging query selects and what a sink writes (names as in RAW_DDL, unquoted, so that
# PostgreSQL folds them to lower case, as dbt's staging models select them).
TRANSACTION_COLUMNS = (
    "InvoiceNo, StockCode, Description, Quantity, InvoiceDate, UnitPrice, CustomerID, "
    "Country, source_file, source_line, line_kind"
)
QUARANTINE_COLUMNS = "source_file, source_line, raw_record, reason"


FILE_COLUMNS = (
    "source_file",
    "file_sha256",
    "layout",
    "encoding",
    "raw_lines",
    "loaded_rows",
    "quarantined_rows",
    "is_synthetic",
    "refund_rows",
    "mapping_fingerprint",
)


def _record_files(con: duckdb.DuckDBPyConnection, rows: list[tuple[Any, ...]]) -> None:
    """One ``raw.loaded_files`` row per file: what it held and how it was read.

    One statement, the rows bound as one list parameter: ``executemany`` ran one
    insert per file, 0.44 s of the real data's 1.5 s load (305 files)."""
    if not rows:
        return
    columns = ", ".join(FILE_COLUMNS)
    con.execute(
        f"""
        insert or replace into raw.loaded_files ({columns}, loaded_at)
        select {columns}, current_localtimestamp()
        from (select unnest(?, recursive := true))
        """,
        [[dict(zip(FILE_COLUMNS, row, strict=True)) for row in rows]],
    )
