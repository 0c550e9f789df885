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

A file of any size is read in chunks of :data:`CHUNK_BYTES` cut at line ends
(:class:`FileSplitter`), never whole: detection, decoding, line numbers and quarantine
are the same as for the file read at once, because each depends on the line (or, for
records spanning lines, on Python's csv reader streaming across chunks), the layout on
the file's first 100 records and the encoding label on counts over all lines.

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
import dataclasses
import hashlib
import io
import itertools
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

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


# A file is read in chunks of at most this many bytes, cut at line ends, so that a
# file of any size is split with bounded memory (a chunk, its text and its Arrow
# table at once). Most files are smaller and are one chunk; the loader batches them.
# 32 MB: the loader's peak is about 15x a chunk (bytes, text, Arrow records, DuckDB's
# typed copy, buffers), and smaller chunks cost no time (measured on 3x the real data).
CHUNK_BYTES = 32 * 2**20
# The exact (csv module) path hands its records on in pieces of this many records.
_EXACT_PIECE_ROWS = 100_000
# The head of a file read to check it and its header before anything is loaded.
_HEAD_BYTES = 2**20


@dataclass(frozen=True)
class Header:
    """Where the canonical columns are in a file, from its header record."""

    width: int  # fields in the header, trailing empty ones included
    positions: list[int]  # index of each of COLUMNS
    trailing_empty: int  # empty names at the end (Kaggle's trailing comma)


@dataclass(frozen=True)
class Piece:
    """A run of one file's records, before any value is typed: what
    :func:`stage_records` takes. ``records`` holds the eight source columns as text plus
    ``source_line``; ``rejected`` the records that could not even be split into the
    right number of fields (``source_line``, ``raw_record``, ``reason``)."""

    path: str
    layout: str
    records: pa.Table
    rejected: pa.Table


@dataclass(frozen=True)
class FileInfo:
    """What was learnt about one file by reading it whole: how it was read and how
    many records it held (``raw_lines``, the records after the header)."""

    path: str
    sha256: str
    layout: str
    encoding: str
    raw_lines: int
    synthetic: bool = False  # listed in its folder's SYNTHETIC_MARKER manifest


@dataclass(frozen=True)
class RawFile(FileInfo):
    """One whole file split into records in memory (:func:`split_file`), for callers
    that want the records of a small file; the loader streams :class:`Piece` s."""

    records: pa.Table = dataclasses.field(kw_only=True)
    rejected: pa.Table = dataclasses.field(kw_only=True)


def file_sha256(data: bytes) -> str:
    """Content hash that makes loading idempotent per file content."""
    return hashlib.sha256(data).hexdigest()


def hash_file(path: Path | str) -> str:
    """:func:`file_sha256` of a file's content, read in blocks (never held whole)."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


_UNDECODED = re.compile("[\udc80-\udcff]")  # bytes that surrogateescape kept aside


class _Decoder:
    """Decodes a file chunk by chunk, line by line (see the module docstring), and
    says at the end what was done, exactly as if the file had been decoded at once:
    the decision for a line depends on that line alone, the label on counts."""

    def __init__(self) -> None:
        self.fallback: dict[str, int] = {}  # codec -> lines decoded with it
        self.utf8_beyond_ascii = False  # a UTF-8 line with a character beyond ASCII

    def decode(self, data: bytes) -> tuple[str, bool]:
        """The text of ``data`` (whole lines) and whether it was all UTF-8.

        One UTF-8 pass with ``surrogateescape`` marks every byte that is not UTF-8;
        only the lines holding such a byte are taken back to their bytes (the round
        trip is exact) and decoded again: a Python loop over the odd lines only.
        """
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            pass
        else:
            self.utf8_beyond_ascii = self.utf8_beyond_ascii or not text.isascii()
            return text, True
        text = data.decode("utf-8", "surrogateescape")
        parts: list[str] = []
        done = 0  # text[:done] is in parts
        while match := _UNDECODED.search(text, done):
            start = text.rfind("\n", done, match.start()) + 1 or done
            end = text.find("\n", match.end())
            end = len(text) if end < 0 else end + 1
            good = text[done:start]
            self.utf8_beyond_ascii = self.utf8_beyond_ascii or not good.isascii()
            line = text[start:end].encode("utf-8", "surrogateescape")
            try:
                odd, codec = line.decode("cp1252"), "cp1252"
            except UnicodeDecodeError:  # cp1252 leaves five bytes undefined
                odd, codec = line.decode("latin-1"), "latin-1"
            self.fallback[codec] = self.fallback.get(codec, 0) + 1
            parts += [good, odd]
            done = end
        rest = text[done:]
        self.utf8_beyond_ascii = self.utf8_beyond_ascii or not rest.isascii()
        parts.append(rest)
        return "".join(parts), False

    @property
    def encoding(self) -> str:
        """``utf-8``, ``cp1252`` / ``latin-1`` (no UTF-8 text at all, as Kaggle's), or
        ``utf-8 (3 lines cp1252)`` for a mixed file."""
        if not self.fallback:
            return "utf-8"
        if not self.utf8_beyond_ascii:
            return "latin-1" if "latin-1" in self.fallback else "cp1252"
        counts = ", ".join(
            f"{n} line{'s' if n != 1 else ''} {name}" for name, n in sorted(self.fallback.items())
        )
        return f"utf-8 ({counts})"


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


def _open(path: Path) -> BinaryIO:
    try:
        return path.open("rb")
    except OSError as exc:
        raise TransactionFileError(path, f"cannot read file ({exc.strerror})") from exc


def _read(path: Path, handle: BinaryIO, size: int) -> bytes:
    try:
        return handle.read(size)
    except OSError as exc:
        raise TransactionFileError(path, f"cannot read file ({exc.strerror})") from exc


def read_header(path: Path | str) -> Header:
    """Check that a file is a transaction file from its head; return its header.

    Raises :class:`TransactionFileError` (one line) for an empty, compressed, binary
    or foreign file, reading only the first MiB (all of it only when that is blank).
    """
    path = Path(path)
    with _open(path) as handle:
        head = _read(path, handle, _HEAD_BYTES)
        if not head.strip():
            while block := _read(path, handle, _HEAD_BYTES):
                if block.strip():
                    break
            else:
                raise TransactionFileError(path, "empty file")
        more = len(head) == _HEAD_BYTES
    for magic, problem in _COMPRESSED:
        if head.startswith(magic):
            raise TransactionFileError(path, problem)
    if b"\x00" in head[:_BINARY_PROBE]:
        raise TransactionFileError(path, "binary file (NUL bytes), expected CSV text")
    if head.startswith(codecs.BOM_UTF8):
        head = head[len(codecs.BOM_UTF8) :]
    if more and b"\n" in head:
        head = head[: head.rfind(b"\n") + 1]  # whole lines only
    text, _ = _Decoder().decode(head)
    try:
        header = next(csv.reader(io.StringIO(text, newline="")))
    except (csv.Error, StopIteration) as exc:
        raise TransactionFileError(path, f"unreadable CSV header ({exc})") from exc
    positions, trailing_empty = _header_positions(path, header)
    return Header(len(header), positions, trailing_empty)


def _chunks(path: Path, handle: BinaryIO, size: int) -> Iterator[bytes]:
    """The file in pieces of about ``size`` bytes, each ending just after a newline
    (the last at the end of the file); the UTF-8 BOM is dropped."""
    rest = b""
    first = True
    while block := _read(path, handle, size):
        data = rest + block if rest else block
        if first and data.startswith(codecs.BOM_UTF8):
            data = data[len(codecs.BOM_UTF8) :]
        first = False
        cut = data.rfind(b"\n") + 1
        if cut == 0:  # a line longer than a chunk: read on
            rest = data
            continue
        rest = data[cut:]
        yield data[:cut] if rest else data
    if rest:
        yield rest


def _split_chunks(
    path: Path, header: Header, chunk_bytes: int, decoder: _Decoder
) -> Iterator[_Split]:
    """Split a file into (records, rejected, records read) pieces, chunk by chunk.

    Each chunk (whole lines) is decoded line by line and handed to Arrow's
    multithreaded reader when every line is one record of the header's width (the
    usual file). From the first chunk where that does not hold to the end of the
    file, Python's csv reader takes over, streaming over the decoded lines (records
    that span lines or chunks, blank and malformed lines), keeping each record's first
    line number. At most one chunk, its text and its records are held at once.
    """
    with _open(path) as handle:
        chunks = _chunks(path, handle, chunk_bytes)
        lines_before = 0  # lines of the chunks already split
        for chunk in chunks:
            text, utf8 = decoder.decode(chunk)
            first = lines_before == 0
            fast = _split_fast(chunk if utf8 else text.encode("utf-8"), header, lines_before)
            if fast is None:
                lines = _continued_lines(text, chunks, decoder)
                del text, chunk
                yield from _split_exact(lines, header, first, lines_before)
                return
            del text, chunk
            records, lines_read = fast
            lines_before += lines_read
            yield records, _EMPTY_REJECTED.empty_table(), records.num_rows


def _continued_lines(text: str, chunks: Iterator[bytes], decoder: _Decoder) -> Iterator[str]:
    """The lines of ``text`` and of the chunks after it, decoded as they come, as
    Python's text reader splits them (``\\n``, ``\\r\\n`` or a lone ``\\r``)."""
    yield from io.StringIO(text, newline="")
    del text
    for chunk in chunks:
        yield from io.StringIO(decoder.decode(chunk)[0], newline="")


