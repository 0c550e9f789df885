"""Schema ``raw`` in PostgreSQL: its tables, and the loader's writes there (bulk COPY).

``orchestration.warehouse.load_files`` does everything that does not depend on the
target (discovery, hashing, layout detection, splitting, typing each batch in an
in-memory staging DuckDB, quarantine, idempotence, the synthetic-data rules), so a
PostgreSQL load gives exactly the rows, reasons, counts and report a DuckDB load
gives. :class:`PgSink` only writes:

* each batch's typed rows stream from the staging DuckDB as Arrow record batches,
  become CSV bytes (Arrow's writer, in C++) and go to ``COPY raw.<table> (...) FROM
  STDIN`` through psycopg's ``cursor.copy()``, one record batch at a time: memory stays
  the DuckDB loader's (one batch), whatever the input's size. Arrow's CSV writer quotes
  every string and writes a null as nothing, and PostgreSQL's CSV format reads an
  unquoted empty field as NULL and ``""`` as the empty string, so NULL and ``''`` (a
  quarantined record with no text) stay apart;
* a replaced file's rows are deleted with ``source_file = any(%s)``, ``raw.loaded_files``
  is upserted (``on conflict (source_file) do update``), all values bound;
* all files of one call are one transaction: a failure rolls back everything, and a
  killed loader's connection drops and the server rolls back. A transaction-scoped
  advisory lock makes a second loader of the same database wait until the first
  commits, so it never reads a ledger the first is about to change.

Columns are created with the DuckDB DDL's names, unquoted: PostgreSQL folds them to
lower case (``invoiceno``), which is how dbt's staging models select them (unquoted),
so the same SQL finds them on both targets (DuckDB is case-insensitive).
"""

from __future__ import annotations

import contextlib
import datetime as dt
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.csv as pacsv

from orchestration.postgres import PgWarehouse, errors_in_one_line
from orchestration.warehouse import FILE_COLUMNS

if TYPE_CHECKING:
    import psycopg

    from models_py.mapping import Mapping
    from orchestration.table_source import OpenedTable, TableRef

# The tables of schema raw (PostgreSQL types for RAW_DDL's DuckDB ones), each created
# only when missing: a loader role needs no CREATE privilege once they exist.
RAW_TABLES: dict[str, str] = {
    "transactions": """
        create table if not exists raw.transactions (
            InvoiceNo text not null,
            StockCode text not null,
            Description text,
            Quantity integer not null,
            InvoiceDate timestamp not null,
            UnitPrice numeric(18, 4) not null,
            CustomerID text,
            Country text,
            source_file text not null,
            source_line bigint not null,
            line_kind text not null default 'record'
        )""",
    "quarantined_rows": """
        create table if not exists raw.quarantined_rows (
            source_file text not null,
            source_line bigint not null,
            raw_record text,
            reason text not null
        )""",
    "loaded_files": """
        create table if not exists raw.loaded_files (
            source_file text primary key,
            file_sha256 text not null,
            layout text not null,
            encoding text not null,
            raw_lines bigint not null,
            loaded_rows bigint not null,
            quarantined_rows bigint not null,
            loaded_at timestamp not null,
            is_synthetic boolean default false,
            refund_rows bigint default 0,
            mapping_fingerprint text default ''
        )""",
    "customer_identities": """
        create table if not exists raw.customer_identities (
            customer_key text primary key,
            customer_ref text not null,
            first_source_file text not null
        )""",
    "pseudonym_secret": """
        create table if not exists raw.pseudonym_secret (secret text not null)""",
}
# Columns added since the tables were first made: (table, column, PostgreSQL type).
ADDED_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("transactions", "line_kind", "text not null default 'record'"),
    ("loaded_files", "refund_rows", "bigint default 0"),
    ("loaded_files", "mapping_fingerprint", "text default ''"),
)
# pg_advisory_xact_lock key of a load (and of creating raw): any constant of our own.
LOAD_LOCK_KEY = 0x1D5_10AD
_WRITE_OPTIONS = pacsv.WriteOptions(include_header=False)


def ensure_raw_tables(con: psycopg.Connection) -> None:
    """Create schema ``raw`` and its tables where missing, and commit (call it before
    dbt runs: its sources must exist). Only what is missing is created, so a role that
    may write the tables but not create schemas passes once an owner made them; a
    privilege error is one :class:`WarehouseError` line naming the database.

    Runs in a transaction of its own (a savepoint when one is open), holding the
    loaders' advisory lock, so two first loads never race to create the same table.
    """
    with errors_in_one_line(), con.transaction():
        con.execute("select pg_advisory_xact_lock(%s)", [LOAD_LOCK_KEY])
        has_schema = con.execute(
            "select count(*) from pg_namespace where nspname = %s", ["raw"]
        ).fetchone()
        if not (has_schema and has_schema[0]):
            con.execute("create schema if not exists raw")
        for table, ddl in RAW_TABLES.items():
            exists = con.execute("select to_regclass(%s) is not null", [f"raw.{table}"]).fetchone()
            if not (exists and exists[0]):
                con.execute(ddl)
        for table, column, kind in ADDED_COLUMNS:
            present = con.execute(
                "select count(*) from information_schema.columns "
                "where table_schema = 'raw' and table_name = %s and column_name = %s",
                [table, column],
            ).fetchone()
            if not (present and present[0]):
                con.execute(f"alter table raw.{table} add column {column} {kind}")


