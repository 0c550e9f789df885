"""The Python steps on PostgreSQL: their relations copied into an in-memory DuckDB, and
their ``ml`` tables copied back in one transaction.

The clustering, the rolling-origin evaluation, the report and the BI snapshot read and
write the warehouse through a DuckDB connection (their SQL is DuckDB's: ``exclude``,
``read_parquet``, ``attach``). On PostgreSQL they get an in-memory DuckDB holding a
copy of what they read (:func:`pull`: PostgreSQL ``COPY ... TO STDOUT`` as CSV into a
temporary file, read by DuckDB with the column types PostgreSQL reports) and of the whole
``ml`` schema. When the step is done, the ``ml`` tables it changed are written back
(:func:`push`) in ONE PostgreSQL transaction (``delete`` and ``COPY ... FROM STDIN``):
readers of PostgreSQL see the previous run's ``ml`` rows until the commit, and a
failure leaves them. Same code, same values, on both targets; what PostgreSQL computes
(views over the marts) it computes in the server.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb

from models_py.locations import DUCKDB_CONFIG
from orchestration.ml_tables import ML_COLUMNS, ensure_ml_tables
from orchestration.postgres import PgWarehouse, errors_in_one_line
from orchestration.warehouse import path_literal

# PostgreSQL type OIDs and the DuckDB type of their values; numeric with a precision
# becomes DECIMAL(p, s), any other type text (DuckDB casts it where it is used).
_DUCKDB_TYPES = {
    16: "BOOLEAN",
    20: "BIGINT",
    21: "SMALLINT",
    23: "INTEGER",
    700: "FLOAT",
    701: "DOUBLE",
    1082: "DATE",
    1114: "TIMESTAMP",
    1184: "TIMESTAMPTZ",
    1700: "DOUBLE",
}
_NUMERIC = 1700


def relation_exists(pg: Any, relation: str) -> bool:
    """Whether ``schema.name`` is a table or view of the database."""
    schema, _, name = relation.partition(".")
    row = pg.execute(
        "select count(*) from information_schema.tables "
        "where table_catalog = current_database() and table_schema = %s and table_name = %s",
        [schema, name],
    ).fetchone()
    return bool(row[0])


def pull(
    pg: Any,
    duck: duckdb.DuckDBPyConnection,
    relation: str,
    folder: Path,
    query: str | None = None,
    params: Sequence[Any] | None = None,
) -> int:
    """Copy ``relation`` of PostgreSQL (or ``query``'s rows) into the DuckDB table of
    the same ``schema.name``; the number of rows. An existing DuckDB table of that name
    takes the rows (its types rule); otherwise one is made with PostgreSQL's types."""
    schema, _, name = relation.rpartition(".")
    schema = schema or "main"
    source = query or f'select * from {schema}."{name}"'
    cur = pg.cursor()
    cur.execute(f"select * from ({source}) as pulled limit 0", params)
    columns = {d.name: _duckdb_type(d) for d in cur.description or []}
    path = folder / f"{schema}.{name}.csv"
    with path.open("wb") as out, cur.copy(f"copy ({source}) to stdout (format csv)", params) as cp:
        for block in cp:
            out.write(block)
    duck.execute(f"create schema if not exists {schema}")
    existing = duck.execute(
        "select column_name, data_type from information_schema.columns "
        "where table_schema = ? and table_name = ? order by ordinal_position",
        [schema, name],
    ).fetchall()
    if existing:  # read PostgreSQL's column order with the DuckDB table's types
        kinds = dict(existing)
        columns = {column: kinds.get(column, kind) for column, kind in columns.items()}
    spec = "{" + ", ".join(f"'{c}': '{t}'" for c, t in columns.items()) + "}"
    read = (
        f"select * from read_csv(?, header = false, columns = {spec}, auto_detect = false, "
        "allow_quoted_nulls = false, quote = '\"', escape = '\"')"
    )
    if existing:
        duck.execute(f'delete from {schema}."{name}"')
        names = ", ".join(f'"{c}"' for c in columns)
        duck.execute(f'insert into {schema}."{name}" ({names}) {read}', [str(path)])
    else:
        duck.execute(f'create table {schema}."{name}" as {read}', [str(path)])
    path.unlink()
    # fetchall, not fetchone: DuckDB 2 keeps a half-read result open on the connection.
    return int(duck.execute(f'select count(*) from {schema}."{name}"').fetchall()[0][0])


def _duckdb_type(description: Any) -> str:
    if description.type_code == _NUMERIC and description.precision:
        precision, scale = description.precision, description.scale or 0
        if precision <= 38:
            return f"DECIMAL({precision}, {scale})"
    return _DUCKDB_TYPES.get(description.type_code, "VARCHAR")


def fingerprint(duck: duckdb.DuckDBPyConnection, table: str) -> tuple[Any, ...]:
    """Row count and an order-independent hash of the rows of ``ml.<table>``."""
    row = duck.execute(f"select count(*), bit_xor(hash(t)) from ml.{table} as t").fetchall()
    return tuple(row[0])


def push(pg: Any, duck: duckdb.DuckDBPyConnection, tables: Sequence[str], folder: Path) -> None:
    """Replace the PostgreSQL ``ml`` tables ``tables`` with DuckDB's rows, in the caller's
    PostgreSQL transaction (``delete`` keeps readers on the old rows until it commits)."""
    for table in tables:
        columns = list(ML_COLUMNS[table])
        names = ", ".join(f'"{c}"' for c in columns)
        path = folder / f"ml.{table}.out.csv"
        duck.execute(
            f"copy (select {names} from ml.{table}) to {path_literal(path)} "
            "(format csv, header false)"
        )
        pg.execute(f"delete from ml.{table}")
        copy = f"copy ml.{table} ({names}) from stdin (format csv)"
        with pg.cursor().copy(copy) as cp, path.open("rb") as handle:
            while block := handle.read(1 << 20):
                cp.write(block)
        path.unlink()


@contextmanager
def mirror(
    warehouse: PgWarehouse,
    reads: Sequence[str | tuple[str, str]] = (),
    write: bool = False,
) -> Iterator[duckdb.DuckDBPyConnection]:
    """An in-memory DuckDB holding ``ml.*`` and ``reads`` of the PostgreSQL warehouse;
    with ``write``, the ``ml`` tables the caller changed go back in one transaction when
    the block ends without an error. ``reads``: relation names, or (name, query) pairs
    to copy only a query's rows under that name. A relation PostgreSQL lacks is left
    out (the step says what is missing, as on DuckDB)."""
    from psycopg import IsolationLevel

    with errors_in_one_line(), tempfile.TemporaryDirectory(prefix="insiders-pg-") as tmp:
        folder = Path(tmp)
        pg = warehouse.connect(application="step")
        # Every relation copied from one snapshot of the database.
        pg.isolation_level = IsolationLevel.REPEATABLE_READ
        duck = duckdb.connect(config={**DUCKDB_CONFIG, "temp_directory": str(folder / "spill")})
        try:
            with pg.transaction():
                ensure_ml_tables(pg, postgres=True)
            ensure_ml_tables(duck)
            summaries = {item[0]: item[1] for item in reads if isinstance(item, tuple)}
            for table in ML_COLUMNS:  # an ml table asked as a summary: only its rows
                pull(pg, duck, f"ml.{table}", folder, summaries.get(f"ml.{table}"))
            for item in reads:
                relation, query = item if isinstance(item, tuple) else (item, None)
                if relation.startswith("ml.") and relation.removeprefix("ml.") in ML_COLUMNS:
                    continue
                summary = query is not None and "." in relation  # of that relation
                if (query is not None and not summary) or relation_exists(pg, relation):
                    pull(pg, duck, relation, folder, query)
            before = {t: fingerprint(duck, t) for t in ML_COLUMNS} if write else {}
            pg.commit()  # no transaction stays open while the step computes
            pg.isolation_level = None
            yield duck
            if write:
                changed = [t for t in ML_COLUMNS if fingerprint(duck, t) != before[t]]
                if changed:
                    with pg.transaction():
                        push(pg, duck, changed, folder)
        finally:
            duck.close()
            pg.close()
