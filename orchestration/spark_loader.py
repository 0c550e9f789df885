"""Loading order lines into Spark's ``raw`` tables, the files read by Spark's tasks.

The DuckDB loader (``orchestration.warehouse.load_files``) splits and types the files
on one machine. Here the driver only discovers the files and decides (the same
functions: ``discover_files``, ``_probe`` for hashing and the header check, the ledger,
the synthetic-data rules), and the lines never reach it: a DataFrame with one row per
*bin* of files (files packed into bins of about equal bytes, one bin per partition)
goes through ``mapInArrow``, whose function, in a Spark task, splits each file with the
very splitter the DuckDB loader uses (``FileSplitter`` / ``parquet_splitter``, same
mapping) and types it with ``stage_records`` in an in-memory DuckDB. So the rows, the
quarantine reasons and the counts are the DuckDB loader's by construction. The task
yields Arrow batches of one union schema (``kind``: a transaction, a quarantined row,
a customer identity, or one row per file with its layout, encoding and counts); the
result is persisted, the per-file rows (one per file) are the only thing collected,
and Spark writes the rest into the tables. The pseudonym secret is read on the driver
(or made there, and stored only when a task used it) and travels in the closure.

Parquet tables have no transactions, so the ledger ``raw.loaded_files`` is the commit
point:

* ``raw.transactions`` and ``raw.quarantined_rows`` are partitioned by ``load_id``
  (one more column than DuckDB's, the last); the ledger names, per file, the
  ``load_id`` whose partition holds its rows (also one more column).
* A load writes one new partition ``load_id=L``: the new files' rows, plus, when it
  replaces a file (changed, read with another mapping, synthetic data removed), a copy
  of the rows of the other files that shared the replaced file's old partition (copy on
  write: a partition is never changed in place, only added or dropped).
* Then the secret (if first used) and the customer identities are appended (both
  harmless to repeat), and the ledger's new version is written to a folder of its own
  and switched in with ONE metastore operation (``alter table ... set location``):
  the commit. Only after it are the partitions no ledger row names dropped.
* A load killed before the switch leaves the old ledger, which does not name ``L``: the
  next load drops every partition (and partition folder) the ledger does not name
  before it writes, so its result is exactly a clean load's. A reader between the kill
  and the next load may see the killed load's partition; ``insiders`` runs dbt after a
  load in the same process, so dbt never does. One loader at a time (the run lock).

``table:SCHEMA.NAME`` sources are not supported on Spark yet (one line each).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import re
import secrets
import sys
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import pyarrow as pa

from models_py.columnar import parquet_splitter
from models_py.ingest import (
    CHUNK_BYTES,
    STAGED_TABLE,
    FileInfo,
    FileSplitter,
    Piece,
    TransactionFileError,
    stage_records,
    synthetic_hashes,
)
from models_py.locations import DUCKDB_CONFIG
from models_py.mapping import Mapping
from orchestration.spark import SparkWarehouse
from orchestration.table_source import TableRef
from orchestration.warehouse import (
    _NOT_BESIDE_REAL,
    _WORKERS,
    BATCH_BYTES,
    LoadReport,
    SkippedFile,
    WarehouseError,
    _Job,
    _probe,
    discover_files,
)

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

TABLE_SOURCES_UNSUPPORTED = "table sources are not supported on the spark target yet"
LOAD_ID_COLUMN = "load_id"
VERSIONS_DIR = "raw_versions"
# A load id: made here (UTC time, then random hex), so it sorts by time and is safe
# in a partition spec; a value read back is checked against this before any use.
_LOAD_ID = re.compile(r"^[0-9]{8}T[0-9]{6}Z-[0-9a-f]{12}$")
# The staging DuckDB of one task: a batch's typed copy, one thread (Spark parallelises).
_TASK_MEMORY_LIMIT = "1GB"

# raw's tables in Spark types (DuckDB's RAW_DDL: varchar -> string, integer -> int,
# timestamp -> timestamp_ntz, a naive timestamp as in DuckDB).
TRANSACTIONS = (
    ("InvoiceNo", "string"),
    ("StockCode", "string"),
    ("Description", "string"),
    ("Quantity", "int"),
    ("InvoiceDate", "timestamp_ntz"),
    ("UnitPrice", "decimal(18,4)"),
    ("CustomerID", "string"),
    ("Country", "string"),
    ("source_file", "string"),
    ("source_line", "bigint"),
    ("line_kind", "string"),
)
QUARANTINED = (
    ("source_file", "string"),
    ("source_line", "bigint"),
    ("raw_record", "string"),
    ("reason", "string"),
)
LOADED_FILES = (
    ("source_file", "string"),
    ("file_sha256", "string"),
    ("layout", "string"),
    ("encoding", "string"),
    ("raw_lines", "bigint"),
    ("loaded_rows", "bigint"),
    ("quarantined_rows", "bigint"),
    ("loaded_at", "timestamp_ntz"),
    ("is_synthetic", "boolean"),
    ("refund_rows", "bigint"),
    ("mapping_fingerprint", "string"),
    (LOAD_ID_COLUMN, "string"),
)
IDENTITIES = (
    ("customer_key", "string"),
    ("customer_ref", "string"),
    ("first_source_file", "string"),
)


def _ddl(columns: Sequence[tuple[str, str]]) -> str:
    return ", ".join(f"{name} {kind}" for name, kind in columns)


# Each table: its columns, and whether it is partitioned by load_id.
RAW_TABLES: dict[str, tuple[tuple[tuple[str, str], ...], bool]] = {
    "transactions": (TRANSACTIONS, True),
    "quarantined_rows": (QUARANTINED, True),
    "loaded_files": (LOADED_FILES, False),
    "customer_identities": (IDENTITIES, False),
    "pseudonym_secret": ((("secret", "string"),), False),
}

# What a task yields: one schema for all kinds of rows (``kind``): ``t`` a transaction,
# ``q`` a quarantined row, ``i`` an identity (CustomerID: its key, source_file: the
# first file), ``f`` a file (its layout, encoding, counts, or its problem).
_UNION: tuple[tuple[str, str, pa.DataType], ...] = (
    ("kind", "string", pa.string()),
    ("InvoiceNo", "string", pa.string()),
    ("StockCode", "string", pa.string()),
    ("Description", "string", pa.string()),
    ("Quantity", "int", pa.int32()),
    ("InvoiceDate", "timestamp_ntz", pa.timestamp("us")),
    ("UnitPrice", "decimal(18,4)", pa.decimal128(18, 4)),
    ("CustomerID", "string", pa.string()),
    ("Country", "string", pa.string()),
    ("source_file", "string", pa.string()),
    ("source_line", "bigint", pa.int64()),
    ("line_kind", "string", pa.string()),
    ("raw_record", "string", pa.string()),
    ("reason", "string", pa.string()),
    ("customer_ref", "string", pa.string()),
    ("layout", "string", pa.string()),
    ("encoding", "string", pa.string()),
    ("raw_lines", "bigint", pa.int64()),
    ("loaded_rows", "bigint", pa.int64()),
    ("quarantined_rows", "bigint", pa.int64()),
    ("refund_rows", "bigint", pa.int64()),
    ("mapping_fingerprint", "string", pa.string()),
    ("problem", "string", pa.string()),
    ("started", "boolean", pa.bool_()),
    ("secret_used", "boolean", pa.bool_()),
)
_UNION_SCHEMA = pa.schema([(name, kind) for name, _, kind in _UNION])
_UNION_DDL = ", ".join(f"{name} {kind}" for name, kind, _ in _UNION)
_DUCK_TYPES = {
    "string": "varchar",
    "int": "integer",
    "bigint": "bigint",
    "timestamp_ntz": "timestamp",
    "decimal(18,4)": "decimal(18, 4)",
    "boolean": "boolean",
}


def ensure_raw_tables(spark: SparkSession) -> None:
    """Create database ``raw`` and its tables where missing (idempotent): Parquet,
    the DuckDB columns in Spark types, plus ``load_id`` (see the module docstring)."""
    spark.sql("create database if not exists raw")
    for table, (columns, partitioned) in RAW_TABLES.items():
        # Only our own constants reach the text.
        body = _ddl(columns)
        partitioning = ""
        if partitioned:
            body += f", {LOAD_ID_COLUMN} string"
            partitioning = f" partitioned by ({LOAD_ID_COLUMN})"
        spark.sql(f"create table if not exists raw.{table} ({body}) using parquet{partitioning}")


@dataclasses.dataclass(frozen=True)
class _TaskFile:
    """What a task needs of one file (picklable, sent in the closure)."""

    file: str
    path: str  # display_path: the source_file
    sha256: str
    parquet: bool
    streamed: bool
    weight: int


def _select(kind: str, given: dict[str, str]) -> str:
    """The staging query's select list for one kind of union row."""
    parts = [f"'{kind}' as kind"]
    for name, spark_type, _ in _UNION[1:]:
        expression = given.get(name, f"cast(null as {_DUCK_TYPES[spark_type]})")
        parts.append(f"{expression} as {name}")
    return ", ".join(parts)


