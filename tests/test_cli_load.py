"""``insiders load`` and friends as a user types them: one line per file, one line per
error, the right exit code (issue 11's probe cases, through ``orchestration.cli.main``)."""

from __future__ import annotations

import gzip
import os
import sqlite3
from pathlib import Path

import duckdb
import pytest

from models_py.demo_data import write_demo_data
from models_py.locations import DUCKDB_CONFIG
from orchestration.cli import exposure_warning, main
from tests.test_ingest import DAILY, HEADER, UCI

DATA_LINES = len(DAILY.strip().splitlines()) - 1


def plain(sql: str, params: list | None = None) -> list[tuple]:
    """Plain DuckDB (in memory) over the input files: the independent expectation."""
    con = duckdb.connect(config=DUCKDB_CONFIG)
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()


def rows_of(warehouse: Path, sql: str, params: list | None = None) -> list[tuple]:
    con = duckdb.connect(str(warehouse), config=DUCKDB_CONFIG)
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()


def load(warehouse: Path, *paths: str | Path) -> int:
    return main(["load", "--warehouse", str(warehouse), *map(str, paths)])


# A warehouse that is no DuckDB database ---------------------------------------------


def test_load_into_an_existing_csv_is_refused_with_rc_2(write_file, tmp_path, capsys) -> None:
    """Before: rc 0, 'rows loaded: 4', and nothing saved anywhere."""
    data = write_file("data.csv", DAILY)
    day = write_file("day.csv", DAILY)
    before = data.read_bytes()
    assert load(data, day) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        f"insiders: error: {data}: not a DuckDB database (a text file); give a new file or "
        "an existing warehouse, e.g. warehouse/insiders_warehouse.duckdb\n"
    )
    assert data.read_bytes() == before


@pytest.mark.parametrize("command", [["load", "x.csv"], ["build"], ["run"]])
def test_every_writing_command_refuses_a_sqlite_warehouse(tmp_path, capsys, command) -> None:
    shop = tmp_path / "shop.db"
    con = sqlite3.connect(shop)
    con.execute("create table t (a integer)")
    con.commit()
    con.close()
    assert main([command[0], "--warehouse", str(shop), *command[1:]]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"insiders: error: {shop}: not a DuckDB database (a SQLite database); give a new "
        "file or an existing warehouse, e.g. warehouse/insiders_warehouse.duckdb\n"
    )


def test_a_directory_as_warehouse_is_one_line(tmp_path, write_file, capsys) -> None:
    assert load(tmp_path, write_file("day.csv", DAILY)) == 2
    assert capsys.readouterr().err == (
        f"insiders: error: {tmp_path}: is a directory, expected a DuckDB database file\n"
    )


# File names, encodings, compressed files ---------------------------------------------


def test_a_name_that_is_not_utf8_is_printed_and_the_other_file_loads(
    tmp_path, warehouse, capsys
) -> None:
    """Before: a 23-line UnicodeEncodeError traceback and the good file not loaded."""
    folder = tmp_path / "in"
    folder.mkdir()
    raw = os.path.join(os.fsencode(folder), b"caf\xe9.csv")
    with open(raw, "wb") as handle:
        handle.write(DAILY.encode())
    good = folder / "good.csv"
    good.write_text(UCI)
    assert load(warehouse, os.fsdecode(raw), good) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert f"loaded  {folder}/caf\\xe9.csv (daily, utf-8)\n" in out
    assert f"loaded  {good} (uci, utf-8)\n" in out
    assert "files loaded: 2, skipped: 0, failed: 0;" in out


def test_the_cli_prints_how_a_mixed_encoding_file_was_read(tmp_path, warehouse, capsys) -> None:
    path = tmp_path / "mixed.csv"
    utf8 = (DAILY.replace("WHITE HANGING HEART", "CAFÉ CRÈME") + "").encode("utf-8")
    latin = "536400,22700,POUND £ SIGN,1,2010-12-01 10:00:00,1.0,13047.0,France\n"
    path.write_bytes(utf8 + latin.encode("latin-1"))
    assert load(warehouse, path) == 0
    assert f"loaded  {path} (daily, utf-8 (1 line cp1252))\n" in capsys.readouterr().out
    assert rows_of(
        warehouse, "select Description from raw.transactions where InvoiceNo = '536365'"
    ) == [("CAFÉ CRÈME T-LIGHT HOLDER",)]


def test_a_directory_says_what_it_skipped_and_rc_stays_0(tmp_path, warehouse, capsys) -> None:
    folder = tmp_path / "drop"
    folder.mkdir()
    (folder / "a.csv").write_text(DAILY)
    (folder / "b.csv.gz").write_bytes(gzip.compress(UCI.encode()))
    (folder / "readme.txt").write_text("hi")
    (folder / ".DS_Store").write_bytes(b"\x00\x00")
    assert load(warehouse, folder) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert out.splitlines() == [
        f"loaded  {folder / 'a.csv'} (daily, utf-8)",
        f"loaded  {folder / 'b.csv.gz'} (uci, utf-8)",
        f"skipped {folder / '.DS_Store'}: hidden file",
        f"skipped {folder / 'readme.txt'}: not a .csv, .csv.gz or .parquet file",
        f"files loaded: 2, skipped: 2, failed: 0; rows loaded: {2 * DATA_LINES}, "
        "rows quarantined: 0",
    ]


