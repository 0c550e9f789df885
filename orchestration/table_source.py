"""Order lines from a table or view already in the warehouse: ``table:SCHEMA.NAME``.

The table is read where it lives, streamed in batches through the warehouse's own
connection (no export, no file, never held whole), and its rows go through the same
mapping, typing and quarantine as a file's (:class:`models_py.columnar.ColumnarSplitter`).
Its ledger entry (``raw.loaded_files``) is ``table:schema.name`` with a fingerprint of
its content (row count and a sum of row hashes) in place of a file's SHA-256: loading an
unchanged table again does nothing, a changed one replaces its rows.

The name is an outside value: it must be ``[schema.]name`` of letters, digits and ``_``
(checked here), it is looked up with bound parameters in ``information_schema``, and
only a name found there is written into a query, quoted as an identifier.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from models_py.ingest import TransactionFileError

PREFIX = "table:"
_NAME = re.compile(r"(?:([A-Za-z_][A-Za-z0-9_]*)\.)?([A-Za-z_][A-Za-z0-9_]*)")
_BATCH_ROWS = 100_000
_ISO_SQL = "YYYY-MM-DD HH24:MI:SS"


@dataclass(frozen=True)
class TableRef:
    """A ``table:SCHEMA.NAME`` source, its name checked (not yet looked up)."""

    schema: str | None
    name: str

    @property
    def path(self) -> str:
        """How the ledger, the messages and ``source_file`` name it."""
        return f"{PREFIX}{self.schema + '.' if self.schema else ''}{self.name}"

    def qualified(self, default_schema: str) -> tuple[str, str]:
        return self.schema or default_schema, self.name


def is_table(spec: str) -> bool:
    return spec.startswith(PREFIX)


def parse(spec: str) -> TableRef:
    """``table:shop.orders`` -> TableRef; a name that is no plain identifier is one
    :class:`TransactionFileError` line."""
    match = _NAME.fullmatch(spec[len(PREFIX) :])
    if match is None:
        raise TransactionFileError(
            spec, "not a table name: give table:SCHEMA.NAME (letters, digits and _)"
        )
    return TableRef(match[1], match[2])


def _quote(identifier: str) -> str:
    """A name found in information_schema, as a quoted identifier."""
    return '"' + identifier.replace('"', '""') + '"'


Reader = Callable[[list[str], list[str], list[str]], Iterator[pa.RecordBatch]]


@dataclass
class OpenedTable:
    """What the loader needs of a table: its resolved name (the ledger's key, however
    the user spelt it), columns, types, a content fingerprint, and ``reader(columns,
    order, fill)`` streaming the chosen columns."""

    path: str  # table:schema.name as the engine names it
    names: list[str]
    types: dict[str, pa.DataType]
    fingerprint: str
    rows: int
    reader: Reader


def _ordered(
    columns: list[str],
    order: list[str],
    fill: list[str],
    expression: Callable[[str], str],
    text: Callable[[str], bool],
) -> str:
    """The select list and order of a table read: each column's ``expression``; a
    column of ``fill`` blank on a line takes its order's value (a table keeps no line
    order, so "the order's first line" is any line holding it); rows grouped by
    ``order``, then by every column, so the same content reads in the same order."""
    parts = []
    group = expression(order[0])
    for column in columns:
        value = expression(column)
        if column in fill and text(column):
            value = (
                f"coalesce(nullif({value}, ''), "
                f"max(nullif({value}, '')) over (partition by {group}))"
            )
        elif column in fill:  # a typed column: blank is null
            value = f"coalesce({value}, max({value}) over (partition by {group}))"
        parts.append(value)
    listed = ", ".join(parts)
    every = ", ".join(expression(c) for c in columns)
    return f"select {listed} from @RELATION@ order by {group}, {every}"


def open_duckdb(con: Any, ref: TableRef) -> OpenedTable:
    """The table in a DuckDB warehouse, read through a cursor of ``con`` (its own
    context: the load's transaction writes ``raw`` meanwhile)."""
    schema, name = ref.qualified("main")
    cursor = con.cursor()
    # As DuckDB resolves a name: in any case (an exact match first, if both exist).
    found = cursor.execute(
        "select table_schema, table_name from information_schema.tables "
        "where lower(table_schema) = lower(?) and lower(table_name) = lower(?) "
        "order by table_schema = ? and table_name = ? desc limit 1",
        [schema, name, schema, name],
    ).fetchall()
    if not found:
        cursor.close()
        raise TransactionFileError(ref.path, "no such table or view in the warehouse")
    schema, name = found[0]
    relation = f"{_quote(schema)}.{_quote(name)}"
    probe = cursor.sql(f"select * from {relation} limit 0").to_arrow_table()
    rows, total = cursor.execute(
        f"select count(*), coalesce(sum(hash(t)), 0) from {relation} as t"
    ).fetchall()[0]

    def batches(columns: list[str], order: list[str], fill: list[str]) -> Iterator[pa.RecordBatch]:
        # Typed columns stay typed (models_py.columnar renders them as text).
        typed = {c for c in columns if not pa.types.is_string(probe.schema.field(c).type)}
        query = _ordered(columns, order, fill, _quote, lambda c: c not in typed)
        query = query.replace("@RELATION@", relation)
        reader = cursor.sql(query).to_arrow_reader(_BATCH_ROWS)
        try:
            yield from reader
        finally:
            reader.close()
            cursor.close()

    return OpenedTable(
        f"{PREFIX}{schema}.{name}",
        list(probe.schema.names),
        {f.name: f.type for f in probe.schema},
        f"table:{rows}:{total}",
        rows,
        batches,
    )


def open_postgres(con: Any, ref: TableRef, timezone: str | None) -> OpenedTable:
    """The table in a PostgreSQL warehouse, streamed through a server-side cursor on
    the load's connection; values come as text (timestamps as ``YYYY-MM-DD HH:MM:SS``,
    an instant in the mapping's time zone, bound)."""
    from psycopg import sql

    schema, name = ref.qualified("public")
    # An unquoted name is folded to lower case (create table Orders makes orders): the
    # exact name first, else its lower-case form.
    located = con.execute(
        "select table_schema, table_name from information_schema.tables "
        "where (table_schema, table_name) in ((%s, %s), (lower(%s), lower(%s))) "
        "order by table_schema = %s and table_name = %s desc limit 1",
        [schema, name, schema, name, schema, name],
    ).fetchall()
    if located:
        schema, name = located[0]
    found = con.execute(
        "select column_name, data_type from information_schema.columns "
        "where table_schema = %s and table_name = %s order by ordinal_position",
        [schema, name],
    ).fetchall()
    if not found:
        raise TransactionFileError(ref.path, "no such table or view in the warehouse")
    relation = sql.Identifier(schema, name)
    rows, total = con.execute(
        sql.SQL(
            "select count(*), coalesce(sum(('x' || left(md5(t::text), 15))::bit(60)::bigint), 0)"
            " from {} as t"
        ).format(relation)
    ).fetchone()
    kinds = dict(found)
    types: dict[str, pa.DataType] = {}
    for column, kind in found:
        temporal = kind.startswith("timestamp") or kind == "date"
        types[column] = pa.timestamp("s") if temporal else pa.string()

    def text(column: str) -> str:
        """The column as text, in SQL (identifiers quoted by psycopg; the zone is the
        query's one parameter, %(zone)s)."""
        kind = kinds[column]
        ident = sql.Identifier(column).as_string(con)
        if kind == "timestamp with time zone":
            return f"to_char({ident} at time zone %(zone)s, '{_ISO_SQL}')"
        if kind.startswith("timestamp") or kind == "date":
            return f"to_char({ident}, '{_ISO_SQL}')"
        if kind == "numeric":  # 2.500000 of a numeric(12, 6) is 2.5
            return f"trim_scale({ident})::text"
        return f"{ident}::text"

    def batches(columns: list[str], order: list[str], fill: list[str]) -> Iterator[pa.RecordBatch]:
        query = _ordered(columns, order, fill, text, lambda _: True)
        query = query.replace("@RELATION@", relation.as_string(con))
        with con.cursor(name="insiders_table_source") as cursor:
            cursor.execute(query.encode(), {"zone": timezone or "UTC"})
            while chunk := cursor.fetchmany(_BATCH_ROWS):
                yield pa.RecordBatch.from_arrays(
                    [pa.array(list(col), pa.string()) for col in zip(*chunk, strict=True)],
                    names=columns,
                )

    return OpenedTable(
        f"{PREFIX}{schema}.{name}", [c for c, _ in found], types, f"table:{rows}:{total}", rows,
        batches,
    )  # fmt: skip
