"""Order lines from columnar sources: Parquet files and tables already in a warehouse.

They meet the CSV path (:mod:`models_py.ingest`) at the :class:`~models_py.ingest.Piece`:
each batch of rows becomes the same text records (typed values rendered as text: a
timestamp as ``YYYY-MM-DD HH:MM:SS`` in the mapping's time zone, a number as its
shortest exact decimal), so typing, quarantine reasons, refunds and pseudonyms are the
one implementation of every source. Nothing is held whole: rows arrive in batches
(Parquet row groups, a table's result stream), and ``source_line`` is a row's number
in its source (1 for the first row; there is no header line).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from models_py.ingest import (
    _EMPTY_REJECTED,
    _SNIFF_ROWS,
    Header,
    OrderLevel,
    Piece,
    Splitter,
    TransactionFileError,
    _record_columns,
    check_sample,
    display_path,
    mapping_fingerprint,
    redact,
    redacts,
    resolve_header,
    settle_mapping,
)
from models_py.mapping import Mapping

PARQUET_MAGIC = b"PAR1"
# Rows per batch of a columnar source: about the size of a CSV chunk's records.
BATCH_ROWS = 250_000
_ISO = "%Y-%m-%d %H:%M:%S"


def is_parquet(path: Path) -> bool:
    """Parquet by content: the magic bytes at both ends of the file."""
    try:
        with path.open("rb") as handle:
            head = handle.read(4)
            handle.seek(-4, 2)
            tail = handle.read(4)
    except OSError:
        return False
    return head == PARQUET_MAGIC and tail == PARQUET_MAGIC


def _as_text(array: pa.Array | pa.ChunkedArray, timezone: str | None) -> pa.Array:
    """A column as the text a CSV export would hold (nulls stay null)."""
    kind = array.type
    if pa.types.is_string(kind):
        return array
    if pa.types.is_large_string(kind) or pa.types.is_dictionary(kind):
        return array.cast(pa.string())
    if pa.types.is_timestamp(kind):
        if kind.tz is not None:  # an instant: its local time in the store's zone
            array = array.cast(pa.timestamp(kind.unit, tz=timezone or "UTC"))
            array = pc.local_timestamp(array)
        # Down to the second (before 1970 too: a plain cast truncates towards zero).
        seconds = pc.floor_temporal(array, unit="second").cast(pa.timestamp("s"))
        return pc.strftime(seconds, format=_ISO)
    if pa.types.is_date(kind):
        return pc.strftime(array.cast(pa.timestamp("s")), format=_ISO)
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        # As the CSV path decodes a line: UTF-8, else Windows-1252 (Latin-1 for the
        # five bytes it leaves undefined).
        return pa.array([None if v is None else _decode(v) for v in array.to_pylist()], pa.string())
    if pa.types.is_decimal(kind):
        # 2.500000 (a decimal(12, 6)) is 2.5: the exact value, without the scale's zeros.
        text = array.cast(pa.string())
        text = pc.replace_substring_regex(text, pattern=r"(\.[0-9]*?)0+$", replacement=r"\1")
        return pc.replace_substring_regex(text, pattern=r"\.$", replacement="")
    return array.cast(pa.string())


def _decode(value: bytes) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        try:
            return value.decode("cp1252")
        except UnicodeDecodeError:
            return value.decode("latin-1")


class ColumnarSplitter(Splitter):
    """Splits a columnar source into :class:`Piece` s, as ``FileSplitter`` does a CSV
    file: the header is the source's column names, checked against the mapping (or the
    presets) before any piece; typed timestamps make the dates ISO text whatever the
    mapping's format (they need no parsing)."""

    def __init__(
        self,
        path: str,
        sha256: str,
        names: list[str],
        batches: Callable[[list[str], list[str], list[str]], Iterator[pa.RecordBatch]],
        types: dict[str, pa.DataType],
        encoding: str,
        mapping: Mapping | None = None,
    ) -> None:
        self.path = path
        self.sha256 = sha256
        self.names = names
        self.batches = batches
        self.types = types
        self._encoding = encoding
        self.given = mapping
        self.mapping: Mapping | None = None
        self.layout = ""
        self.raw_lines = 0
        self._done = False

    @property
    def encoding(self) -> str:
        return self._encoding  # parquet, table

    def header(self) -> Header:
        return resolve_header(self.path, self.names, self.given)

    def pieces(self) -> Iterator[Piece]:
        header = self.header()
        self.fingerprint = mapping_fingerprint(header.mapping)  # before the swap below
        wanted = sorted({pos for positions in header.sources.values() for pos in positions})
        columns = [self.names[pos] for pos in wanted]
        date_column = self.names[header.sources["InvoiceDate"][0]]
        typed_dates = not pa.types.is_string(self.types[date_column]) and not (
            pa.types.is_large_string(self.types[date_column])
        )
        mapping = header.mapping
        if typed_dates and not mapping.layouts:
            mapping = dataclasses.replace(mapping, date_formats=(_ISO,))
            header = dataclasses.replace(header, mapping=mapping)
        orders = OrderLevel(header)
        hide = redacts(mapping)
        first = True
        # A table has no order of its own: its rows are read grouped by order (the
        # order-level fields filled from the order's other lines, where they are).
        order = [self.names[header.sources["InvoiceNo"][0]]]
        known = {name.lower(): name for name in self.names}
        fill = [known[c.lower()] for c in mapping.order_level if c.lower() in known]
        for batch in self.batches(columns, order, fill):
            rows = batch.num_rows
            text = {
                pos: _as_text(batch.column(i), mapping.timezone) for i, pos in enumerate(wanted)
            }
            records = pa.table(_record_columns(header, text.__getitem__, rows))
            records = records.append_column(
                "source_line",
                pa.array(range(self.raw_lines + 1, self.raw_lines + rows + 1), pa.int64()),
            )
            records, rejected = _nul_records(records, hide)
            if first:
                dates = records.column("InvoiceDate").slice(0, _SNIFF_ROWS).to_pylist()
                self.mapping = settle_mapping(header, dates)
                self.layout = self.mapping.name
                if not header.mapping.layouts:
                    check_sample(self.path, self.mapping, header.labels, records)
                first = False
            self.raw_lines += rows
            yield Piece(
                self.path, self.layout, orders.apply(records), rejected, self.mapping, header.labels
            )
        if first:  # no rows at all
            self.mapping = settle_mapping(header, [])
            self.layout = self.mapping.name
        self._done = True