def test_a_corrupt_gzip_file_named_on_the_command_line_fails_in_one_line(
    tmp_path, warehouse, write_file, capsys
) -> None:
    packed = tmp_path / "day.csv.gz"
    packed.write_bytes(gzip.compress(DAILY.encode())[:-12])
    good = write_file("good.csv", UCI)
    assert load(warehouse, packed, good) == 1
    out, err = capsys.readouterr()
    assert err == (
        f"insiders: error: {packed}: corrupt gzip file (Compressed file ended before the "
        "end-of-stream marker was reached)\n"
    )
    assert "files loaded: 1, skipped: 0, failed: 1;" in out


# Synthetic demo data ----------------------------------------------------------------


def test_loading_real_data_says_it_removed_the_demo_data(tmp_path, warehouse, capsys) -> None:
    demo = write_demo_data(tmp_path / "demo", customers=30, seed=4, layout="daily")
    assert load(warehouse, demo.path.parent) == 0
    assert f"loaded  {demo.path} (daily, utf-8, SYNTHETIC demo data)\n" in (capsys.readouterr().out)
    real = tmp_path / "real.csv"
    real.write_text(DAILY)
    assert load(warehouse, real) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "removed synthetic demo data (1 file) before loading real data"
    assert rows_of(warehouse, "select distinct source_file from raw.transactions") == [(str(real),)]


# The probe's cases that passed: they stay passing ------------------------------------


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary file (NUL bytes), expected CSV text"),
        (b"", "empty file"),
        (
            b"Invoice,Stock\n1,2\n",
            "not an Online Retail transaction file: missing columns InvoiceNo, StockCode, "
            "Description, Quantity, InvoiceDate, UnitPrice, CustomerID, Country; unexpected "
            "columns 'Invoice', 'Stock' (and no preset fits the header: give a mapping with "
            "--mapping)",
        ),
    ],
    ids=["binary", "empty", "wrong header"],
)
def test_a_file_that_is_no_transaction_file_fails_alone_in_one_line(
    write_file, warehouse, capsys, content, problem
) -> None:
    bad = write_file("bad.csv", content)
    good = write_file("good.csv", DAILY)
    assert load(warehouse, bad, good) == 1
    out, err = capsys.readouterr()
    assert err == f"insiders: error: {bad}: {problem}\n"
    assert f"rows loaded: {DATA_LINES}," in out
    assert rows_of(warehouse, "select source_file from raw.loaded_files") == [(str(good),)]


def test_a_header_only_file_loads_as_zero_rows(write_file, warehouse, capsys) -> None:
    path = write_file("empty-day.csv", HEADER + "\n")
    assert load(warehouse, path) == 0
    assert "files loaded: 1, skipped: 0, failed: 0; rows loaded: 0," in capsys.readouterr().out
    assert rows_of(warehouse, "select raw_lines, loaded_rows from raw.loaded_files") == [(0, 0)]


def test_bom_and_crlf_are_read_as_plain_csv(write_file, warehouse) -> None:
    text = DAILY.replace("\n", "\r\n")
    path = write_file("windows.csv", b"\xef\xbb\xbf" + text.encode())
    assert load(warehouse, path) == 0
    expected = plain(
        "select InvoiceNo, Country from read_csv(?, header = true, all_varchar = true) "
        "order by InvoiceNo",
        [str(path)],
    )
    assert rows_of(warehouse, "select InvoiceNo, Country from raw.transactions order by 1") == (
        expected
    )
    assert len(expected) == DATA_LINES
    assert all(not c.endswith("\r") and not i.startswith("\ufeff") for i, c in expected)


def test_utf8_and_cp1252_files_both_give_the_pound_sign(write_file, warehouse) -> None:
    line = "536400,22700,POUND £ SIGN,1,2010-12-01 10:00:00,1.0,13047.0,France\n"
    utf8 = write_file("utf8.csv", HEADER + "\n" + line, "utf-8")
    cp1252 = write_file("cp1252.csv", HEADER + "\n" + line.replace("536400", "536401"), "cp1252")
    assert load(warehouse, utf8, cp1252) == 0
    assert rows_of(
        warehouse,
        "select f.encoding, t.Description from raw.transactions as t "
        "join raw.loaded_files as f using (source_file) order by 1",
    ) == [("cp1252", "POUND £ SIGN"), ("utf-8", "POUND £ SIGN")]