class FileSplitter:
    """Splits one file into :class:`Piece` s of records with bounded memory (see
    :func:`_split_chunks`); the file is checked (:func:`read_header`) before any piece.

    ``layout`` is decided, as for a file read whole, from the dates of the file's first
    100 records: those of the first piece, or, when it holds fewer and more follow, of
    a second pass that reads only as far as the 100th record. ``encoding`` and
    ``raw_lines`` are known once the pieces are exhausted (:meth:`info`).
    """

    def __init__(self, path: Path | str, sha256: str, chunk_bytes: int | None = None) -> None:
        self.file = Path(path)
        self.path = display_path(path)
        self.sha256 = sha256
        self.chunk_bytes = chunk_bytes or CHUNK_BYTES
        self.layout = ""
        self.raw_lines = 0
        self._decoder = _Decoder()
        self._done = False

    def info(self, synthetic: bool = False) -> FileInfo:
        """What the file held, once :meth:`pieces` is exhausted."""
        if not self._done:
            raise RuntimeError(f"{self.path}: FileSplitter.info() before the pieces were read")
        return FileInfo(
            path=self.path,
            sha256=self.sha256,
            layout=self.layout,
            encoding=self._decoder.encoding,
            raw_lines=self.raw_lines,
            synthetic=synthetic,
        )

    def pieces(self) -> Iterator[Piece]:
        """The records, in order; raises :class:`TransactionFileError` for a file that
        is no transaction file (before any piece) or that cannot be read."""
        header = read_header(self.file)
        split = _split_chunks(self.file, header, self.chunk_bytes, self._decoder)
        first = next(split, None)
        if first is None:  # nothing after the header... or not even a line: read_header
            first = (_empty_records(), _EMPTY_REJECTED.empty_table(), 0)
        dates = first[0].column("InvoiceDate").slice(0, _SNIFF_ROWS).to_pylist()
        second = next(split, None) if len(dates) < _SNIFF_ROWS else None
        if second is not None:
            dates = self._first_dates(header)
        self.layout = _detect_layout(dates, header.trailing_empty)
        for records, rejected, raw_lines in itertools.chain(
            [first], [second] if second is not None else [], split
        ):
            self.raw_lines += raw_lines
            yield Piece(self.path, self.layout, records, rejected)
        self._done = True

    def _first_dates(self, header: Header) -> list[str]:
        """InvoiceDate of the file's first 100 records, read anew from the start."""
        dates: list[str] = []
        for records, _, _ in _split_chunks(self.file, header, self.chunk_bytes, _Decoder()):
            dates += records.column("InvoiceDate").slice(0, _SNIFF_ROWS - len(dates)).to_pylist()
            if len(dates) >= _SNIFF_ROWS:
                break
        return dates


