"""Layout detection, parsing and quarantine of single files (no warehouse)."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from models_py.ingest import STAGED_TABLE, TransactionFileError, split_file, stage_records
from tests.conftest import HEADER

DAILY = (
    HEADER + "\n"
    "536365,85123A,WHITE HANGING HEART T-LIGHT HOLDER,6,2010-12-01 08:26:00,2.55,17850.0,"
    "United Kingdom\n"
    '536366,22633,"HAND WARMER, UNION JACK",6,2010-12-01 08:28:00,1.85,17850.0,United Kingdom\n'
    "C536379,D,Discount,-1,2010-12-01 09:41:00,27.5,14527.0,United Kingdom\n"
    "536414,22139,,56,2010-12-01 11:52:00,0.0,,United Kingdom\n"
)
UCI = (
    HEADER + "\n"
    "536365,85123A,WHITE HANGING HEART T-LIGHT HOLDER,6,12/1/2010 8:26,2.55,17850,United Kingdom\n"
    '536366,22633,"HAND WARMER, UNION JACK",6,12/1/2010 8:28,1.85,17850,United Kingdom\n'
    "C536379,D,Discount,-1,12/1/2010 9:41,27.5,14527,United Kingdom\n"
    "536414,22139,,56,12/1/2010 11:52,0,,United Kingdom\n"
)
KAGGLE = (
    HEADER + ",\n"
    "536365,85123A,WHITE HANGING HEART T-LIGHT HOLDER,6,01-Dec-10,2.55,17850,United Kingdom,\n"
    '536366,22633,"HAND WARMER, UNION JACK",6,01-Dec-10,1.85,17850,United Kingdom,\n'
    "C536379,D,Discount,-1,01-Dec-10,27.5,14527,United Kingdom,\n"
    "536414,22139,,56,01-Dec-10,0,,United Kingdom,\n"
)


def typed(path: Path) -> list[dict]:
    """Split and type one file in an in-memory DuckDB; rows ordered by line."""
    con = duckdb.connect()
    stage_records(con, [split_file(path)])
    cur = con.execute(f"select * from {STAGED_TABLE} order by source_line")
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


@pytest.mark.parametrize(
    ("content", "encoding", "layout"),
    [(DAILY, "utf-8", "daily"), (UCI, "utf-8", "uci"), (KAGGLE, "cp1252", "kaggle")],
)
def test_each_layout_is_detected_and_typed_the_same(write_file, content, encoding, layout):
    path = write_file(f"{layout}.csv", content, encoding)
    raw = split_file(path)
    assert raw.layout == layout
    assert raw.raw_lines == 4
    rows = typed(path)
    assert [r["reason"] for r in rows] == [None] * 4
    assert [r["source_line"] for r in rows] == [2, 3, 4, 5]
    assert [r["InvoiceNo"] for r in rows] == ["536365", "536366", "C536379", "536414"]
    assert [r["CustomerID"] for r in rows] == ["17850", "17850", "14527", None]
    assert rows[1]["Description"] == "HAND WARMER, UNION JACK"
    assert rows[3]["Description"] is None
    assert [r["Quantity"] for r in rows] == [6, 6, -1, 56]
    assert [float(r["UnitPrice"]) for r in rows] == [2.55, 1.85, 27.5, 0.0]
    assert rows[0]["InvoiceDate"].date().isoformat() == "2010-12-01"
    if layout != "kaggle":
        assert rows[2]["InvoiceDate"].strftime("%H:%M") == "09:41"


def test_kaggle_windows_1252_pound_sign_is_decoded(write_file):
    text = KAGGLE.replace("HAND WARMER, UNION JACK", "POUND £1 SIGN")
    path = write_file("Ecommerce.csv", text, "cp1252")
    assert b"\xa3" in path.read_bytes()
    raw = split_file(path)
    assert raw.encoding == "cp1252"
    assert typed(path)[1]["Description"] == "POUND £1 SIGN"


def test_kaggle_two_digit_years_land_in_this_century(write_file):
    path = write_file("Ecommerce.csv", KAGGLE.replace("01-Dec-10", "29-Nov-16"), "cp1252")
    assert typed(path)[0]["InvoiceDate"].year == 2016


def test_bad_rows_are_quarantined_with_line_and_reason(write_file):
    lines = DAILY.splitlines()
    bad = [
        lines[0],
        lines[1],
        "536367,84879,BIRD ORNAMENT,abc,2010-12-01 08:34:00,1.69,13047.0,United Kingdom",
        "536368,22960,JAM MAKING SET,6,2010-13-45 08:34:00,4.25,13047.0,United Kingdom",
        ",22913,RED COAT RACK,3,2010-12-01 08:34:00,4.95,13047.0,United Kingdom",
        "536369,,BATH BUILDING BLOCK,3,2010-12-01 08:35:00,5.95,13047.0,United Kingdom",
        "536370,22728,ALARM CLOCK,24,2010-12-01 08:45:00,3.75,12583.0",
        "",
        "536371,22086,PAPER CHAIN,80,2010-12-01 09:00:00,2.55,abc,United Kingdom",
        "536372,22632,HAND WARMER,6,2010-12-01 09:01:00,1.8.5,17850.0,United Kingdom",
        lines[2],
    ]
    path = write_file("bad.csv", "\n".join(bad) + "\n")
    raw = split_file(path)
    assert raw.raw_lines == 10
    rows = typed(path)
    assert len(rows) == raw.raw_lines
    reasons = {r["source_line"]: r["reason"] for r in rows}
    assert reasons[2] is None and reasons[11] is None
    assert reasons[3] == "bad Quantity 'abc'"
    assert reasons[4].startswith("bad InvoiceDate '2010-13-45 08:34:00'")
    assert reasons[5] == "missing InvoiceNo"
    assert reasons[6] == "missing StockCode"
    assert reasons[7] == "expected 8 fields, found 7"
    assert reasons[8] == "blank line"
    assert reasons[9] == "bad CustomerID 'abc'"
    assert reasons[10] == "bad UnitPrice '1.8.5'"
    quarantined = {r["source_line"]: r["raw_record"] for r in rows if r["reason"]}
    assert quarantined[3].startswith("536367,84879,BIRD ORNAMENT,abc,")


def test_record_spanning_lines_keeps_its_first_line_number(write_file):
    lines = DAILY.splitlines()
    text = "\n".join(
        [
            lines[0],
            lines[1],
            '536366,22633,"HAND WARMER\nUNION JACK",6,2010-12-01 08:28:00,1.85,17850.0,UK',
            lines[3],
        ]
    )
    path = write_file("multiline.csv", text + "\n")
    rows = typed(path)
    assert [r["source_line"] for r in rows] == [2, 3, 5]
    assert rows[1]["Description"] == "HAND WARMER\nUNION JACK"


def test_fast_and_exact_readers_agree(write_file):
    """A clean file takes the Arrow path; the same rows with one bad line take the
    csv-module path. Both must type the shared rows identically."""
    clean = write_file("clean.csv", DAILY)
    lines = DAILY.splitlines()
    mixed = write_file("mixed.csv", "\n".join([*lines[:3], "too,few,fields", *lines[3:]]) + "\n")
    clean_rows = [{k: v for k, v in r.items() if k != "source_file"} for r in typed(clean)]
    mixed_rows = [
        {k: v for k, v in r.items() if k != "source_file"} for r in typed(mixed) if not r["reason"]
    ]
    for row in mixed_rows:
        if row["source_line"] > 3:
            row["source_line"] -= 1
    assert clean_rows == mixed_rows


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"", "empty file"),
        (b"   \n\n", "empty file"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary file"),
        (b"InvoiceNo,StockCode,Quantity\n1,2,3\n", "missing columns Description, InvoiceDate"),
        (
            (HEADER + ",Extra\n").encode(),
            "unexpected columns 'Extra'",
        ),
        (b"name,age\nbob,3\n", "not an Online Retail transaction file"),
    ],
)
def test_files_that_are_not_transaction_files_fail_with_one_line(write_file, content, problem):
    path = write_file("bad.csv", content)
    with pytest.raises(TransactionFileError) as info:
        split_file(path)
    message = str(info.value)
    assert message.startswith(str(path) + ": ")
    assert problem in message
    assert "\n" not in message
