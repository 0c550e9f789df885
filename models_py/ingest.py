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

Text is decoded line by line: a line that is valid UTF-8 is read as UTF-8, any other
line as Windows-1252 (Latin-1 for the five bytes cp1252 leaves undefined), and
``RawFile.encoding`` says what was done (``utf-8``, ``cp1252``, or
``utf-8 (3 lines cp1252)`` for a mixed file). Decoding the whole file with one codec
would garble every UTF-8 character of a file holding a single Latin-1 byte
(``Â£40.00``); quarantining the odd lines instead would drop real sales over a byte
that can be decoded without doubt: cp1252 text that happens to form valid multi-byte
UTF-8 (``Ã©``) is practically never seen in real descriptions.

File names are text in the warehouse and in messages, but a POSIX file name is bytes:
:func:`display_path` turns a name that is not UTF-8 into text with the odd bytes
escaped (``caf\\xe9.csv``), so it can be stored, compared and printed.

Synthetic demo data is recognised by content: :mod:`models_py.demo_data` writes a
manifest, :data:`SYNTHETIC_MARKER`, beside its files with their SHA-256, and
:func:`synthetic_hashes` reads it. A real file dropped into the same folder is not
listed there, so it is never mistaken for demo data.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import os
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


# Leading bytes of compressed or archived files, and what to tell the user about them.
_COMPRESSED: tuple[tuple[bytes, str], ...] = (
    (b"\x1f\x8b", "gzip-compressed: not supported yet (decompress it first)"),
    (b"PK\x03\x04", "zip archive: not supported (extract the CSV files first)"),
    (b"BZh", "bzip2-compressed: not supported (decompress it first)"),
    (b"\xfd7zXZ\x00", "xz-compressed: not supported (decompress it first)"),
    (b"\x28\xb5\x2f\xfd", "zstd-compressed: not supported (decompress it first)"),
)
# File name endings of compressed files, for the files a directory scan passes over.
COMPRESSED_SUFFIXES: dict[str, str] = {
    ".gz": _COMPRESSED[0][1],
    ".zip": _COMPRESSED[1][1],
    ".bz2": _COMPRESSED[2][1],
    ".xz": _COMPRESSED[3][1],
    ".zst": _COMPRESSED[4][1],
}

# The manifest of synthetic files that ``models_py.demo_data`` writes beside them.
SYNTHETIC_MARKER = ".insiders-synthetic"


def display_path(path: Path | str) -> str:
    """The path as text that can be stored in DuckDB and printed anywhere.

    A file name with bytes that are not UTF-8 (``b"caf\\xe9.csv"``) reaches Python as a
    string with lone surrogates, which DuckDB, Arrow and a UTF-8 terminal all refuse;
    those bytes are written as ``\\xe9`` instead. A UTF-8 name is returned unchanged.
    """
    text = os.fspath(path)
    if text.isascii():
        return text
    return os.fsencode(text).decode("utf-8", "backslashreplace")


class TransactionFileError(ValueError):
    """A file that is not an Online Retail transaction file; nothing of it loads."""

    def __init__(self, path: Path | str, problem: str) -> None:
        shown = display_path(path)
        super().__init__(f"{shown}: {problem}")
        self.path = shown
        self.problem = problem


def _manifest_entries(directory: Path) -> dict[str, str]:
    """File name -> SHA-256 as listed in ``directory``'s synthetic-data manifest."""
    try:
        text = (directory / SYNTHETIC_MARKER).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return {}
    entries = {}
    for line in text.splitlines():
        fields = line.strip().split(maxsplit=1)
        if len(fields) == 2 and not fields[0].startswith("#"):
            entries[fields[1]] = fields[0].lower()
    return entries


def synthetic_hashes(directory: Path) -> frozenset[str]:
    """SHA-256 of the synthetic demo files listed in ``directory``'s manifest, if any.

    A file counts as synthetic only if its content is listed, not because of where it
    lies: a real file copied into a demo folder stays real, and a demo file renamed in
    its folder stays synthetic.
    """
    return frozenset(_manifest_entries(directory).values())