def split_file(path: Path | str, sha256: str | None = None) -> RawFile:
    """Split one whole file into records held in memory; raise TransactionFileError if
    it is not one of ours. For a look at a small file: the loader streams instead."""
    splitter = FileSplitter(path, sha256 or hash_file(path))
    pieces = list(splitter.pieces())
    info = splitter.info()
    return RawFile(
        **{f.name: getattr(info, f.name) for f in dataclasses.fields(FileInfo)},
        records=pa.concat_tables([p.records for p in pieces]) if pieces else _empty_records(),
        rejected=pa.concat_tables([p.rejected for p in pieces])
        if pieces
        else _EMPTY_REJECTED.empty_table(),
    )


_Split = tuple[pa.Table, pa.Table, int]
_EMPTY_REJECTED = pa.schema(
    [("source_line", pa.int64()), ("raw_record", pa.string()), ("reason", pa.string())]
)
_RECORDS = pa.schema([*((c, pa.string()) for c in COLUMNS), ("source_line", pa.int64())])


def _empty_records() -> pa.Table:
    return _RECORDS.empty_table()


def _split_fast(data: bytes, header: Header, lines_before: int) -> tuple[pa.Table, int] | None:
    """Arrow's multithreaded reader, for the usual chunk: one record per physical line.
    Returns the records and the chunk's line count, or None (use the exact path) when
    any record is malformed, spans lines or a line is blank, because then Arrow's row
    index is no longer the line number. A lone ``\\r`` (a line end to Python's reader,
    which would number the lines after it differently) and a NUL byte (see
    :func:`_split_exact`) also take the exact path.
    ``lines_before`` = 0 means the chunk starts with the header.
    """
    if data.count(b"\r") != data.count(b"\r\n") or b"\x00" in data:
        return None
    with_header = lines_before == 0
    lines = data.count(b"\n") + (0 if data.endswith(b"\n") else 1)
    try:
        table = pacsv.read_csv(
            io.BytesIO(data),
            read_options=pacsv.ReadOptions(
                skip_rows=1 if with_header else 0,
                column_names=[f"c{i}" for i in range(header.width)],
            ),
            convert_options=pacsv.ConvertOptions(
                column_types={f"c{i}": pa.string() for i in range(header.width)},
                strings_can_be_null=False,
            ),
        )
    except pa.ArrowInvalid:
        return None
    if table.num_rows + with_header != lines:
        return None
    first_line = lines_before + 1 + with_header
    columns = {name: table.column(pos) for name, pos in zip(COLUMNS, header.positions, strict=True)}
    columns["source_line"] = pa.array(range(first_line, first_line + table.num_rows), pa.int64())
    return pa.table(columns), lines