def test_bad_fields_are_quarantined_and_every_file_reconciles(write_file, warehouse) -> None:
    lines = DAILY.splitlines()
    bad_rows = [
        "536367,84879,BIRD ORNAMENT,abc,2010-12-01 08:34:00,1.69,13047.0,United Kingdom",
        "536368,22960,JAM MAKING SET,6,2010-13-45 08:34:00,4.25,13047.0,United Kingdom",
        "536370,22728,ALARM CLOCK,24,2010-12-01 08:45:00,3.75,12583.0",
    ]
    path = write_file("messy.csv", "\n".join([*lines, *bad_rows]) + "\n")
    clean = write_file("clean.csv", UCI)
    assert load(warehouse, path, clean) == 0
    records = len(path.read_text().splitlines()) - 1  # one record per line here
    assert records == DATA_LINES + len(bad_rows)
    assert rows_of(
        warehouse,
        """
        select f.source_file, f.raw_lines, f.loaded_rows, f.quarantined_rows,
            (select count(*) from raw.transactions as t where t.source_file = f.source_file),
            (select count(*) from raw.quarantined_rows as q where q.source_file = f.source_file)
        from raw.loaded_files as f order by 1
        """,
    ) == [
        (str(clean), 4, 4, 0, 4, 0),
        (str(path), records, DATA_LINES, len(bad_rows), DATA_LINES, len(bad_rows)),
    ]
    assert rows_of(
        warehouse, "select source_line, reason from raw.quarantined_rows order by 1"
    ) == [
        (DATA_LINES + 2, "bad Quantity 'abc'"),
        (DATA_LINES + 3, "bad InvoiceDate '2010-13-45 08:34:00' (expected YYYY-MM-DD HH:MM:SS)"),
        (DATA_LINES + 4, "expected 8 fields, found 7"),
    ]


@pytest.mark.parametrize(
    "name",
    ["with space.csv", 'it\'s "quoted".csv', "semi;colon; drop table x.csv", "café ünï 日本.csv"],
)
def test_odd_path_names_load_and_print_as_given(tmp_path, warehouse, capsys, name) -> None:
    folder = tmp_path / "odd dir; 'x'"
    folder.mkdir()
    path = folder / name
    path.write_text(DAILY)
    assert load(warehouse, path) == 0
    assert f"loaded  {path} (daily, utf-8)\n" in capsys.readouterr().out
    assert rows_of(warehouse, "select distinct source_file from raw.transactions") == [(str(path),)]
    assert load(warehouse, folder) == 0
    assert f"skipped {path}: unchanged\n" in capsys.readouterr().out


def test_a_missing_path_fails_alone(write_file, tmp_path, warehouse, capsys) -> None:
    missing = tmp_path / "nope.csv"
    good = write_file("good.csv", DAILY)
    assert load(warehouse, missing, good) == 1
    out, err = capsys.readouterr()
    assert err == f"insiders: error: {missing}: no such file or directory\n"
    assert "files loaded: 1, skipped: 0, failed: 1;" in out


@pytest.mark.parametrize("command", ["build", "run"])
def test_a_bad_as_of_is_an_argparse_error(command, tmp_path, capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main([command, "--warehouse", str(tmp_path / "w.duckdb"), "--as-of", "2011-13-01"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "argument --as-of: not a date (YYYY-MM-DD): '2011-13-01'" in err
    assert not (tmp_path / "w.duckdb").exists()


# The dashboard warns when it listens beyond this machine ----------------------------


class Execv(Exception):
    """Raised instead of replacing the process with streamlit."""


@pytest.mark.parametrize(
    ("address", "warned"),
    [
        ("127.0.0.1", False),
        ("::1", False),
        ("localhost", False),
        ("127.0.1.1", False),
        ("0.0.0.0", True),
        ("::", True),
        ("192.168.1.20", True),
        ("shop.example.com", True),
    ],
)
def test_the_dashboard_warns_loudly_off_loopback(
    tmp_path, capsys, monkeypatch: pytest.MonkeyPatch, address, warned
) -> None:
    """Before: `insiders dashboard --address 0.0.0.0` served the answers to the
    network without a word."""
    from models_py.locations import SNAPSHOT_ENV

    monkeypatch.setenv(SNAPSHOT_ENV, "")  # restored afterwards: _dashboard sets it
    calls: list[list[str]] = []

    def execv(path: str, args: list[str]) -> None:
        calls.append(args)
        raise Execv

    monkeypatch.setattr(os, "execv", execv)
    argv = ["dashboard", "--address", address, "--port", "8765"]
    with pytest.raises(Execv):
        main([*argv, "--snapshot", str(tmp_path / "bi.duckdb")])
    err = capsys.readouterr().err
    warning = (
        f"insiders: WARNING: no authentication: anyone who can reach {address}:8765 sees the "
        "customer answers; put it behind a reverse proxy with authentication, see README\n"
    )
    assert err == (warning if warned else "")
    assert calls and calls[0][calls[0].index("--server.address") + 1] == address
    assert (exposure_warning(address, 8765) is not None) is warned
