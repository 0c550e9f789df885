"""Read order-line files (CSV, gzip-compressed CSV) into typed rows and quarantined rows.

Each file is read with a mapping (:mod:`models_py.mapping`): the one given, or the
preset its header fits. Three layouts of the Online Retail invoice lines exist in the
wild and share one header; which one a file is, is detected from its own bytes, never
from its name:

* ``kaggle``: Kaggle's ``Ecommerce.csv``: a trailing empty column, dates like
  ``29-Nov-16``, Windows-1252 text.
* ``uci``: the UCI export: dates like ``12/1/2010 8:26`` (month first), UTF-8.
* ``daily``: the daily files: ISO timestamps, ``CustomerID`` like ``17850.0``.

Other stores' exports (Shopify, WooCommerce, any layout a mapping file describes) are
split the same way into the same records (:data:`RECORD_COLUMNS`), then typed by one
query (:func:`stage_records`) whose settings per file are data: date formats, the
file's own column names for the reasons, how returns and refunds appear, which ids to
pseudonymise (:func:`customer_key`). Parquet files and warehouse tables meet this path
at the :class:`Piece` (:mod:`models_py.columnar`).

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
import gzip
import hashlib
import hmac
import io
import itertools
import os
import re
import threading
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from models_py.mapping import (
    FIELDS,
    Mapping,
    detect,
    missing_columns,
    online_retail,
    redact,
)

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

# What a record holds before typing: the canonical columns, then the fields a mapping
# may add (a line total instead of a unit price, the currency, the statuses that make a
# line a return or no sale, a refund). A field a file's mapping does not place is null.
EXTRA_COLUMNS: tuple[str, ...] = (
    "LineTotal",
    "Currency",
    "ReturnStatus",
    "RefundAmount",
    "RefundQuantity",
    "ExcludeStatus",
)
RECORD_COLUMNS: tuple[str, ...] = COLUMNS + EXTRA_COLUMNS

# Online Retail layout name -> (a regex its InvoiceDate values match, what a reader
# should be told the format looks like). Its strptime format is its preset's
# (models_py/presets/<name>.yml).
DATE_FORMATS: dict[str, tuple[re.Pattern[str], str]] = {
    "daily": (re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}"), "YYYY-MM-DD HH:MM:SS"),
    "uci": (re.compile(r"\d{1,2}/\d{1,2}/\d{4} \d{1,2}:\d{2}"), "M/D/YYYY H:MM"),
    "kaggle": (re.compile(r"\d{1,2}-[A-Za-z]{3}-\d{2}"), "DD-Mon-YY"),
}


def _online_retail_preset(mapping: Mapping) -> bool:
    """Whether ``mapping`` is one of the Online Retail presets (or their family, whose
    layout a file's dates choose), not a store's mapping of the same name."""
    return bool(mapping.layouts) or (
        mapping.name in DATE_FORMATS and mapping.source.startswith("preset ")
    )


_SNIFF_ROWS = 100
# The csv module refuses a field over 128 KiB by default, and _split_exact would then
# quarantine the rest of the file as one record: a 2 MB description lost 50 good lines.
csv.field_size_limit(2**31 - 1)
_BINARY_PROBE = 65536


# Leading bytes of compressed or archived files, and what to tell the user about them.
_COMPRESSED: tuple[tuple[bytes, str], ...] = (
    (b"PK\x03\x04", "zip archive: not supported (extract the CSV files first)"),
    (b"BZh", "bzip2-compressed: not supported (decompress it first)"),
    (b"\xfd7zXZ\x00", "xz-compressed: not supported (decompress it first)"),
    (b"\x28\xb5\x2f\xfd", "zstd-compressed: not supported (decompress it first)"),
)
# File name endings of compressed files, for the files a directory scan passes over.
COMPRESSED_SUFFIXES: dict[str, str] = {
    ".zip": _COMPRESSED[0][1],
    ".bz2": _COMPRESSED[1][1],
    ".xz": _COMPRESSED[2][1],
    ".zst": _COMPRESSED[3][1],
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


GZIP_MAGIC = b"\x1f\x8b"
# Said after a header that fits no preset.
NO_PRESET = " (and no preset fits the header: give a mapping with --mapping)"


class TransactionFileError(ValueError):
    """A file that is not a transaction file its mapping can read; nothing of it loads."""

    def __init__(self, path: Path | str, problem: str) -> None:
        shown = display_path(path)
        problem = redact(problem)  # a header may be a record, with a customer's e-mail
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
    """Where a record's columns are in a file, from its header record and mapping."""

    width: int  # fields in the header, trailing empty ones included
    # Each of RECORD_COLUMNS the mapping places -> its positions (several: the first
    # that is not blank on a record); the others are null.
    sources: dict[str, tuple[int, ...]]
    trailing_empty: int  # empty names at the end (Kaggle's trailing comma)
    mapping: Mapping  # given, or picked from the header (its layout may be left open)
    fill: tuple[str, ...] = ()  # RECORD_COLUMNS given on an order's first line only
    labels: dict[str, str] = dataclasses.field(default_factory=dict)  # column -> header name


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
    mapping: Mapping | None = None  # None: the Online Retail layout ``layout`` names
    labels: dict[str, str] | None = None  # record column -> the file's column name


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
    # The mapping the file was read with, when it is not the Online Retail header picked
    # by its dates: a file loaded again with another mapping is read again.
    mapping_fingerprint: str = ""


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
    """:func:`file_sha256` of a file's content, read in blocks (never held whole).

    A gzip-compressed file is hashed decompressed: ``day.csv.gz`` and ``day.csv`` are
    the same content, so loading both is caught as a copy (it would double the
    revenue). Raises OSError for a file that cannot be read, a corrupt gzip included.
    """
    with open(path, "rb") as handle:
        if handle.read(2) != GZIP_MAGIC:
            handle.seek(0)
            return hashlib.file_digest(handle, "sha256").hexdigest()
        handle.seek(0)
        digest = hashlib.sha256()
        try:
            with gzip.GzipFile(fileobj=handle, mode="rb") as unpacked:
                while block := unpacked.read(2**20):
                    digest.update(block)
        except (EOFError, zlib.error) as exc:
            raise gzip.BadGzipFile(f"corrupt gzip file ({exc})") from exc
        return digest.hexdigest()


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


def _legacy_problem(names: list[str]) -> str:
    """What keeps a header from being the Online Retail one (its columns exactly)."""
    lookup = {n.lower() for n in names}
    missing = [c for c in COLUMNS if c.lower() not in lookup]
    unexpected = [n for n in names if n.lower() not in {c.lower() for c in COLUMNS}]
    parts = []
    if missing:
        parts.append("missing columns " + ", ".join(missing))
    if unexpected:
        parts.append("unexpected columns " + ", ".join(repr(u) for u in unexpected))
    return "not an Online Retail transaction file: " + "; ".join(parts)


def resolve_header(path: Path | str, header: list[str], mapping: Mapping | None) -> Header:
    """Place a record's columns from a header: with ``mapping``, or with the one preset
    whose columns the header holds (:func:`models_py.mapping.detect`).

    Raises :class:`TransactionFileError`: a header no preset matches (or two do), a
    mapped column the header lacks, a mapped column named twice in the header.
    """
    names = [h.strip() for h in header]
    trailing_empty = 0
    while names and names[-1] == "":
        names.pop()
        trailing_empty += 1
    if mapping is None:
        found = detect(names)
        if not found:
            raise TransactionFileError(
                path,
                _legacy_problem(names) + NO_PRESET,
            )
        if len(found) > 1:
            raise TransactionFileError(
                path,
                "the header fits more than one preset ("
                + ", ".join(m.name for m in found)
                + "): name one with --mapping",
            )
        mapping = found[0]
    if mapping.header == "exact":
        lowered = {n.lower() for n in names}
        if lowered != {c.lower() for c in mapping.source_columns()}:
            raise TransactionFileError(path, _legacy_problem(names))
    lookup: dict[str, int] = {}
    doubled: set[str] = set()
    for i, name in enumerate(names):
        key = name.lower()
        if key in lookup:
            doubled.add(name)
        lookup.setdefault(key, i)
    missing = missing_columns(mapping, names)
    if missing:
        column, what = missing[0]
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise TransactionFileError(
            path,
            f"no column {column!r} ({what}, mapping {mapping.source}) in the header{more}",
        )
    used = {c.lower() for c in mapping.source_columns()}
    doubled = {d for d in doubled if d.lower() in used}
    if doubled:
        listed = ", ".join(repr(d) for d in sorted(doubled))
        raise TransactionFileError(path, f"the mapped column {listed} is twice in the header")
    if mapping.header == "exact" and len(lookup) != len(names):
        raise TransactionFileError(path, "duplicate column names in header")
    where: dict[str, tuple[str, ...]] = {
        FIELDS[name]: columns for name, columns in mapping.columns.items()
    }
    extras = {
        "Currency": mapping.currency_column,
        "ReturnStatus": mapping.return_status.column if mapping.return_status else None,
        "RefundAmount": mapping.refund_amount,
        "RefundQuantity": mapping.refund_quantity,
        "ExcludeStatus": mapping.exclude.column if mapping.exclude else None,
    }
    where.update({k: (v,) for k, v in extras.items() if v})
    sources = {k: tuple(lookup[c.lower()] for c in v) for k, v in where.items()}
    order_level = {c.lower() for c in mapping.order_level}
    fill = tuple(k for k, v in where.items() if any(c.lower() in order_level for c in v))
    labels = {k: names[positions[0]] for k, positions in sources.items()}
    return Header(len(header), sources, trailing_empty, mapping, fill, labels)


def _detect_layout(dates: Iterable[str], trailing_empty: int) -> str:
    """Pick the date layout that most of the first rows follow."""
    votes = dict.fromkeys(DATE_FORMATS, 0)
    for value in dates:
        for name, (pattern, _) in DATE_FORMATS.items():
            if pattern.fullmatch(value.strip()):
                votes[name] += 1
    best = max(votes, key=lambda k: votes[k])
    if votes[best] == 0:
        if trailing_empty:
            return "kaggle"
        return "daily"  # no dated row at all: nothing will parse either way
    return best


def _open(path: Path) -> BinaryIO:
    """The file's bytes, gunzipped when it is gzip-compressed (by content, not name)."""
    try:
        handle = path.open("rb")
        magic = handle.read(2)
        handle.seek(0)
    except OSError as exc:
        raise TransactionFileError(path, f"cannot read file ({exc.strerror})") from exc
    if magic == GZIP_MAGIC:
        return gzip.GzipFile(fileobj=handle, mode="rb")  # type: ignore[return-value]
    return handle


def _read(path: Path, handle: BinaryIO, size: int) -> bytes:
    try:
        return handle.read(size)
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise TransactionFileError(path, f"corrupt gzip file ({exc})") from exc
    except OSError as exc:
        raise TransactionFileError(path, f"cannot read file ({exc.strerror})") from exc


def read_header(path: Path | str, mapping: Mapping | None = None) -> Header:
    """Check that a file is a transaction file from its head; return its header.

    Raises :class:`TransactionFileError` (one line) for an empty, compressed (but for
    gzip, which is read through), binary or foreign file, or a header the mapping (or
    any preset, with none) cannot read, reading only the first MiB (all of it only
    when that is blank).
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
    return resolve_header(path, header, mapping)


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


def settle_mapping(header: Header, dates: list[str | None]) -> Mapping:
    """The mapping a file is read with: the header's, its layout chosen from the
    first records' dates when it leaves that open (the Online Retail family)."""
    mapping = header.mapping
    if mapping.layouts:
        clean = [d for d in dates if d is not None]
        return mapping.with_layout(_detect_layout(clean, header.trailing_empty))
    return mapping


def mapping_fingerprint(mapping: Mapping) -> str:
    """What identifies how a file was read, for the ledger: empty for the Online Retail
    presets (the layout says it), else a hash of every setting of the mapping."""
    if _online_retail_preset(mapping):
        return ""
    settings = {k: v for k, v in dataclasses.asdict(mapping).items() if k != "source"}
    return hashlib.sha256(repr(sorted(settings.items())).encode()).hexdigest()[:16]


# What a whole number, a decimal number and a plain customer id look like: one pattern
# each, for the typing SQL (RE2) and the Python checks alike (values trimmed first).
WHOLE = "[+-]?[0-9]+"
NUMBER = "[+-]?([0-9]+([.][0-9]*)?|[.][0-9]+)"
PLAIN_ID = "[0-9]+([.]0*)?"
_INTEGER = re.compile(WHOLE)
_DECIMAL = re.compile(NUMBER)
_ZERO = re.compile(r"\s*[+-]?0*([.]0*)?\s*")
# A date's text as both the typing SQL and the sample check read it: trimmed, and, where
# the format has a UTC offset, ISO 8601's Z written +00:00 (DuckDB's %z reads no Z).
# In the typing SQL the offsets flag is the file's column, in the check a parameter.
DATE_TEXT = (
    "case when @OFFSETS@ then regexp_replace(coalesce(trim(@DATE@), ''), '[Zz]$', '+00:00') "
    "else coalesce(trim(@DATE@), '') end"
)


def check_sample(path: str, mapping: Mapping, labels: dict[str, str], records: pa.Table) -> None:
    """Fail a file whose first records show the mapping is wrong for it, before any row
    loads: none of the order dates reads in the stated format, or no quantity or price
    is a number. One bad value later is quarantined; all of them wrong is a mapping
    (or a file) to fix, and loading it would quarantine every line."""
    sample = records.slice(0, _SNIFF_ROWS)
    checks: list[tuple[str, str, Callable[[list[str]], bool]]] = [
        ("Quantity", "a whole number", lambda vs: any(_INTEGER.fullmatch(v) for v in vs)),
        ("UnitPrice", "a number", lambda vs: any(_DECIMAL.fullmatch(v) for v in vs)),
        ("LineTotal", "a number", lambda vs: any(_DECIMAL.fullmatch(v) for v in vs)),
    ]
    formats = " or ".join(repr(f) for f in mapping.date_formats)
    checks.insert(0, ("InvoiceDate", f"a date in the format {formats}", _dates_read(mapping)))
    for column, what, reads in checks:
        if column not in labels:
            continue
        values = [v.strip(" ") for v in sample.column(column).to_pylist() if v is not None]
        values = [v for v in values if v]
        if values and not reads(values):
            raise TransactionFileError(
                path,
                f"column {labels[column]!r}: no value of the first records is {what} "
                f"(e.g. {redact(values[0])!r}; mapping {mapping.source})",
            )


_CHECKER = threading.local()


def _checker() -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB per thread for :func:`check_sample` (opening one per file
    cost 10 ms: 3 s over the 305 daily files)."""
    con = getattr(_CHECKER, "con", None)
    if con is None:
        from models_py.locations import DUCKDB_CONFIG

        con = _CHECKER.con = duckdb.connect(config=DUCKDB_CONFIG)
    return con


def _dates_read(mapping: Mapping) -> Callable[[list[str]], bool]:
    def reads(values: list[str]) -> bool:
        query = (
            f"select count(*) from unnest(?) as t(v) where try_strptime({DATE_TEXT}, ?) is not null"
        )
        params = [values, mapping.offsets, list(mapping.date_formats)]
        query = query.replace("@DATE@", "v").replace("@OFFSETS@", "?")
        found = _checker().execute(query, params).fetchall()
        return bool(found[0][0])

    return reads


class OrderLevel:
    """Fills an order's first-line fields down its other lines, and keeps one refund
    per order, across the pieces of one file (an order may span two chunks).

    A field is filled when blank on a line of the same order as the line before it
    (Shopify gives Email, Financial Status, Currency... on an order's first line only).
    An order-level refund amount counts once per order: the first line with a non-zero
    amount keeps it, the order's later ones are blanked."""

    def __init__(self, header: Header) -> None:
        self.fill = header.fill
        mapping = header.mapping
        self.refund_once = bool(mapping.refund_amount) and mapping.refund_per == "order"
        self.last_order: str | None = None
        self.last: dict[str, str | None] = {}
        self.refunded: str | None = None

    @property
    def needed(self) -> bool:
        return bool(self.fill) or self.refund_once

    def apply(self, records: pa.Table) -> pa.Table:
        if not self.needed or records.num_rows == 0:
            return records
        orders = [(o or "").strip() for o in records.column("InvoiceNo").to_pylist()]
        for name in self.fill:
            previous_order, carry = self.last_order, self.last.get(name)
            out: list[str | None] = []
            for order, value in zip(orders, records.column(name).to_pylist(), strict=True):
                if (value is None or not value.strip()) and order and order == previous_order:
                    value = carry
                out.append(value)
                previous_order, carry = order, value
            self.last[name] = out[-1]
            index = records.schema.get_field_index(name)
            records = records.set_column(index, name, pa.array(out, pa.string()))
        if self.refund_once:
            out = []
            for order, value in zip(
                orders, records.column("RefundAmount").to_pylist(), strict=True
            ):
                if value is not None and not _ZERO.fullmatch(value):
                    if order == self.refunded:
                        value = ""
                    else:
                        self.refunded = order
                out.append(value)
            index = records.schema.get_field_index("RefundAmount")
            records = records.set_column(index, "RefundAmount", pa.array(out, pa.string()))
        self.last_order = orders[-1]
        return records


def redacts(mapping: Mapping) -> bool:
    """Whether e-mail addresses are kept out of the quarantine's raw records and
    reasons for records read with ``mapping``: always (an e-mail where an integer id
    or a quantity belongs is still personal data), but with ``pseudonymise: never``,
    where the store chose to keep its ids as they are."""
    return mapping.pseudonymise != "never"


class Splitter:
    """What a splitter knows of its source once its pieces are read (:meth:`info`):
    :class:`FileSplitter` and ``models_py.columnar.ColumnarSplitter`` share it."""

    path: str
    sha256: str
    layout: str
    raw_lines: int
    mapping: Mapping | None
    # mapping_fingerprint of the mapping as given or picked from the header (not of
    # the ISO dates a typed timestamp column swaps in): what the loader's probe says.
    fingerprint: str = ""
    _done: bool = False

    @property
    def encoding(self) -> str:
        raise NotImplementedError

    def info(self, synthetic: bool = False) -> FileInfo:
        """What the source held, once the pieces are exhausted."""
        if not self._done or self.mapping is None:
            raise RuntimeError(f"{self.path}: info() before the pieces were read")
        return FileInfo(
            path=self.path,
            sha256=self.sha256,
            layout=self.layout,
            encoding=self.encoding,
            raw_lines=self.raw_lines,
            synthetic=synthetic,
            mapping_fingerprint=self.fingerprint,
        )


class FileSplitter(Splitter):
    """Splits one CSV file (or gzip-compressed CSV) into :class:`Piece` s of records
    with bounded memory (see :func:`_split_chunks`); the file is checked
    (:func:`read_header`, with ``mapping`` or a preset its header fits) before any piece.

    For the Online Retail family the layout is decided, as for a file read whole, from
    the dates of the file's first 100 records: those of the first piece, or, when it
    holds fewer and more follow, of a second pass that reads only as far as the 100th
    record. A mapping's file is checked on its first records (:func:`check_sample`).
    ``encoding`` and ``raw_lines`` are known once the pieces are exhausted (:meth:`info`).
    """

    def __init__(
        self,
        path: Path | str,
        sha256: str,
        chunk_bytes: int | None = None,
        mapping: Mapping | None = None,
    ) -> None:
        self.file = Path(path)
        self.path = display_path(path)
        self.sha256 = sha256
        self.chunk_bytes = chunk_bytes or CHUNK_BYTES
        self.given = mapping
        self.mapping: Mapping | None = None
        self.layout = ""
        self.raw_lines = 0
        self._decoder = _Decoder()
        self._done = False

    @property
    def encoding(self) -> str:
        return self._decoder.encoding

    def pieces(self) -> Iterator[Piece]:
        """The records, in order; raises :class:`TransactionFileError` for a file that
        is no transaction file (before any piece) or that cannot be read."""
        header = read_header(self.file, self.given)
        self.fingerprint = mapping_fingerprint(header.mapping)
        split = _split_chunks(self.file, header, self.chunk_bytes, self._decoder)
        first = next(split, None)
        if first is None:  # nothing after the header... or not even a line: read_header
            first = (_empty_records(), _EMPTY_REJECTED.empty_table(), 0)
        dates = first[0].column("InvoiceDate").slice(0, _SNIFF_ROWS).to_pylist()
        second = None
        if header.mapping.layouts and len(dates) < _SNIFF_ROWS:
            second = next(split, None)
            if second is not None:
                dates = self._first_dates(header)
        self.mapping = settle_mapping(header, dates)
        self.layout = self.mapping.name
        if not header.mapping.layouts:
            check_sample(self.path, self.mapping, header.labels, first[0])
        orders = OrderLevel(header)
        for records, rejected, raw_lines in itertools.chain(
            [first], [second] if second is not None else [], split
        ):
            self.raw_lines += raw_lines
            yield Piece(
                self.path,
                self.layout,
                orders.apply(records),
                rejected,
                self.mapping,
                header.labels,
            )
        self._done = True

    def _first_dates(self, header: Header) -> list[str]:
        """InvoiceDate of the file's first 100 records, read anew from the start."""
        dates: list[str] = []
        for records, _, _ in _split_chunks(self.file, header, self.chunk_bytes, _Decoder()):
            dates += records.column("InvoiceDate").slice(0, _SNIFF_ROWS - len(dates)).to_pylist()
            if len(dates) >= _SNIFF_ROWS:
                break
        return dates


def split_file(
    path: Path | str, sha256: str | None = None, mapping: Mapping | None = None
) -> RawFile:
    """Split one whole file into records held in memory; raise TransactionFileError if
    it is not one of ours. For a look at a small file: the loader streams instead."""
    splitter = FileSplitter(path, sha256 or hash_file(path), mapping=mapping)
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
_RECORDS = pa.schema([*((c, pa.string()) for c in RECORD_COLUMNS), ("source_line", pa.int64())])


def _record_columns(header: Header, column: Callable[[int], Any], rows: int) -> dict[str, Any]:
    """RECORD_COLUMNS of a run of records, ``column(i)`` giving the file's i-th column:
    a field placed on several columns takes the first that is not blank; one the
    mapping does not place is null."""
    out: dict[str, Any] = {}
    for name in RECORD_COLUMNS:
        positions = header.sources.get(name)
        if not positions:
            out[name] = pa.nulls(rows, pa.string())
            continue
        value = column(positions[0])
        for pos in positions[1:]:
            blank = pc.fill_null(pc.equal(pc.utf8_trim_whitespace(value), ""), True)
            value = pc.if_else(blank, column(pos), value)
        out[name] = value
    return out


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
    columns = _record_columns(header, lambda pos: table.column(pos), table.num_rows)
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
    hide = redacts(header.mapping)
    shown = (lambda row: redact(_join(row))) if hide else _join
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
                    rejected.append((start, shown(row), "NUL byte in the record"))
                else:
                    rows.append(row)
                    starts.append(start)
            else:
                reason = "blank line" if not row else f"expected {named} fields, found {len(row)}"
                rejected.append((start, shown(row), reason))
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
    columns = _record_columns(
        header, lambda pos: pa.array([row[pos] for row in rows], pa.string()), len(rows)
    )
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


# Typing in SQL: vectorised, and the same rules for every layout and mapping. Each file's
# settings (date formats, labels for messages, how returns appear) come in ``files_in``,
# as data; a date format is a bound parameter (DuckDB wants it constant: one per group
# of files sharing formats). A reason is given for the first problem of a record.
_TYPED_SQL = """
with records as (
    select
        r.*,
        f.* exclude (source_file),
        coalesce(trim(r.InvoiceNo), '') as _invoice,
        coalesce(trim(r.StockCode), '') as _stock,
        coalesce(trim(r.Quantity), '') as _quantity,
        coalesce(trim(r.UnitPrice), '') as _price,
        coalesce(trim(r.LineTotal), '') as _total,
        coalesce(trim(r.CustomerID), '') as _customer,
        @DATE_TEXT@ as _date,
        coalesce(trim(r.RefundAmount), '') as _refund,
        coalesce(trim(r.RefundQuantity), '') as _refund_quantity,
        lower(coalesce(trim(r.ExcludeStatus), '')) as _exclude,
        lower(coalesce(trim(r.ReturnStatus), '')) as _return_status,
        upper(coalesce(trim(r.Currency), '')) as _currency
    from records_in as r
    inner join files_in as f using (source_file)
),
typed as (
    select
        records.*,
        case when regexp_full_match(_quantity, '@WHOLE@')
            then try_cast(_quantity as integer) end as _quantity_read,
        -- any decimals, rounded to 4 places (a Parquet double's 0.30000000000000004)
        case when regexp_full_match(_price, '@NUMBER@')
            then try_cast(_price as decimal(18, 4)) end as _price_read,
        case when regexp_full_match(_total, '@NUMBER@')
            then try_cast(_total as decimal(18, 4)) end as _total_read,
        @DATE_CASE@ as _date_typed,
        case
            when _customer = '' then null
            when regexp_full_match(_customer, '@PLAIN_ID@') and pseudonymise <> 'always'
                then ltrim(split_part(_customer, '.', 1), '0')
            when customer_kind = 'integer' then null
            when pseudonymise = 'never' then _customer
            else keys.customer_key
        end as _customer_typed,
        keys.customer_key as _customer_key,
        case
            when _refund = '' then 0
            when regexp_full_match(_refund, '@NUMBER@') then try_cast(_refund as decimal(18, 4))
        end as _refund_read,
        case when regexp_full_match(_refund_quantity, '@WHOLE@')
            then try_cast(_refund_quantity as integer) end as _refund_quantity_read,
        coalesce(starts_with(_invoice, cancelled_prefix), false)
            or coalesce(list_contains(return_values, _return_status), false) as _is_return
    from records
    left join customer_keys_in as keys on records._customer = keys.customer_value
),
checked as (
    select
        *,
        case
            when coalesce(list_contains(exclude_values, _exclude), false)
                then format('{} ''{}'': not a sale', l_exclude, coalesce(trim(ExcludeStatus), ''))
            when _invoice = '' then 'missing ' || l_invoice
            when _stock = '' then 'missing ' || l_stock
            when _quantity_read is null
                then format('bad {} ''{}''', l_quantity, coalesce(Quantity, ''))
            when _date_typed is null
                then format(
                    'bad {} ''{}'' (expected {})', l_date, coalesce(InvoiceDate, ''), date_hint
                )
            when not price_from_total and _price_read is null
                then format('bad {} ''{}''', l_price, coalesce(UnitPrice, ''))
            when price_from_total and _total_read is null
                then format('bad {} ''{}''', l_price, coalesce(LineTotal, ''))
            when price_from_total and _quantity_read = 0
                then format(
                    '{} is 0: no unit price from {} ''{}''',
                    l_quantity, l_price, coalesce(LineTotal, '')
                )
            when _customer <> '' and (_customer_typed is null or _customer_typed = '')
                then format('bad {} ''{}''', l_customer, coalesce(CustomerID, ''))
            when currency_expected is not null and _currency = '' then 'missing ' || l_currency
            when currency_expected is not null and _currency <> currency_expected
                then format(
                    '{} ''{}'', not {}', l_currency, coalesce(trim(Currency), ''), currency_expected
                )
            when _refund_read is null
                then format('bad {} ''{}''', l_refund, coalesce(RefundAmount, ''))
            when _refund_quantity <> '' and _refund_quantity_read is null
                then format('bad {} ''{}''', l_refund_quantity, coalesce(RefundQuantity, ''))
        end as reason,
        case
            -- a return's total may be given positive or negative: the unit price is not
            when price_from_total and _quantity_read < 0
                then cast(round(abs(cast(_total_read as double)) / -_quantity_read, 4)
                    as decimal(18, 4))
            when price_from_total and _quantity_read > 0
                then cast(round(cast(_total_read as double) / _quantity_read, 4) as decimal(18, 4))
            when not price_from_total then _price_read
        end as _price_typed,
        greatest(abs(coalesce(_refund_quantity_read, 1)), 1) as _refund_items
    from typed
)
"""
_STAGED_SELECT = """
select
    _invoice as InvoiceNo,
    _stock as StockCode,
    nullif(trim(Description), '') as Description,
    case when _is_return then -abs(_quantity_read) else _quantity_read end as Quantity,
    _date_typed as InvoiceDate,
    _price_typed as UnitPrice,
    _customer_typed as CustomerID,
    nullif(trim(Country), '') as Country,
    source_file,
    source_line,
    'record' as line_kind,
    case when reason is not null then array_to_string(list_transform(
        list_concat(
            [InvoiceNo, StockCode, Description, Quantity, InvoiceDate,
                coalesce(UnitPrice, LineTotal), CustomerID, Country],
            -- a refund of the record goes with it into the quarantine, not nowhere
            case when coalesce(_refund, '') = '' then []::varchar[]
                else [RefundAmount] end
        ),
        lambda x: case when regexp_matches(coalesce(x, ''), '[,"\n\r]')
            then '"' || replace(x, '"', '""') || '"' else coalesce(x, '') end
    ), ',') end as _record_text,
    case when redact then regexp_replace(_record_text, '@EMAIL@', '<e-mail>', 'g')
        else _record_text end as raw_record,
    case when redact then regexp_replace(reason, '@EMAIL@', '<e-mail>', 'g')
        else reason end as reason,
    case when _customer_typed = _customer_key then _customer end as customer_ref
from checked
@REFUNDS@
union all by name
select
    _invoice as InvoiceNo,
    case when refund_per = 'order' then 'REFUND' else _stock end as StockCode,
    case when refund_per = 'order' then 'Refund'
        else nullif(trim(Description), '') end as Description,
    -_refund_items as Quantity,
    _date_typed as InvoiceDate,
    cast(round(abs(cast(_refund_read as double)) / _refund_items, 4) as decimal(18, 4))
        as UnitPrice,
    _customer_typed as CustomerID,
    nullif(trim(Country), '') as Country,
    source_file,
    source_line,
    'refund' as line_kind,
    null as raw_record,
    null as reason
from checked
where reason is null and _refund_read <> 0
@END_REFUNDS@
union all by name
select source_file, source_line, 'record' as line_kind, raw_record, reason from rejected_in
"""


class Staged(Protocol):
    """Records of one file to type: a :class:`Piece` or a :class:`RawFile`."""

    path: str
    layout: str
    records: pa.Table
    rejected: pa.Table


def _settings(staged: Staged) -> tuple[Mapping, dict[str, str]]:
    """A staged file's mapping and the names its messages give the columns."""
    mapping = getattr(staged, "mapping", None)
    if mapping is None:  # a RawFile or a Piece of the Online Retail layout `layout`
        mapping = online_retail().with_layout(staged.layout)
    labels = dict(getattr(staged, "labels", None) or {})
    if mapping.header == "exact" or not labels:  # the Online Retail names, as ever
        labels = {c: c for c in COLUMNS}
    return mapping, labels


def _date_hint(mapping: Mapping) -> str:
    if mapping.name in DATE_FORMATS and _online_retail_preset(mapping):
        return DATE_FORMATS[mapping.name][1]
    return " or ".join(mapping.date_formats)


def customer_key(secret: bytes, value: str) -> str:
    """The pseudonymous key of a customer id: a keyed hash (HMAC-SHA-256, the secret
    kept in the warehouse), stable for the warehouse, not reversible without the
    secret; an e-mail address is keyed in lower case (``Ann@x.com`` = ``ann@x.com``)."""
    text = value.strip()
    if "@" in text:
        text = text.lower()
    digest = hmac.new(secret, text.encode("utf-8"), hashlib.sha256).hexdigest()
    return "cust-" + digest[:20]


_PLAIN_ID = re.compile(PLAIN_ID)
# The columns of files_in naming a record column as the file calls it, for reasons.
_LABELS: dict[str, str] = {
    "l_invoice": "InvoiceNo",
    "l_stock": "StockCode",
    "l_quantity": "Quantity",
    "l_date": "InvoiceDate",
    "l_price": "UnitPrice",  # LineTotal when the mapping gives line totals
    "l_customer": "CustomerID",
    "l_currency": "Currency",
    "l_exclude": "ExcludeStatus",
    "l_refund": "RefundAmount",
    "l_refund_quantity": "RefundQuantity",
}
_FILES_SCHEMA = pa.schema(
    [
        ("source_file", pa.string()),
        ("layout", pa.string()),
        ("date_group", pa.int32()),
        ("date_hint", pa.string()),
        ("date_offsets", pa.bool_()),
        ("timezone", pa.string()),
        ("customer_kind", pa.string()),
        ("pseudonymise", pa.string()),
        ("redact", pa.bool_()),
        ("price_from_total", pa.bool_()),
        ("currency_expected", pa.string()),
        ("cancelled_prefix", pa.string()),
        ("return_values", pa.list_(pa.string())),
        ("exclude_values", pa.list_(pa.string())),
        ("refund_per", pa.string()),
        *((name, pa.string()) for name in _LABELS),
    ]
)
_KEYS_SCHEMA = pa.schema([("customer_value", pa.string()), ("customer_key", pa.string())])
# The same pattern as models_py.mapping.redact, in DuckDB's (RE2) syntax, quoted.
_EMAIL_SQL = "[^\\s@,;:<>\"'']+@[^\\s@,;:<>\"'']+"  # '' is ' in a SQL literal


def _file_row(path: str, mapping: Mapping, labels: dict[str, str], group: int) -> dict:
    """One file's settings for the typing query (``files_in``): data, never SQL text."""
    from_total = "line_total" in mapping.columns
    names = {**_LABELS, "l_price": "LineTotal" if from_total else "UnitPrice"}
    return {
        "source_file": path,
        "layout": mapping.name,
        "date_group": group,
        "date_hint": _date_hint(mapping),
        "date_offsets": mapping.offsets,
        "timezone": mapping.timezone or "UTC",
        "customer_kind": mapping.customer_kind,
        "pseudonymise": mapping.pseudonymise,
        "redact": redacts(mapping),
        "price_from_total": from_total,
        "currency_expected": mapping.currency_expected,
        "cancelled_prefix": mapping.cancelled_prefix,
        "return_values": list(mapping.return_status.values) if mapping.return_status else None,
        "exclude_values": list(mapping.exclude.values) if mapping.exclude else None,
        "refund_per": mapping.refund_per,
        **{label: labels.get(column, column) for label, column in names.items()},
    }


def stage_records(
    con: duckdb.DuckDBPyConnection,
    files: Sequence[Staged],
    secret: Callable[[], bytes] | None = None,
) -> str:
    """Type every record of ``files`` into a temp table and return its name.

    The table has the typed source columns, ``source_file``, ``source_line``,
    ``line_kind`` (``record``, or ``refund``: a return line made from a record's refund
    fields), ``raw_record``, ``reason`` (null: the row loads, any other value
    quarantines it) and ``customer_ref`` (the id a pseudonymous key stands for). Runs
    in whatever DuckDB connection it is given (an in-memory one is enough) and reads
    nothing but the Arrow tables passed in; the loader calls it once per batch of
    pieces, so its size is the batch's. ``secret`` gives the warehouse's key of
    pseudonyms, asked only when a file has customer ids to pseudonymise.
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
    settings = {f.path: _settings(f) for f in files}
    groups: dict[tuple[tuple[str, ...], bool], int] = {}
    for mapping, _ in settings.values():
        groups.setdefault((mapping.date_formats, mapping.offsets), len(groups))
    files_in = pa.Table.from_pylist(
        [
            _file_row(path, m, labels, groups[(m.date_formats, m.offsets)])
            for path, (m, labels) in settings.items()
        ],
        schema=_FILES_SCHEMA,
    )
    keys = _customer_keys(files, settings, secret)
    # Only generated numbers reach the SQL text: each group's formats are parameter $n.
    branches = []
    for (_, offsets), n in groups.items():
        parse = f"try_strptime(_date, ${n + 1})"
        if offsets:  # a UTC offset: the local time of the store's zone
            parse = f"timezone(timezone, {parse})"
        branches.append(f"when {n} then {parse}")
    date_case = "case date_group " + " ".join(branches) + " end"
    select = _STAGED_SELECT.replace("@EMAIL@", _EMAIL_SQL)
    if any(m.refund_amount for m, _ in settings.values()):
        select = select.replace("@REFUNDS@", "").replace("@END_REFUNDS@", "")
    else:  # no refund rows: ``checked`` read once, streamed, never materialised
        start, end = select.index("@REFUNDS@"), select.index("@END_REFUNDS@")
        select = select[:start] + select[end + len("@END_REFUNDS@") :]
    sql = (
        _TYPED_SQL.replace(
            "@DATE_TEXT@",
            DATE_TEXT.replace("@DATE@", "r.InvoiceDate").replace("@OFFSETS@", "f.date_offsets"),
        )
        .replace("@DATE_CASE@", date_case)
        .replace("@NUMBER@", NUMBER)
        .replace("@WHOLE@", WHOLE)
        .replace("@PLAIN_ID@", PLAIN_ID)
        + select
    )
    params = [list(formats) for formats, _ in groups]
    for name, table in (
        ("records_in", records_in),
        ("rejected_in", rejected_in),
        ("files_in", files_in),
        ("customer_keys_in", keys),
    ):
        con.register(name, table)
    try:
        con.execute(f"create or replace temp table {STAGED_TABLE} as " + sql, params)
    finally:
        for name in ("records_in", "rejected_in", "files_in", "customer_keys_in"):
            con.unregister(name)
    return STAGED_TABLE


def _customer_keys(
    files: Sequence[Staged],
    settings: dict[str, tuple[Mapping, dict[str, str]]],
    secret: Callable[[], bytes] | None,
) -> pa.Table:
    """(customer_value, customer_key) for every customer id to pseudonymise."""
    values: set[str] = set()
    for f in files:
        mapping = settings[f.path][0]
        if mapping.customer_kind != "text" or mapping.pseudonymise == "never":
            continue
        always = mapping.pseudonymise == "always"
        ids = pc.utf8_trim(f.records.column("CustomerID"), characters=" ")  # as SQL's trim
        for value in pc.unique(ids).to_pylist():
            if value and (always or not _PLAIN_ID.fullmatch(value)):
                values.add(value)
    if not values:
        return _KEYS_SCHEMA.empty_table()
    if secret is None:
        raise ValueError("customer ids to pseudonymise, but no secret to key them with")
    key = secret()
    ordered = sorted(values)
    return pa.table(
        {
            "customer_value": pa.array(ordered, pa.string()),
            "customer_key": pa.array([customer_key(key, v) for v in ordered], pa.string()),
        },
        schema=_KEYS_SCHEMA,
    )


STAGED_TABLE = "ingest_staged_records"