def _split_exact(
    lines: Iterator[str], header: Header, with_header: bool, lines_before: int
) -> Iterator[_Split]:
    """Python's csv reader over ``lines``, record by record, keeping each record's first
    line number (``lines_before`` + its line in ``lines``); pieces of at most
    :data:`_EXACT_PIECE_ROWS` records.

    A record holding a NUL byte (past the head :func:`read_header` probes) is
    quarantined, its NUL written ``\\x00`` in ``raw_record``: no text value holds a
    NUL, which PostgreSQL's text type cannot store, so both targets load the same rows.
    """
    reader = csv.reader(lines)
    if with_header:
        next(reader, None)
    width = header.width
    named = width - header.trailing_empty
    rows: list[list[str]] = []
    starts: list[int] = []
    rejected: list[tuple[int, str, str]] = []
    previous_end = reader.line_num
    try:
        for row in reader:
            start = lines_before + previous_end + 1
            previous_end = reader.line_num
            if len(row) == width or (header.trailing_empty and len(row) == named):
                if "\x00" in "".join(row):
                    rejected.append((start, _join(row), "NUL byte in the record"))
                else:
                    rows.append(row)
                    starts.append(start)
            else:
                reason = "blank line" if not row else f"expected {named} fields, found {len(row)}"
                rejected.append((start, _join(row), reason))
            if len(rows) + len(rejected) >= _EXACT_PIECE_ROWS:
                yield _exact_tables(rows, starts, rejected, header)
                rows, starts, rejected = [], [], []
    except csv.Error as exc:
        # The csv module stops at a malformed record (a NUL byte, an unclosed quote at
        # the end): the unread tail is quarantined as one record, so nothing vanishes.
        problem = f"unreadable CSV from here on ({exc})"
        rejected.append((lines_before + previous_end + 1, "", problem))
        for _ in lines:  # decode the tail all the same: the encoding counts every line
            pass
    yield _exact_tables(rows, starts, rejected, header)


def _exact_tables(
    rows: list[list[str]], starts: list[int], rejected: list[tuple[int, str, str]], header: Header
) -> _Split:
    columns = {
        name: pa.array([row[pos] for row in rows], pa.string())
        for name, pos in zip(COLUMNS, header.positions, strict=True)
    }
    columns["source_line"] = pa.array(starts, pa.int64())
    rejected_table = pa.table(
        {
            "source_line": pa.array([r[0] for r in rejected], pa.int64()),
            "raw_record": pa.array([r[1] for r in rejected], pa.string()),
            "reason": pa.array([r[2] for r in rejected], pa.string()),
        },
        schema=_EMPTY_REJECTED,
    )
    return pa.table(columns), rejected_table, len(rows) + len(rejected)


def _join(row: list[str]) -> str:
    """A rejected record as CSV text, any NUL byte written ``\\x00``."""
    buf = io.StringIO()
    csv.writer(buf, lineterminator="").writerow(row)
    return buf.getvalue().replace("\x00", "\\x00")


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


class Staged(Protocol):
    """Records of one file to type: a :class:`Piece` or a :class:`RawFile`."""

    path: str
    layout: str
    records: pa.Table
    rejected: pa.Table


def stage_records(con: duckdb.DuckDBPyConnection, files: Sequence[Staged]) -> str:
    """Type every record of ``files`` into a temp table and return its name.

    The table has the typed source columns, ``source_file``, ``source_line``,
    ``raw_record`` and ``reason``: a null reason means the row loads, any other
    value quarantines it. Runs in whatever DuckDB connection it is given (an
    in-memory one is enough) and reads nothing but the Arrow tables passed in; the
    loader calls it once per batch of pieces, so its size is the batch's.
    """
    files = list(files) or [Piece("", "daily", _empty_records(), _EMPTY_REJECTED.empty_table())]
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
    layouts = {f.path: f.layout for f in files}
    files_in = pa.table(
        {
            "source_file": pa.array(list(layouts), pa.string()),
            "layout": pa.array(list(layouts.values()), pa.string()),
            "date_hint": pa.array([DATE_FORMATS[v][2] for v in layouts.values()], pa.string()),
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
