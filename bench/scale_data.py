"""Scale data: N times the real store, as daily CSV files like the real ones.

    .venv/bin/python bench/scale_data.py --factor 10 --out /tmp/scale/10x [--source DIR]

Writes one file per real day, under the real file's name (``2010-12-01.csv``, ...),
holding ``factor`` copies of that day's lines: copy 0 is the real data byte for byte,
copy ``k`` the same lines with the customers and invoices moved into ranges of their
own, so every copy is a new set of customers buying the same things on the same days:

* ``CustomerID`` ``17850.0`` -> ``17850 + k * 100000`` (``117850.0``); the step is the
  next power of ten above the largest real id, so the copies' ids never meet. Lines with
  no customer stay without one.
* ``InvoiceNo`` ``536365`` -> ``536365 + k * 1000000`` (``1536365``), the letter prefix
  kept (``C536379`` -> ``C1536379``: still a cancellation; ``A563185`` -> ``A1563185``).
* Every other byte of the line (stock code, description and its quoting, quantity,
  price, date, country) is the original's.

Why text and not DuckDB's CSV reader and writer: a re-typed copy would re-quote
descriptions, drop odd lines or normalise the values the loader is meant to see, and
the scale benchmark must give the loader the same lines (odd ones included) the real
data gives it. So each real line is parsed once, in Python, only to find the two id
fields; a line that is not a plain 8-field record with such ids (a bad line) is copied
verbatim into every copy, so the loader's quarantine grows with the factor as well.
DuckDB then generates and writes the copies (one ``COPY ... TO`` per day, rows in the
order copy, line), which writes 100x (54 M lines, 4.5 GB) in a few minutes on 2 cores.

Deterministic: the same source and factor give byte-identical files. A manifest
(``.insiders-scale.json``, not a ``*.csv`` so the loader ignores it) written last records
the factor, the source's digest and every file's size; a folder that already holds the
complete output for the factor is left alone.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # run as a script: bench/ is sys.path[0], not the root
    sys.path.insert(0, str(REPO_ROOT))

from models_py.locations import DUCKDB_CONFIG  # noqa: E402
from orchestration.warehouse import path_literal  # noqa: E402

REAL_DATA = REPO_ROOT.parent / "shared" / "data" / "online-retail" / "by-day"
MANIFEST = ".insiders-scale.json"
# Bumped when the output for a given source and factor changes: an older manifest then
# no longer counts as complete.
GENERATOR_VERSION = 1
FIELDS = 8
INVOICE = re.compile(r"([A-Za-z]*)([1-9][0-9]*)")
CUSTOMER = re.compile(r"([1-9][0-9]*)((?:\.0*)?)")


class ScaleDataError(ValueError):
    """A source or output folder the generator cannot use; one line."""


@dataclass(frozen=True)
class Generated:
    """What :func:`generate` did: the folder, whether it wrote it, how long it took."""

    out: Path
    factor: int
    files: int
    written: bool
    seconds: float


def split_line(line: str) -> tuple[str, int | None, str, int | None, str]:
    """``line`` as ``(head, invoice, middle, customer, tail)`` with
    ``line == head + str(invoice) + middle + str(customer) + tail`` (a ``None`` id is
    the empty string): the two numbers a copy shifts, and the text around them.

    Only a record of exactly 8 CSV fields whose InvoiceNo is letters then a number and
    whose CustomerID is a number (``17850.0``) at the place the CSV parse says it is gets
    its ids split out; anything else comes back whole in ``middle``, to be copied as is.
    """
    if line.endswith("\r"):  # a CRLF file: the CR ends the last piece
        head, invoice, middle, customer, tail = split_line(line[:-1])
        return (
            (head, invoice, middle + "\r", None, "")
            if customer is None
            else (head, invoice, middle, customer, tail + "\r")
        )
    whole: tuple[str, int | None, str, int | None, str] = ("", None, line, None, "")
    if '"' not in line:
        fields = line.split(",")  # what the CSV parse gives, ten times faster
    else:
        try:
            fields = next(csv.reader([line]))
        except (csv.Error, StopIteration):
            return whole
    if len(fields) != FIELDS:
        return whole
    invoice_field, customer_field, country = fields[0], fields[6], fields[7]
    invoice = INVOICE.fullmatch(invoice_field)
    if invoice is None or not line.startswith(invoice_field + ","):
        return whole
    head, invoice_number = invoice.group(1), int(invoice.group(2))
    rest = line[len(invoice_field) :]
    customer = CUSTOMER.fullmatch(customer_field)
    tail = f"{customer.group(2)},{country}" if customer else ""
    if customer is None or not rest.endswith(f",{customer_field},{country}"):
        return head, invoice_number, rest, None, ""
    middle = rest[: len(rest) - len(customer.group(1)) - len(tail)]
    return head, invoice_number, middle, int(customer.group(1)), tail


def _step(largest: int) -> int:
    """The smallest power of ten above ``largest``: copy k's ids start at k times it."""
    return 10 ** len(str(max(largest, 1)))


def source_files(source: Path) -> list[Path]:
    """The ``*.csv`` files of ``source``, by name (not recursive: one file per day)."""
    if not source.is_dir():
        raise ScaleDataError(f"{source}: not a directory of daily CSV files")
    files = sorted(p for p in source.glob("*.csv") if p.is_file())
    if not files:
        raise ScaleDataError(f"{source}: no *.csv files to scale")
    return files