def _nul_records(records: pa.Table, hide: bool) -> tuple[pa.Table, pa.Table]:
    """Split off the records holding a NUL byte (PostgreSQL text cannot), quarantined
    as the CSV path quarantines them."""
    mask = None
    for name in records.column_names:
        if name == "source_line":
            continue
        hit = pc.fill_null(pc.match_substring(records.column(name), "\x00"), False)
        mask = hit if mask is None else pc.or_(mask, hit)
    if mask is None or not pc.any(mask).as_py():
        return records, _EMPTY_REJECTED.empty_table()
    bad = records.filter(mask)
    shown = []
    for row in bad.to_pylist():
        text = ",".join(
            (row[c] or "") for c in records.column_names if c != "source_line" and row[c]
        ).replace("\x00", "\\x00")
        shown.append(redact(text) if hide else text)
    rejected = pa.table(
        {
            "source_line": bad.column("source_line"),
            "raw_record": pa.array(shown, pa.string()),
            "reason": pa.array(["NUL byte in the record"] * bad.num_rows, pa.string()),
        },
        schema=_EMPTY_REJECTED,
    )
    return records.filter(pc.invert(mask)), rejected


def parquet_splitter(path: Path, sha256: str, mapping: Mapping | None = None) -> ColumnarSplitter:
    """A Parquet file's splitter; raises :class:`TransactionFileError` for a file
    pyarrow cannot read as Parquet."""
    shown = display_path(path)
    try:
        parquet = pq.ParquetFile(path)
        schema = parquet.schema_arrow
    except (OSError, pa.ArrowException) as exc:
        raise TransactionFileError(path, f"unreadable Parquet file ({exc})") from None
    names = list(schema.names)
    types = {field.name: field.type for field in schema}

    def batches(columns: list[str], order: list[str], fill: list[str]) -> Iterator[pa.RecordBatch]:
        """The file's rows in its own order (``order`` and ``fill`` are for tables: a
        file's order-level fields are filled down as it is read)."""
        try:
            reader = pq.ParquetFile(path)
            yield from reader.iter_batches(batch_size=BATCH_ROWS, columns=columns)
        except (OSError, pa.ArrowException) as exc:
            raise TransactionFileError(path, f"unreadable Parquet file ({exc})") from None

    return ColumnarSplitter(shown, sha256, names, batches, types, "parquet", mapping)