def mark_synthetic(path: Path) -> Path:
    """List ``path``'s content as synthetic in the manifest of its folder; return the
    manifest's path. Entries whose file is gone or changed are dropped."""
    manifest = path.parent / SYNTHETIC_MARKER
    entries = {
        name: sha
        for name, sha in _manifest_entries(path.parent).items()
        if name != path.name
        and (path.parent / name).is_file()
        and file_sha256((path.parent / name).read_bytes()) == sha
    }
    entries[path.name] = file_sha256(path.read_bytes())
    lines = [
        "# SYNTHETIC demo data written by `insiders demo-data`: NOT real sales.",
        "# The insiders loader marks the files whose SHA-256 is listed here as synthetic",
        "# and removes their rows when real data is loaded. Format: sha256  file name",
        *(f"{sha}  {name}" for name, sha in sorted(entries.items())),
    ]
    manifest.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return manifest


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
    synthetic: bool = False  # listed in its folder's SYNTHETIC_MARKER manifest


def file_sha256(data: bytes) -> str:
    """Content hash that makes loading idempotent per file content."""
    return hashlib.sha256(data).hexdigest()


def _decode(path: Path | str, data: bytes) -> tuple[str, str]:
    """Decode ``data`` to text; return it and what was done (see the module docstring)."""
    if not data.strip():
        raise TransactionFileError(path, "empty file")
    for magic, problem in _COMPRESSED:
        if data.startswith(magic):
            raise TransactionFileError(path, problem)
    if b"\x00" in data[:_BINARY_PROBE]:
        raise TransactionFileError(path, "binary file (NUL bytes), expected CSV text")
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    return _decode_by_line(data)


_UNDECODED = re.compile("[\udc80-\udcff]")  # bytes that surrogateescape kept aside


def _decode_by_line(data: bytes) -> tuple[str, str]:
    """UTF-8 for the lines that are valid UTF-8, cp1252 (else Latin-1) for the others.

    One UTF-8 pass with ``surrogateescape`` marks every byte that is not UTF-8; only
    the lines holding such a byte are taken back to their bytes (the round trip is
    exact) and decoded again, so a large cp1252 file costs a few passes, not a Python
    loop over every line.
    """
    if data.decode("utf-8", "ignore").isascii():
        # Not one valid UTF-8 character beyond ASCII, so every line with a non-ASCII
        # byte is a cp1252 line: decoding the whole file at once is the same, and fast.
        try:
            return data.decode("cp1252"), "cp1252"
        except UnicodeDecodeError:
            pass  # a byte cp1252 leaves undefined: Latin-1 for those lines
    text = data.decode("utf-8", "surrogateescape")
    parts: list[str] = []
    fallback: dict[str, int] = {}
    utf8_beyond_ascii = False
    done = 0  # text[:done] is in parts
    while match := _UNDECODED.search(text, done):
        start = text.rfind("\n", done, match.start()) + 1 or done
        end = text.find("\n", match.end())
        end = len(text) if end < 0 else end + 1
        good = text[done:start]
        utf8_beyond_ascii = utf8_beyond_ascii or not good.isascii()
        line = text[start:end].encode("utf-8", "surrogateescape")
        try:
            odd, codec = line.decode("cp1252"), "cp1252"
        except UnicodeDecodeError:  # cp1252 leaves five bytes undefined
            odd, codec = line.decode("latin-1"), "latin-1"
        fallback[codec] = fallback.get(codec, 0) + 1
        parts += [good, odd]
        done = end
    rest = text[done:]
    utf8_beyond_ascii = utf8_beyond_ascii or not rest.isascii()
    parts.append(rest)
    codec = "latin-1" if "latin-1" in fallback else "cp1252"
    if not utf8_beyond_ascii:
        return "".join(parts), codec  # no UTF-8 text at all: a cp1252 file, as Kaggle's
    counts = ", ".join(
        f"{n} line{'s' if n != 1 else ''} {name}" for name, n in sorted(fallback.items())
    )
    return "".join(parts), f"utf-8 ({counts})"


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
        path=display_path(path),
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