def source_digest(files: list[Path]) -> str:
    """SHA-256 of the files' names and bytes: the manifest's proof of what was copied."""
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def read_lines(files: list[Path]) -> pa.Table:
    """Every line of ``files``, split by :func:`split_line`: the table DuckDB copies
    from (``file, line_no, head, invoice, middle, customer, tail``; line 0 is the header,
    kept whole)."""
    columns: dict[str, list] = {
        k: [] for k in ("file", "line_no", "head", "invoice", "middle", "customer", "tail")
    }
    for path in files:
        data = path.read_bytes()
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ScaleDataError(f"{path}: not UTF-8 at byte {exc.start}") from exc
        if not text.endswith("\n"):
            raise ScaleDataError(f"{path}: the last line does not end with a newline")
        lines = text[:-1].split("\n")
        columns["file"] += [path.name] * len(lines)
        columns["line_no"] += range(len(lines))
        for key, values in zip(
            ("head", "invoice", "middle", "customer", "tail"),
            zip(("", None, lines[0], None, ""), *map(split_line, lines[1:]), strict=True),
            strict=True,
        ):
            columns[key] += values
    types = {"line_no": pa.int64(), "invoice": pa.int64(), "customer": pa.int64()}
    return pa.table(
        {key: pa.array(values, types.get(key, pa.string())) for key, values in columns.items()}
    )


def _manifest(factor: int, digest: str, sizes: dict[str, int]) -> dict:
    return {
        "generator_version": GENERATOR_VERSION,
        "factor": factor,
        "source_sha256": digest,
        "files": sizes,
    }


def is_complete(out: Path, factor: int, digest: str | None = None) -> bool:
    """Whether ``out`` holds the complete output for ``factor`` (and, given a digest,
    of that source): its manifest says so and every file listed has its size."""
    try:
        manifest = json.loads((out / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        return False
    if manifest.get("generator_version") != GENERATOR_VERSION or manifest.get("factor") != factor:
        return False
    if digest is not None and manifest.get("source_sha256") != digest:
        return False
    return all(
        (out / name).is_file() and (out / name).stat().st_size == size
        for name, size in manifest["files"].items()
    )


def generate(factor: int, out: Path, source: Path = REAL_DATA) -> Generated:
    """Write ``factor`` copies of ``source``'s daily files into ``out`` (see the module
    docstring), unless ``out`` already holds exactly that output."""
    if isinstance(factor, bool) or not isinstance(factor, int) or factor < 1:
        raise ScaleDataError(f"factor {factor!r}: must be an integer >= 1")
    start = time.perf_counter()
    files = source_files(source)
    digest = source_digest(files)
    if is_complete(out, factor, digest):
        return Generated(out, factor, len(files), False, time.perf_counter() - start)
    names = [p.name for p in files]
    ours = {*names, MANIFEST, MANIFEST + ".partial"}
    strangers = sorted(p.name for p in out.iterdir() if p.name not in ours) if out.is_dir() else []
    if strangers:
        raise ScaleDataError(
            f"{out}: holds files the generator does not write (e.g. {strangers[0]}); "
            "use an empty folder"
        )
    out.mkdir(parents=True, exist_ok=True)
    (out / MANIFEST).unlink(missing_ok=True)
    table = read_lines(files)
    invoice_step = _step(pc.max(table.column("invoice")).as_py() or 0)
    customer_step = _step(pc.max(table.column("customer")).as_py() or 0)
    con = duckdb.connect(config=DUCKDB_CONFIG)
    try:
        con.register("source_lines", table)
        con.execute("create table lines as select * from source_lines order by file, line_no")
        con.unregister("source_lines")
        for name in names:
            # The file name is pasted (COPY takes no parameter for it) through the one
            # quoting helper; every value of the query itself is bound.
            con.execute(
                f"""
                copy (
                    select
                        head
                        || coalesce(cast(invoice + k * $invoice_step as varchar), '')
                        || middle
                        || coalesce(cast(customer + k * $customer_step as varchar), '')
                        || tail
                    from lines, range($factor) as copies(k)
                    where file = $file and (line_no > 0 or k = 0)
                    order by k, line_no
                ) to {path_literal(out / name)}
                (format csv, header false, quote '', escape '', delimiter '\x1f')
                """,
                {
                    "invoice_step": invoice_step,
                    "customer_step": customer_step,
                    "factor": factor,
                    "file": name,
                },
            )
    finally:
        con.close()
    sizes = {name: (out / name).stat().st_size for name in names}
    partial = out / (MANIFEST + ".partial")
    partial.write_text(json.dumps(_manifest(factor, digest, sizes), indent=1, sort_keys=True))
    partial.replace(out / MANIFEST)
    return Generated(out, factor, len(names), True, time.perf_counter() - start)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--factor", type=int, required=True, help="copies of the real data")
    parser.add_argument("--out", type=Path, required=True, help="folder for the daily files")
    parser.add_argument("--source", type=Path, default=REAL_DATA, help="the real daily files")
    args = parser.parse_args(argv)
    try:
        done = generate(args.factor, args.out, args.source)
    except ScaleDataError as exc:
        raise SystemExit(f"scale_data: {exc}") from None
    verb = "wrote" if done.written else "already complete:"
    print(f"{verb} {done.files} daily files, {done.factor}x, in {done.out} ({done.seconds:.1f} s)")


if __name__ == "__main__":
    main()
