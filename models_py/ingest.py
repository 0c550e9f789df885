"""Read Online Retail transaction files into typed rows and quarantined rows.

Three layouts of the same invoice lines exist in the wild, and a file's layout is
detected from its own bytes, never from its name:

* ``kaggle``: Kaggle's ``Ecommerce.csv``: a trailing empty column, dates like
  ``29-Nov-16``, Windows-1252 text.
* ``uci``: the UCI export: dates like ``12/1/2010 8:26`` (month first), UTF-8.
* ``daily``: the daily files: ISO timestamps, ``CustomerID`` like ``17850.0``.

Nothing is dropped silently: every record after the header becomes either a typed
row or a quarantined row with its line number and a reason, so that
``raw_lines == loaded_rows + quarantined_rows`` holds for every file. A file that is
not a transaction file at all raises :class:`TransactionFileError` with a one-line
message and yields nothing.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.csv as pacsv

COLUMNS: tuple[str, ...] = (
    "InvoiceNo",
    "StockCode",
    "Description",
    "Quantity",
    "InvoiceDate",
    "UnitPrice",
    "CustomerID",
    "Country",
)

# Layout name -> (DuckDB strptime format of InvoiceDate, a regex a value must match,
# what a reader should be told the format looks like).
DATE_FORMATS: dict[str, tuple[str, re.Pattern[str], str]] = {
    "daily": (
        "%Y-%m-%d %H:%M:%S",
        re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}"),
        "YYYY-MM-DD HH:MM:SS",
    ),
    "uci": ("%m/%d/%Y %H:%M", re.compile(r"\d{1,2}/\d{1,2}/\d{4} \d{1,2}:\d{2}"), "M/D/YYYY H:MM"),
    "kaggle": ("%d-%b-%y", re.compile(r"\d{1,2}-[A-Za-z]{3}-\d{2}"), "DD-Mon-YY"),
}

_SNIFF_ROWS = 100
_BINARY_PROBE = 65536


class TransactionFileError(ValueError):
    """A file that is not an Online Retail transaction file; nothing of it loads."""

    def __init__(self, path: Path | str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = str(path)
        self.problem = problem


@dataclass(frozen=True)
class RawFile:
    """One file split into records, before any value is typed.

    ``records`` holds the eight source columns as text plus ``source_line``;
    ``rejected`` holds records that could not even be split into the right number
    of fields (with ``source_line``, ``raw_record`` and ``reason``).
    """

    path: str
    sha256: str
    layout: str
    encoding: str
    raw_lines: int
    records: pa.Table
    rejected: pa.Table


def file_sha256(data: bytes) -> str:
    """Content hash that makes loading idempotent per file content."""
    return hashlib.sha256(data).hexdigest()


def _decode(path: Path | str, data: bytes) -> tuple[str, str]:
    if not data.strip():
        raise TransactionFileError(path, "empty file")
    if b"\x00" in data[:_BINARY_PROBE]:
        raise TransactionFileError(path, "binary file (NUL bytes), expected CSV text")
    try:
        return data.decode("utf-8-sig"), "utf-8"
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("cp1252"), "cp1252"
    except UnicodeDecodeError:
        # cp1252 leaves five bytes undefined; Latin-1 maps every byte.
        return data.decode("latin-1"), "latin-1"


def _header_positions(path: Path | str, header: list[str]) -> tuple[list[int], int]:
    """Map the canonical columns to positions; return them and the trailing empties."""
    names = [h.strip() for h in header]
    trailing_empty = 0
    while names and names[-1] == "":
        names.pop()
        trailing_empty += 1
    lookup = {n.lower(): i for i, n in enumerate(names)}
    missing = [c for c in COLUMNS if c.lower() not in lookup]
    unexpected = [n for n in names if n.lower() not in {c.lower() for c in COLUMNS}]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append("missing columns " + ", ".join(missing))
        if unexpected:
            parts.append("unexpected columns " + ", ".join(repr(u) for u in unexpected))
        raise TransactionFileError(
            path, "not an Online Retail transaction file: " + "; ".join(parts)
        )
    if len(lookup) != len(names):
        raise TransactionFileError(path, "duplicate column names in header")
    return [lookup[c.lower()] for c in COLUMNS], trailing_empty


def _detect_layout(dates: Iterable[str], trailing_empty: int) -> str:
    """Pick the date layout that most of the first rows follow."""
    votes = dict.fromkeys(DATE_FORMATS, 0)
    for value in dates:
        for name, (_, pattern, _) in DATE_FORMATS.items():
            if pattern.fullmatch(value.strip()):
                votes[name] += 1
    best = max(votes, key=lambda k: votes[k])
    if votes[best] == 0:
        if trailing_empty:
            return "kaggle"
        return "daily"  # no dated row at all: nothing will parse either way
    return best


def split_file(path: Path | str, data: bytes | None = None, sha256: str | None = None) -> RawFile:
    """Split one file into records; raise TransactionFileError if it is not one of ours."""
    path = Path(path)
    if data is None:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise TransactionFileError(path, f"cannot read file ({exc.strerror})") from exc
    text, encoding = _decode(path, data)
    try:
        header = next(csv.reader(io.StringIO(text, newline="")))
    except (csv.Error, StopIteration) as exc:
        raise TransactionFileError(path, f"unreadable CSV header ({exc})") from exc
    positions, trailing_empty = _header_positions(path, header)
    utf8 = data if encoding == "utf-8" else text.encode("utf-8")
    split = _split_fast(utf8, len(header), positions) or _split_exact(
        text, len(header), trailing_empty, positions
    )
    records, rejected, raw_lines = split
    layout = _detect_layout(
        records.column("InvoiceDate").slice(0, _SNIFF_ROWS).to_pylist(), trailing_empty
    )
    return RawFile(
        path=str(path),
        sha256=sha256 or file_sha256(data),
        layout=layout,
        encoding=encoding,
        raw_lines=raw_lines,
        records=records,
        rejected=rejected,
    )


_Split = tuple[pa.Table, pa.Table, int]
_EMPTY_REJECTED = pa.schema(
    [("source_line", pa.int64()), ("raw_record", pa.string()), ("reason", pa.string())]
)


def _split_fast(data: bytes, width: int, positions: list[int]) -> _Split | None:
    """Arrow's multithreaded reader, for the usual file: one record per physical line.

    Returns None (use the exact path) when any record is malformed, spans lines or
    a line is blank, because then Arrow's row index is no longer the line number.
    """
    lines = data.count(b"\n") + (0 if data.endswith(b"\n") else 1)
    try:
        table = pacsv.read_csv(
            io.BytesIO(data),
            read_options=pacsv.ReadOptions(
                skip_rows=1, column_names=[f"c{i}" for i in range(width)]
            ),
            convert_options=pacsv.ConvertOptions(
                column_types={f"c{i}": pa.string() for i in range(width)},
                strings_can_be_null=False,
            ),
        )
    except pa.ArrowInvalid:
        return None
    if table.num_rows + 1 != lines:
        return None
    columns = {name: table.column(pos) for name, pos in zip(COLUMNS, positions, strict=True)}
    columns["source_line"] = pa.array(range(2, table.num_rows + 2), pa.int64())
    return pa.table(columns), _EMPTY_REJECTED.empty_table(), table.num_rows


def _split_exact(text: str, width: int, trailing_empty: int, positions: list[int]) -> _Split:
    """Python's csv reader, record by record, keeping each record's first line number."""
    reader = csv.reader(io.StringIO(text, newline=""))
    next(reader)
    named = width - trailing_empty
    rows: list[list[str]] = []
    starts: list[int] = []
    rej_lines: list[int] = []
    rej_records: list[str] = []
    rej_reasons: list[str] = []
    raw_lines = 0
    previous_end = reader.line_num
    try:
        for row in reader:
            start = previous_end + 1
            previous_end = reader.line_num
            raw_lines += 1
            if len(row) == width or (trailing_empty and len(row) == named):
                rows.append(row)
                starts.append(start)
                continue
            rej_lines.append(start)
            rej_records.append(_join(row))
            rej_reasons.append(
                "blank line" if not row else f"expected {named} fields, found {len(row)}"
            )
    except csv.Error as exc:
        # The csv module stops at a malformed record (a NUL byte, an unclosed quote at
        # the end): the unread tail is quarantined as one record, so nothing vanishes.
        raw_lines += 1
        rej_lines.append(previous_end + 1)
        rej_records.append("")
        rej_reasons.append(f"unreadable CSV from here on ({exc})")
    columns = {
        name: pa.array([row[pos] for row in rows], pa.string())
        for name, pos in zip(COLUMNS, positions, strict=True)
    }
    columns["source_line"] = pa.array(starts, pa.int64())
    rejected = pa.table(
        {
            "source_line": pa.array(rej_lines, pa.int64()),
            "raw_record": pa.array(rej_records, pa.string()),
            "reason": pa.array(rej_reasons, pa.string()),
        },
        schema=_EMPTY_REJECTED,
    )
    return pa.table(columns), rejected, raw_lines


def _join(row: list[str]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="").writerow(row)
    return buf.getvalue()


# Typing in SQL: vectorised, and the same rules for every layout. ``files`` maps each
# source file to its date format. A reason is given for the first problem of a record.
_TYPED_SQL_TEMPLATE = """
with records as (
    select
        r.*,
        f.layout,
        f.date_hint,
        trim(r.InvoiceNo) as _invoice,
        trim(r.StockCode) as _stock,
        trim(r.Quantity) as _quantity,
        trim(r.UnitPrice) as _price,
        trim(r.CustomerID) as _customer,
        trim(r.InvoiceDate) as _date
    from records_in as r
    inner join files_in as f using (source_file)
),
typed as (
    select
        *,
        case when regexp_full_match(_quantity, '[+-]?[0-9]+')
            then try_cast(_quantity as integer) end as _quantity_typed,
        case when regexp_full_match(_price, '[+-]?([0-9]+([.][0-9]{0,4})?|[.][0-9]{1,4})')
            then try_cast(_price as decimal(18, 4)) end as _price_typed,
        {date_case} as _date_typed,
        case
            when _customer = '' then null
            when regexp_full_match(_customer, '[0-9]+([.]0*)?')
                then ltrim(split_part(_customer, '.', 1), '0')
        end as _customer_typed
    from records
),
checked as (
    select
        *,
        case
            when _invoice = '' then 'missing InvoiceNo'
            when _stock = '' then 'missing StockCode'
            when _quantity_typed is null then format('bad Quantity ''{}''', Quantity)
            when _date_typed is null
                then format('bad InvoiceDate ''{}'' (expected {})', InvoiceDate, date_hint)
            when _price_typed is null then format('bad UnitPrice ''{}''', UnitPrice)
            when _customer <> '' and (_customer_typed is null or _customer_typed = '')
                then format('bad CustomerID ''{}''', CustomerID)
        end as reason
    from typed
)
"""


_TYPED_SQL = _TYPED_SQL_TEMPLATE.replace(
    "{date_case}",
    "case layout "
    + " ".join(
        f"when '{name}' then try_strptime(_date, '{fmt}')"
        for name, (fmt, _, _) in DATE_FORMATS.items()
    )
    + " end",
)


def stage_records(con: duckdb.DuckDBPyConnection, files: list[RawFile]) -> str:
    """Type every record of ``files`` into a temp table and return its name.

    The table has the typed source columns, ``source_file``, ``source_line``,
    ``raw_record`` and ``reason``: a null reason means the row loads, any other
    value quarantines it. Runs in whatever DuckDB connection it is given (an
    in-memory one is enough) and reads nothing but the Arrow tables passed in.
    """
    records_in = pa.concat_tables(
        [
            f.records.append_column(
                "source_file", pa.repeat(pa.scalar(f.path, pa.string()), f.records.num_rows)
            )
            for f in files
        ]
    )
    rejected_in = pa.concat_tables(
        [
            f.rejected.append_column(
                "source_file", pa.repeat(pa.scalar(f.path, pa.string()), f.rejected.num_rows)
            )
            for f in files
        ]
    )
    files_in = pa.table(
        {
            "source_file": pa.array([f.path for f in files], pa.string()),
            "layout": pa.array([f.layout for f in files], pa.string()),
            "date_hint": pa.array([DATE_FORMATS[f.layout][2] for f in files], pa.string()),
        }
    )
    for name, table in (
        ("records_in", records_in),
        ("rejected_in", rejected_in),
        ("files_in", files_in),
    ):
        con.register(name, table)
    try:
        con.execute(
            f"create or replace temp table {STAGED_TABLE} as "
            + _TYPED_SQL
            + """
            select
                _invoice as InvoiceNo,
                _stock as StockCode,
                nullif(trim(Description), '') as Description,
                _quantity_typed as Quantity,
                _date_typed as InvoiceDate,
                _price_typed as UnitPrice,
                _customer_typed as CustomerID,
                nullif(trim(Country), '') as Country,
                source_file,
                source_line,
                case when reason is not null then array_to_string(list_transform(
                    [InvoiceNo, StockCode, Description, Quantity, InvoiceDate, UnitPrice,
                        CustomerID, Country],
                    lambda x: case when regexp_matches(x, '[,"\n\r]')
                        then '"' || replace(x, '"', '""') || '"' else x end
                ), ',') end as raw_record,
                reason
            from checked
            union all by name
            select source_file, source_line, raw_record, reason from rejected_in
            """
        )
    finally:
        for name in ("records_in", "rejected_in", "files_in"):
            con.unregister(name)
    return STAGED_TABLE


STAGED_TABLE = "ingest_staged_records"