class PgSink:
    """:class:`orchestration.warehouse.RawSink` of a PostgreSQL database: one
    connection, one transaction from the ledger's read to the commit; every psycopg
    error becomes one :class:`WarehouseError` line naming the database."""

    def __init__(self, warehouse: PgWarehouse) -> None:
        # A batch the staging DuckDB cannot hold spills among the database's local files.
        self.spill_directory = str(warehouse.local / ".staging.tmp")
        self.con = warehouse.connect(application="load")
        try:
            with errors_in_one_line():
                # Arrow writes UTF-8 and so do the files' names; the server converts.
                self.con.execute("set client_encoding to 'UTF8'")
                self.con.commit()
            ensure_raw_tables(self.con)
            with errors_in_one_line():
                # The load's transaction starts here: a second loader waits until it ends.
                self.con.execute("select pg_advisory_xact_lock(%s)", [LOAD_LOCK_KEY])
        except BaseException:
            self.con.close()
            raise

    def known_files(self) -> dict[str, tuple[str, bool, str]]:
        with errors_in_one_line():
            rows = self.con.execute(
                "select source_file, file_sha256, is_synthetic, mapping_fingerprint "
                "from raw.loaded_files"
            ).fetchall()
        return {
            source: (sha, bool(synthetic), fingerprint or "")
            for source, sha, synthetic, fingerprint in rows
        }

    def open_table(self, ref: TableRef, mapping: Mapping | None) -> OpenedTable:
        from orchestration import table_source

        with errors_in_one_line():
            return table_source.open_postgres(
                self.con, ref, mapping.timezone if mapping is not None else None
            )

    def pseudonym_secret(self) -> bytes:
        from orchestration.warehouse import pseudonym_secret

        with errors_in_one_line():
            return pseudonym_secret(self.con, "%s")

    def record_identities(self, rows: pa.RecordBatchReader) -> None:
        """Through a temporary table: COPY cannot skip keys already there."""
        with errors_in_one_line():
            self.con.execute(
                "create temporary table if not exists ingest_identities "
                "(customer_key text, customer_ref text, first_source_file text) "
                "on commit drop"
            )
            self.con.execute("truncate ingest_identities")
        self.append_to("ingest_identities", "customer_key, customer_ref, first_source_file", rows)
        with errors_in_one_line():
            self.con.execute(
                "insert into raw.customer_identities select * from ingest_identities "
                "on conflict (customer_key) do nothing"
            )

    def begin(self) -> None:
        """The transaction is open since the ledger was read (see ``__init__``)."""

    def remove_synthetic(self) -> None:
        with errors_in_one_line():
            for table in ("transactions", "quarantined_rows"):
                self.con.execute(
                    f"delete from raw.{table} where source_file in "
                    "(select source_file from raw.loaded_files where is_synthetic)"
                )
            self.con.execute("delete from raw.loaded_files where is_synthetic")

    def delete_rows(self, sources: list[str]) -> None:
        with errors_in_one_line():
            for table in ("transactions", "quarantined_rows"):
                self.con.execute(f"delete from raw.{table} where source_file = any(%s)", [sources])

    def forget_file(self, source: str) -> None:
        with errors_in_one_line():
            for table in ("transactions", "quarantined_rows", "loaded_files"):
                self.con.execute(f"delete from raw.{table} where source_file = %s", [source])

    def append(self, table: str, columns: str, rows: pa.RecordBatchReader) -> None:
        """COPY the rows in, one Arrow record batch (a slice of one loader batch) of
        CSV bytes at a time."""
        self.append_to(f"raw.{table}", columns, rows)

    def append_to(self, table: str, columns: str, rows: pa.RecordBatchReader) -> None:
        with (
            errors_in_one_line(),
            self.con.cursor() as cursor,
            cursor.copy(f"copy {table} ({columns}) from stdin (format csv)") as copy,
        ):
            for batch in rows:
                if batch.num_rows == 0:
                    continue
                sink = pa.BufferOutputStream()
                pacsv.write_csv(batch, sink, _WRITE_OPTIONS)
                copy.write(memoryview(sink.getvalue()))
                del sink

    def record_files(self, rows: list[tuple[Any, ...]]) -> None:
        """One statement for all files: each column bound as one array. ``loaded_at``
        is the loading machine's local time, as DuckDB's ``current_localtimestamp()``."""
        if not rows:
            return
        columns = ", ".join(FILE_COLUMNS)
        updates = ", ".join(f"{c} = excluded.{c}" for c in (*FILE_COLUMNS[1:], "loaded_at"))
        arrays = [list(column) for column in zip(*rows, strict=True)]
        with errors_in_one_line():
            self.con.execute(
                f"""
                insert into raw.loaded_files ({columns}, loaded_at)
                select *, %s::timestamp from unnest(
                    %s::text[], %s::text[], %s::text[], %s::text[],
                    %s::bigint[], %s::bigint[], %s::bigint[], %s::boolean[],
                    %s::bigint[], %s::text[]
                )
                on conflict (source_file) do update set {updates}
                """,
                [dt.datetime.now(), *arrays],
            )

    def commit(self) -> None:
        with errors_in_one_line():
            self.con.commit()

    def rollback(self) -> None:
        """Roll back; on a connection already lost the server has done it, and the
        error that brought us here is the one to report."""
        import psycopg

        with contextlib.suppress(psycopg.Error):
            self.con.rollback()

    def after_commit(self) -> None:
        """Nothing: PostgreSQL needs no checkpoint of ours."""

    def close(self) -> None:
        """Close; a transaction still open (nothing to load) ends without changes."""
        self.rollback()
        self.con.close()
