"""The BI snapshot: the BI-facing tables, published to a file no reader shares with the
pipeline.

DuckDB lets one process write a database file, and a reader in another process is
refused while the pipeline holds it. So every successful run copies what BI tools and
the dashboard read into a separate DuckDB file (and one Parquet file per table) and
swaps it into place atomically:

- ``<bi>/insiders_bi.duckdb`` is written beside its final name and renamed over it. A
  reader that opened the old file keeps reading it (the old inode stays alive until it
  closes); the next connection opens the new one. Nobody ever sees half a snapshot.
- ``<bi>/parquet`` is a symbolic link to ``<bi>/versions/<snapshot_id>/``, swapped by
  renaming a new link over it; the previous version is kept for readers that are still
  in it, older ones are removed.

The snapshot carries ``main.snapshot_info`` (run, as-of, time, schema version, and
whether its figures come from synthetic demo data) so a reader can tell which run it
shows, whether it understands its schema, and whether to warn that nothing is real.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from models_py.locations import DUCKDB_CONFIG, PARQUET_LINK, SCHEMA_VERSION, SNAPSHOT_FILE
from models_py.published import PUBLISHED_TABLES
from orchestration.sessions import Warehouse, open_warehouse
from orchestration.warehouse import path_literal

VERSIONS_DIR = "versions"

# (schema, table): what BI tools and the dashboard may read; the one list is
# models_py.published (the report and the dbt exposures use it too).
SNAPSHOT_TABLES: tuple[tuple[str, str], ...] = PUBLISHED_TABLES


@dataclass(frozen=True)
class PublishedSnapshot:
    """Where a snapshot went and what it holds."""

    snapshot_id: str
    path: Path
    parquet_dir: Path
    run_id: str
    as_of: str | None
    rows: dict[str, int]
    is_synthetic: bool = False


def publish_snapshot(warehouse: Warehouse, bi_dir: Path, run_id: str) -> PublishedSnapshot:
    """Copy ``SNAPSHOT_TABLES`` from the warehouse into a new snapshot and swap it in.

    Everything is written under new names first; only the two renames at the end make
    it visible, so a failure anywhere leaves the previous snapshot as it was.
    """
    published_at = datetime.now(UTC)
    snapshot_id = f"{published_at:%Y%m%dT%H%M%S%fZ}-{run_id[:8]}"
    bi_dir.mkdir(parents=True, exist_ok=True)
    partial = bi_dir / f".{SNAPSHOT_FILE}.{snapshot_id}.partial"
    version_dir = bi_dir / VERSIONS_DIR / snapshot_id
    version_dir.mkdir(parents=True)
    rows: dict[str, int] = {}
    try:
        reads = [f"{schema}.{table}" for schema, table in SNAPSHOT_TABLES]
        with _source(warehouse, reads, version_dir) as con:
            as_of = con.execute("select max(as_of) from ml.customer_segments").fetchone()[0]
            is_synthetic = _is_synthetic(con)
            con.execute(f"attach {path_literal(partial)} as snapshot")
            for schema in sorted({schema for schema, _ in SNAPSHOT_TABLES}):
                con.execute(f"create schema snapshot.{schema}")
            for schema, table in SNAPSHOT_TABLES:
                name = f"{schema}.{table}"
                con.execute(f"create table snapshot.{name} as select * from {name}")
                rows[name] = con.execute(f"select count(*) from snapshot.{name}").fetchone()[0]
                parquet = version_dir / f"{name}.parquet"
                con.execute(f"copy snapshot.{name} to {path_literal(parquet)} (format parquet)")
            con.execute(
                """
                create table snapshot.main.snapshot_info as select
                    ?::varchar as snapshot_id, ?::varchar as run_id, ?::date as as_of,
                    ?::timestamptz as published_at, ?::integer as schema_version,
                    ?::json as table_rows, ?::boolean as is_synthetic
                """,
                [
                    snapshot_id,
                    run_id,
                    as_of,
                    published_at,
                    SCHEMA_VERSION,
                    json.dumps(rows),
                    is_synthetic,
                ],
            )
            info_parquet = path_literal(version_dir / "main.snapshot_info.parquet")
            con.execute(f"copy snapshot.main.snapshot_info to {info_parquet} (format parquet)")
            con.execute("checkpoint snapshot")
            con.execute("detach snapshot")
        os.replace(partial, bi_dir / SNAPSHOT_FILE)
    except BaseException:
        partial.unlink(missing_ok=True)
        shutil.rmtree(version_dir, ignore_errors=True)
        raise
    _swap_link(bi_dir / PARQUET_LINK, Path(VERSIONS_DIR) / snapshot_id)
    _prune_versions(bi_dir, keep={snapshot_id})
    return PublishedSnapshot(
        snapshot_id=snapshot_id,
        path=bi_dir / SNAPSHOT_FILE,
        parquet_dir=bi_dir / PARQUET_LINK,
        run_id=run_id,
        as_of=str(as_of) if as_of is not None else None,
        rows=rows,
        is_synthetic=is_synthetic,
    )


def _source(
    warehouse: Warehouse, reads: list[str], version_dir: Path
) -> AbstractContextManager[duckdb.DuckDBPyConnection]:
    """A DuckDB connection in which the published relations (and the labels' as-of)
    can be read: the warehouse's (``open_warehouse``), or on Spark an in-memory DuckDB
    over the Parquet files Spark's tasks wrote (:func:`_from_spark`)."""
    from orchestration.spark import SparkWarehouse

    if isinstance(warehouse, SparkWarehouse):
        return _from_spark(warehouse, reads, version_dir / ".spark")
    return open_warehouse(warehouse, reads=reads)


@contextmanager
def _from_spark(
    warehouse: Warehouse, reads: list[str], folder: Path
) -> Iterator[duckdb.DuckDBPyConnection]:
    """Spark writes each published table as Parquet (one file per table, by one task:
    nothing of it passes through the driver's memory) into ``folder``; DuckDB reads
    them as views, streaming, into the snapshot; ``folder`` is removed at the end.
    Spark's ``timestamp`` (an instant) is written as the naive UTC time the other
    targets publish."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import TimestampType

    spark = warehouse.session()  # type: ignore[union-attr]
    con = duckdb.connect(config={**DUCKDB_CONFIG, "temp_directory": str(folder / "spill")})
    try:
        for relation in reads:
            spark.sql(f"refresh table {relation}")
            frame = spark.table(relation)
            frame = frame.select(
                *[
                    F.col(f.name).cast("timestamp_ntz").alias(f.name)
                    if isinstance(f.dataType, TimestampType)
                    else F.col(f.name)
                    for f in frame.schema.fields
                ]
            )
            parts = folder / relation
            frame.coalesce(1).write.mode("overwrite").parquet(str(parts))
            schema, _, name = relation.partition(".")
            con.execute(f"create schema if not exists {schema}")
            # A view cannot take a parameter: the path is our own folder, quoted.
            files = path_literal(parts / "*.parquet")
            con.execute(f"create view {schema}.{name} as select * from read_parquet({files})")
        spark.sql("refresh table ml.customer_segments")
        as_of = spark.sql("select max(as_of) as as_of from ml.customer_segments").collect()[0][0]
        con.execute("create schema if not exists ml")
        con.execute("create table ml.customer_segments as select ?::date as as_of", [as_of])
        yield con
    finally:
        con.close()
        shutil.rmtree(folder, ignore_errors=True)


def _is_synthetic(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether the published figures come from synthetic demo data: the flag dbt put
    on ``insiders.kpis`` (from ``raw.loaded_files.is_synthetic``); false without labels."""
    flag = con.execute("select bool_or(is_synthetic) from insiders.kpis").fetchone()[0]
    return bool(flag)


def _swap_link(link: Path, target: Path) -> None:
    """Point ``link`` at ``target`` atomically: a new link renamed over the old one."""
    fresh = link.with_name(f".{link.name}.{target.name}.partial")
    fresh.unlink(missing_ok=True)
    fresh.symlink_to(target, target_is_directory=True)
    if link.exists() and not link.is_symlink():
        raise FileExistsError(f"{link}: exists and is not the snapshot's link; move it away")
    os.replace(fresh, link)


def _prune_versions(bi_dir: Path, keep: set[str], previous: int = 1) -> None:
    """Keep the current version and the ``previous`` newest before it (readers may still
    be in them); remove the rest."""
    versions = sorted((bi_dir / VERSIONS_DIR).iterdir(), key=lambda p: p.name, reverse=True)
    older = [v for v in versions if v.name not in keep]
    for stale in older[previous:]:
        shutil.rmtree(stale, ignore_errors=True)