_TX_SELECT = _select("t", {name: name for name, _ in TRANSACTIONS})
_Q_SELECT = _select("q", {name: name for name, _ in QUARANTINED})
_ID_SELECT = _select(
    "i",
    {
        "CustomerID": "CustomerID",
        "customer_ref": "min(customer_ref)",
        "source_file": "min(source_file)",
    },
)


def _stage(
    con: duckdb.DuckDBPyConnection,
    pieces: list[Piece],
    secret: Any,
    counts: dict[str, list[int]],
) -> Iterator[pa.RecordBatch]:
    """Type ``pieces`` (as the DuckDB loader's ``_insert``) and yield the union rows;
    add each file's loaded, quarantined and refund rows to ``counts``."""
    if not pieces:
        return
    try:
        stage_records(con, pieces, secret)
        for query in (
            f"select {_TX_SELECT} from {STAGED_TABLE} where reason is null",
            f"select {_Q_SELECT} from {STAGED_TABLE} where reason is not null",
            f"select {_ID_SELECT} from {STAGED_TABLE} "
            "where customer_ref is not null and reason is null group by CustomerID",
        ):
            reader = con.sql(query).to_arrow_reader()
            for batch in reader:
                if batch.num_rows:
                    yield pa.Table.from_batches([batch]).cast(_UNION_SCHEMA).to_batches()[0]
        for source, loaded, quarantined, refunds in con.execute(
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
        con.execute(f"drop table if exists {STAGED_TABLE}")


def _file_row(job: _TaskFile, **values: Any) -> dict[str, Any]:
    return {"kind": "f", "source_file": job.path, **values}


def _load_bins(bins: list[list[_TaskFile]], mapping: Mapping | None, secret: bytes) -> Any:
    """The ``mapInArrow`` function: each input row is a bin number; every file of the
    bin is split, typed and yielded, small files batched up to ``BATCH_BYTES``."""

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        used = {"secret": False}

        def key() -> bytes:
            used["secret"] = True
            return secret

        with tempfile.TemporaryDirectory(prefix="insiders-spark-load-") as spill:
            con = duckdb.connect(
                ":memory:",
                config={
                    **DUCKDB_CONFIG,
                    "memory_limit": _TASK_MEMORY_LIMIT,
                    "threads": 1,
                    "temp_directory": spill,
                },
            )
            try:
                for batch in batches:
                    for number in batch.column(0).to_pylist():
                        yield from _load_bin(con, bins[number], mapping, key, used)
            finally:
                con.close()

    return run


def _splitter(job: _TaskFile, mapping: Mapping | None) -> Any:
    if job.parquet:
        return parquet_splitter(Path(job.file), job.sha256, mapping)
    return FileSplitter(Path(job.file), job.sha256, CHUNK_BYTES, mapping)


def _load_bin(
    con: duckdb.DuckDBPyConnection,
    jobs: list[_TaskFile],
    mapping: Mapping | None,
    key: Any,
    used: dict[str, bool],
) -> Iterator[pa.RecordBatch]:
    """One bin's files, as the DuckDB loader's ``_write``: whole files batched, a large
    one streamed piece by piece; then one ``f`` row per file."""
    counts: dict[str, list[int]] = {}
    infos: list[dict[str, Any]] = []
    pieces: list[Piece] = []
    size = 0

    def finish(job: _TaskFile, splitter: Any) -> None:
        info = splitter.info()
        infos.append(
            _file_row(
                job,
                layout=info.layout,
                encoding=info.encoding,
                raw_lines=info.raw_lines,
                mapping_fingerprint=info.mapping_fingerprint,
            )
        )

    for job in jobs:
        splitter = _splitter(job, mapping)
        if job.streamed:
            started = False
            try:
                for piece in splitter.pieces():
                    yield from _stage(con, [piece], key, counts)
                    started = True
            except TransactionFileError as exc:
                counts.pop(job.path, None)
                infos.append(_file_row(job, problem=exc.problem, started=started))
                continue
            finish(job, splitter)
            continue
        if pieces and size + job.weight > BATCH_BYTES:
            yield from _stage(con, pieces, key, counts)
            pieces, size = [], 0
        try:
            file_pieces = list(splitter.pieces())
        except TransactionFileError as exc:
            infos.append(_file_row(job, problem=exc.problem, started=False))
            continue
        pieces += file_pieces
        size += job.weight
        finish(job, splitter)
    yield from _stage(con, pieces, key, counts)
    for row in infos:
        loaded, quarantined, refunds = counts.get(row["source_file"], (0, 0, 0))
        if row.get("problem") is None:
            row.update(loaded_rows=loaded, quarantined_rows=quarantined, refund_rows=refunds)
    if infos:
        infos[-1]["secret_used"] = used["secret"]
        yield from pa.Table.from_pylist(infos, schema=_UNION_SCHEMA).to_batches()


def _bins(jobs: list[_TaskFile], parallelism: int) -> list[list[_TaskFile]]:
    """Files packed into bins of about equal bytes (largest first, each to the lightest
    bin): one bin per partition, at least ``2 x parallelism`` of them when there are as
    many files, so that a slow task does not hold the load."""
    count = min(len(jobs), max(2 * parallelism, sum(j.weight for j in jobs) // BATCH_BYTES + 1))
    bins: list[list[_TaskFile]] = [[] for _ in range(count)]
    loads = [0] * count
    for job in sorted(jobs, key=lambda j: -j.weight):
        lightest = loads.index(min(loads))
        bins[lightest].append(job)
        loads[lightest] += max(job.weight, 1)
    for group in bins:  # in path order inside a bin, as the DuckDB loader batches
        group.sort(key=lambda j: j.path)
    return [group for group in bins if group]


def _local_workers_python(spark: SparkSession) -> None:
    """Make a local session's Python workers run this interpreter (the venv's, where
    duckdb and the project are installed) unless ``PYSPARK_PYTHON`` chose one: pyspark
    otherwise starts ``python3`` from the PATH, which has neither. A cluster's workers
    keep the Python its configuration names."""
    context = spark.sparkContext
    if context.master.startswith("local") and not os.environ.get("PYSPARK_PYTHON"):
        context.pythonExec = sys.executable  # read when a Python function is wrapped


def _new_load_id() -> str:
    now = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{now}-{uuid.uuid4().hex[:12]}"


def _checked_load_id(value: str) -> str:
    if not _LOAD_ID.fullmatch(value or ""):
        raise WarehouseError(f"raw: unexpected load id {value!r} in the Spark warehouse")
    return value


def _checked_location(location: str) -> str:
    """A location for a Spark SQL string literal (from ``$INSIDERS_SPARK_WAREHOUSE``):
    refused, in one line, when it holds a quote, a backslash or a control character."""
    if re.search(r"['\\\x00-\x1f`]", location):
        raise WarehouseError(f"{location}: a Spark warehouse location may not hold quotes")
    return location


def _hadoop_fs(spark: SparkSession, location: str) -> tuple[Any, Any]:
    """The Hadoop file system and path of ``location`` (any URI Spark writes to)."""
    jvm = spark.sparkContext._jvm  # type: ignore[attr-defined]
    path = jvm.org.apache.hadoop.fs.Path(location)
    return path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()), path  # type: ignore[attr-defined]


def _table_location(spark: SparkSession, table: str) -> str:
    rows = spark.sql(f"describe table extended raw.{table}").collect()
    for row in rows:
        if row[0] == "Location":
            return str(row[1])
    raise WarehouseError(f"raw.{table}: Spark gives no location for the table")


def drop_uncommitted(spark: SparkSession) -> None:
    """Remove what a killed load left (rows of a load the ledger does not name), so
    that dbt never counts them: called before every dbt step
    (``orchestration.sessions.prepare_warehouse``) as well as by each load."""
    ledger = _read_ledger(spark)
    _drop_uncommitted(spark, {_checked_load_id(r[LOAD_ID_COLUMN]) for r in ledger})


def _drop_uncommitted(spark: SparkSession, referenced: set[str]) -> None:
    """Drop every ``load_id`` partition of the row tables the ledger does not name (a
    killed load's, or one a committed load superseded), and any partition folder left
    without its metastore entry (a load killed between moving files and registering
    the partition)."""
    for table in ("transactions", "quarantined_rows"):
        for row in spark.sql(f"show partitions raw.{table}").collect():
            value = row[0].split("=", 1)[1]
            if value not in referenced:
                spark.sql(
                    f"alter table raw.{table} drop if exists "
                    f"partition ({LOAD_ID_COLUMN} = '{_checked_load_id(value)}')"
                )
        fs, root = _hadoop_fs(spark, _table_location(spark, table))
        if not fs.exists(root):
            continue
        for status in fs.listStatus(root):
            name = status.getPath().getName()
            if name.startswith(f"{LOAD_ID_COLUMN}=") and name.split("=", 1)[1] not in referenced:
                fs.delete(status.getPath(), True)
        spark.catalog.refreshTable(f"raw.{table}")


def _read_ledger(spark: SparkSession) -> list[dict[str, Any]]:
    return [row.asDict() for row in spark.table("raw.loaded_files").collect()]


def _switch_ledger(
    spark: SparkSession, warehouse: SparkWarehouse, rows: list[dict[str, Any]], load_id: str
) -> None:
    """The commit: the ledger's new version written to a folder of its own, then the
    table pointed at it in ONE metastore operation. Older versions but the previous one
    (a reader may still be in it) are removed."""
    from pyspark.sql.types import _parse_datatype_string

    schema = _parse_datatype_string(_ddl(LOADED_FILES))
    root = f"{warehouse.tables.rstrip('/')}/{VERSIONS_DIR}/loaded_files"
    folder = _checked_location(f"{root}/{load_id}")
    frame = spark.createDataFrame([tuple(r[n] for n, _ in LOADED_FILES) for r in rows], schema)
    frame.coalesce(1).write.mode("overwrite").parquet(folder)
    previous = _table_location(spark, "loaded_files")
    spark.sql(f"alter table raw.loaded_files set location '{folder}'")
    spark.catalog.refreshTable("raw.loaded_files")
    fs, path = _hadoop_fs(spark, root)
    keep = {load_id, previous.rstrip("/").rsplit("/", 1)[-1]}
    for status in fs.listStatus(path):
        if status.getPath().getName() not in keep:
            fs.delete(status.getPath(), True)


def _secret(spark: SparkSession) -> tuple[bytes, bool]:
    """The warehouse's pseudonym key, and whether it is new (not stored yet)."""
    rows = spark.table("raw.pseudonym_secret").limit(1).collect()
    if rows:
        return bytes.fromhex(rows[0][0]), False
    return bytes.fromhex(secrets.token_hex(32)), True


def load_files(
    warehouse: SparkWarehouse,
    paths: Sequence[str | os.PathLike[str]],
    mapping: Mapping | None = None,
) -> LoadReport:
    """Load files and directories into Spark's ``raw``: the DuckDB loader's files,
    rows, quarantine, counts, report and errors (see the module docstring for how)."""
    spark = warehouse.session()
    ensure_raw_tables(spark)
    report = LoadReport()
    ledger = _read_ledger(spark)
    referenced = {_checked_load_id(r[LOAD_ID_COLUMN]) for r in ledger}
    _drop_uncommitted(spark, referenced)
    known = {r["source_file"]: r for r in ledger}
    owner_of = {r["file_sha256"]: source for source, r in known.items()}
    holds_real = any(not r["is_synthetic"] for r in ledger)
    found = discover_files(paths)
    files: list[Path] = []
    for item in found:
        if isinstance(item, TransactionFileError):
            report.failed.append(item)
        elif isinstance(item, SkippedFile):
            report.skipped.append((item.path, item.reason))
        elif isinstance(item, TableRef):
            report.failed.append(TransactionFileError(item.path, TABLE_SOURCES_UNSUPPORTED))
        else:
            files.append(item)
    jobs: list[_Job] = []
    with ThreadPoolExecutor(max_workers=_WORKERS) as pool:
        probed_all = list(pool.map(_probe, files, [mapping] * len(files)))
    for probed in probed_all:
        if isinstance(probed, TransactionFileError):
            report.failed.append(probed)
            continue
        before = known.get(probed.path)
        if (
            before
            and before["file_sha256"] == probed.sha256
            and (before["mapping_fingerprint"] or "") == probed.fingerprint
        ):
            report.skipped.append((probed.path, "unchanged"))
        elif probed.sha256 in owner_of and owner_of[probed.sha256] != probed.path:
            report.skipped.append(
                (probed.path, f"same content already loaded from {owner_of[probed.sha256]}")
            )
        else:
            owner_of[probed.sha256] = probed.path
            jobs.append(probed)
    report.failed.extend(job.problem for job in jobs if job.problem is not None)
    jobs = [job for job in jobs if job.problem is None]
    manifests: dict[Path, frozenset[str]] = {}
    synthetic: dict[str, bool] = {}
    for job in jobs:
        folder = job.file.parent
        if folder not in manifests:
            manifests[folder] = synthetic_hashes(folder)
        synthetic[job.path] = job.sha256 in manifests[folder]
    if holds_real or any(not synthetic[job.path] for job in jobs):
        report.skipped.extend((job.path, _NOT_BESIDE_REAL) for job in jobs if synthetic[job.path])
        jobs = [job for job in jobs if not synthetic[job.path]]
        report.removed_synthetic = sorted(s for s, r in known.items() if r["is_synthetic"])
    if not jobs:
        report.removed_synthetic = []
        return report
    _write(spark, warehouse, jobs, synthetic, known, mapping, report)
    return report


def _write(
    spark: SparkSession,
    warehouse: SparkWarehouse,
    jobs: list[_Job],
    synthetic: dict[str, bool],
    known: dict[str, dict[str, Any]],
    mapping: Mapping | None,
    report: LoadReport,
) -> None:
    """Split and type ``jobs`` in Spark tasks, write partition ``L`` and commit the
    ledger (see the module docstring); the report is filled only once committed."""
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    load_id = _new_load_id()
    secret, new_secret = _secret(spark)
    task_files = [
        _TaskFile(str(j.file), j.path, j.sha256, j.parquet, j.streamed, j.weight) for j in jobs
    ]
    bins = _bins(task_files, spark.sparkContext.defaultParallelism)
    _local_workers_python(spark)
    numbers = spark.range(len(bins), numPartitions=len(bins)).select(F.col("id").cast("int"))
    union = numbers.mapInArrow(_load_bins(bins, mapping, secret), _UNION_DDL)
    union = union.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        file_rows = {
            row["source_file"]: row.asDict()
            for row in union.where(F.col("kind") == "f").drop("kind").collect()
        }
        secret_used = any(row["secret_used"] for row in file_rows.values())
        done = [job for job in jobs if file_rows[job.path]["problem"] is None]
        failed = [job for job in jobs if file_rows[job.path]["problem"] is not None]
        report.failed.extend(
            TransactionFileError(job.path, file_rows[job.path]["problem"]) for job in failed
        )
        # Rows that leave: reloaded files, removed demo data, a large file that broke
        # half-way (the DuckDB loader forgets it, old rows and ledger entry included).
        forgotten = {job.path for job in failed if job.streamed and file_rows[job.path]["started"]}
        replaced = (
            {job.path for job in done if job.path in known}
            | set(report.removed_synthetic)
            | (forgotten & set(known))
        )
        affected = {known[source][LOAD_ID_COLUMN] for source in replaced}
        moved = {
            source
            for source, row in known.items()
            if row[LOAD_ID_COLUMN] in affected and source not in replaced
        }
        done_paths = [job.path for job in done]
        for table, columns in (("transactions", TRANSACTIONS), ("quarantined_rows", QUARANTINED)):
            names = [name for name, _ in columns]
            kind = "t" if table == "transactions" else "q"
            new = union.where(
                (F.col("kind") == kind) & F.col("source_file").isin(done_paths)
            ).select(*names, F.lit(load_id).alias(LOAD_ID_COLUMN))
            if moved:
                # Only the rows the ledger names: a partition may also hold stale rows.
                condition = F.lit(False)
                for partition in sorted(affected):
                    condition = condition | (
                        (F.col(LOAD_ID_COLUMN) == partition)
                        & F.col("source_file").isin(
                            sorted(s for s in moved if known[s][LOAD_ID_COLUMN] == partition)
                        )
                    )
                survivors = (
                    spark.table(f"raw.{table}")
                    .where(condition)
                    .select(*names, F.lit(load_id).alias(LOAD_ID_COLUMN))
                )
                new = new.unionByName(survivors)
            new.write.insertInto(f"raw.{table}")
        if new_secret and secret_used:
            spark.createDataFrame([(secret.hex(),)], "secret string").write.insertInto(
                "raw.pseudonym_secret"
            )
        identities = (
            union.where((F.col("kind") == "i") & F.col("source_file").isin(done_paths))
            .groupBy(F.col("CustomerID").alias("customer_key"))
            .agg(
                F.min("customer_ref").alias("customer_ref"),
                F.min("source_file").alias("first_source_file"),
            )
        )
        existing = spark.table("raw.customer_identities").select("customer_key")
        identities.join(existing, "customer_key", "left_anti").write.insertInto(
            "raw.customer_identities"
        )
        now = dt.datetime.now()
        ledger = [
            {**row, LOAD_ID_COLUMN: load_id} if source in moved else row
            for source, row in known.items()
            if source not in replaced and source not in {j.path for j in done}
        ]
        for job in done:
            row = file_rows[job.path]
            info_synthetic = synthetic[job.path]
            ledger.append(
                {
                    "source_file": job.path,
                    "file_sha256": job.sha256,
                    "layout": row["layout"],
                    "encoding": row["encoding"],
                    "raw_lines": row["raw_lines"],
                    "loaded_rows": row["loaded_rows"],
                    "quarantined_rows": row["quarantined_rows"],
                    "loaded_at": now,
                    "is_synthetic": info_synthetic,
                    "refund_rows": row["refund_rows"],
                    "mapping_fingerprint": row["mapping_fingerprint"],
                    LOAD_ID_COLUMN: load_id,
                }
            )
        _switch_ledger(spark, warehouse, ledger, load_id)
    except BaseException:
        report.removed_synthetic = []
        raise
    finally:
        union.unpersist()
    committed = {r[LOAD_ID_COLUMN] for r in ledger}
    _drop_uncommitted(spark, committed)
    for job in done:
        row = file_rows[job.path]
        report.loaded.append(
            FileInfo(
                path=job.path,
                sha256=job.sha256,
                layout=row["layout"],
                encoding=row["encoding"],
                raw_lines=row["raw_lines"],
                synthetic=synthetic[job.path],
                mapping_fingerprint=row["mapping_fingerprint"],
            )
        )
        report.rows_loaded += row["loaded_rows"]
        report.rows_quarantined += row["quarantined_rows"]
