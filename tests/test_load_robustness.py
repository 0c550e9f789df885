"""The loader against hostile or odd inputs (issue 11's fault probe): warehouse paths
that are no DuckDB database, DuckDB's extension autoloading, file names that are not
UTF-8, mixed encodings, compressed and non-CSV files, synthetic demo data and rollback.

Every test runs real files through real DuckDB; expected values come from the inputs
(line counts, plain DuckDB over the same bytes), never from the loader's output.
"""

from __future__ import annotations

import gzip
import io
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import duckdb
import jinja2
import pytest
import yaml

import models_py.ingest as ingest_module
import orchestration.warehouse as warehouse_module
from models_py.demo_data import write_demo_data
from models_py.ingest import SYNTHETIC_MARKER, display_path, split_file
from models_py.locations import DEFAULT_MEMORY_LIMIT, DUCKDB_CONFIG
from orchestration.dbt_runner import DBT_PROFILES_DIR, run_dbt
from orchestration.warehouse import WarehouseError, check_warehouse, connect, load_files
from tests.test_ingest import DAILY, HEADER, UCI

DATA_LINES = len(DAILY.strip().splitlines()) - 1  # the header is no row


def rows_of(warehouse: Path, sql: str, params: list | None = None) -> list[tuple]:
    """A query on the warehouse with the project's connection configuration."""
    con = duckdb.connect(str(warehouse), config=DUCKDB_CONFIG)
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()


def raw_state(warehouse: Path) -> dict[str, list[tuple]]:
    """Every row of every raw table, sorted: equal states mean nothing changed."""
    return {
        "transactions": sorted(rows_of(warehouse, "select * from raw.transactions"), key=repr),
        "quarantined_rows": sorted(
            rows_of(warehouse, "select * from raw.quarantined_rows"), key=repr
        ),
        "loaded_files": sorted(
            rows_of(warehouse, "select * exclude (loaded_at) from raw.loaded_files"), key=repr
        ),
    }


# 1. A warehouse path that is not a DuckDB database is refused in one line ------------


def _csv(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(DAILY)
    return path


def _sqlite(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(path)
    con.execute("create table t (a integer)")
    con.commit()
    con.close()
    return path


def _directory(path: Path) -> Path:
    path.mkdir(parents=True)
    return path


def _under_a_file(path: Path) -> Path:
    """A location nobody can create, root included: its parent is a regular file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    (path.parent / "plain-file").write_text("x")
    return path.parent / "plain-file" / "warehouse.duckdb"


NOT_A_WAREHOUSE = {
    "existing CSV": (lambda p: _csv(p / "data.csv"), "not a DuckDB database (a text file)"),
    "SQLite file": (lambda p: _sqlite(p / "shop.db"), "not a DuckDB database (a SQLite database)"),
    "directory": (lambda p: _directory(p / "wh.duckdb"), "is a directory"),
    "under /proc": (lambda p: Path("/proc/x.duckdb"), "cannot create the warehouse"),
    "parent is a file": (lambda p: _under_a_file(p / "ro" / "x"), "is not a directory"),
}


@pytest.mark.parametrize("case", list(NOT_A_WAREHOUSE))
def test_a_warehouse_that_is_no_duckdb_database_is_refused_in_one_line(
    case: str, tmp_path: Path, write_file
) -> None:
    """Before: an existing CSV 'loaded' 4 rows nowhere (rc 0); the others ended in a
    17-20 line DuckDB traceback (for SQLite after trying to download sqlite_scanner)."""
    make, problem = NOT_A_WAREHOUSE[case]
    target = make(tmp_path)
    before = target.read_bytes() if target.is_file() else None
    good = write_file("day.csv", DAILY)
    with pytest.raises(WarehouseError) as info:
        load_files(target, [good])
    message = str(info.value)
    assert message.startswith(f"{target}: "), message
    assert problem in message
    assert "\n" not in message
    assert isinstance(info.value, ValueError)
    if before is not None:
        assert target.read_bytes() == before  # refused before anything touched it


def test_an_unwritable_folder_is_refused_in_one_line(tmp_path: Path, write_file) -> None:
    """A folder without write permission; root writes anywhere, so for root the
    unwritable place is a path below a regular file (as in the parametrized case)."""
    if os.geteuid() == 0:
        target = _under_a_file(tmp_path / "ro" / "x")
        problem = "cannot create the warehouse"
    else:
        folder = tmp_path / "ro"
        folder.mkdir()
        folder.chmod(0o555)
        target = folder / "warehouse.duckdb"
        problem = "cannot create the warehouse (Permission denied)"
    try:
        with pytest.raises(WarehouseError, match=re.escape(problem)):
            load_files(target, [write_file("day.csv", DAILY)])
    finally:
        (tmp_path / "ro").chmod(0o755)
    assert not target.exists()


def test_a_new_or_empty_path_makes_a_new_warehouse(tmp_path: Path, write_file) -> None:
    """A missing folder is created; an empty file (what mktemp leaves, and DuckDB
    refuses) holds nothing and becomes a new warehouse."""
    good = write_file("day.csv", DAILY)
    fresh = tmp_path / "new" / "deeper" / "warehouse.duckdb"
    assert load_files(fresh, [good]).rows_loaded == DATA_LINES
    empty = tmp_path / "empty.duckdb"
    empty.touch()
    assert load_files(empty, [good]).rows_loaded == DATA_LINES
    for path in (fresh, empty):
        assert path.read_bytes()[8:12] == b"DUCK"
        assert rows_of(path, "select count(*) from raw.transactions") == [(DATA_LINES,)]


def test_reading_a_missing_warehouse_is_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.duckdb"
    with pytest.raises(WarehouseError, match="no such warehouse"):
        connect(missing, read_only=True)
    assert not missing.exists()
    check_warehouse(missing)  # a writer may create it
    assert not missing.exists()  # the check leaves nothing behind


# 2. No extension is ever installed or loaded behind our back -------------------------


@pytest.mark.parametrize("read_only", [False, True])
def test_every_connection_disables_extension_autoinstall_and_autoload(
    tmp_path: Path, read_only: bool
) -> None:
    path = tmp_path / "warehouse.duckdb"
    connect(path).close()
    con = connect(path, read_only=read_only)
    try:
        settings = con.execute(
            "select current_setting('autoinstall_known_extensions'), "
            "current_setting('autoload_known_extensions')"
        ).fetchone()
    finally:
        con.close()
    assert settings == (False, False)


def test_dbt_in_this_process_opens_the_warehouse_with_the_same_configuration(
    tmp_path: Path,
) -> None:
    """dbt-duckdb keeps its connection open after a run, and DuckDB refuses a second
    connection to the file with another configuration: the profile's config_options
    must equal DUCKDB_CONFIG, or the next connect() fails (``settings`` would not do:
    dbt-duckdb SETs them after connecting)."""
    for target in ("duckdb", "dev"):
        assert rendered_profile(target)["config_options"] == DUCKDB_CONFIG
    path = tmp_path / "warehouse.duckdb"
    connect(path).close()
    assert run_dbt("seed", path)
    con = connect(path)  # raised "different configuration" with a mismatched profile
    try:
        assert con.execute(
            "select current_setting('autoload_known_extensions'), current_setting('memory_limit'),"
            " current_setting('temp_directory')"
        ).fetchone() == (False, duckdb_size(DEFAULT_MEMORY_LIMIT), f"{path}.tmp")
    finally:
        con.close()


def rendered_profile(target: str) -> dict:
    """The dbt profile's output as dbt renders it (``env_var(name, default)``: the
    variable if set, else the default), in this process's environment."""
    text = (DBT_PROFILES_DIR / "profiles.yml").read_text()
    rendered = jinja2.Template(text).render(
        env_var=lambda name, default=None: os.environ.get(name, default)
    )
    return yaml.safe_load(rendered)["insiders"]["outputs"][target]


def duckdb_size(limit: str) -> str:
    """How DuckDB itself shows a memory limit (``4GB`` is ``3.7 GiB``)."""
    con = duckdb.connect(config={"memory_limit": limit})
    try:
        return con.execute("select current_setting('memory_limit')").fetchone()[0]
    finally:
        con.close()


_WITH_A_SMALL_LIMIT = """
import sys
from pathlib import Path
import duckdb
from models_py.locations import DEFAULT_MEMORY_LIMIT, DUCKDB_CONFIG
from orchestration.dbt_runner import run_dbt
from orchestration.warehouse import connect, load_files
path = Path(sys.argv[1])
load_files(path, [sys.argv[2]])
assert run_dbt("seed", path)
con = connect(path)  # dbt's connection is still open: same configuration, or refused
limit = con.execute("select current_setting('memory_limit')").fetchone()[0]
# Sorting 6 M strings (about 400 MB) under a 64 MB limit: spilled, not refused.
rows = con.execute(
    "select count(*) from (select md5(cast(i as varchar)) as m from range(6000000) t(i) "
    "order by m)"
).fetchone()[0]
print("\\nRESULT", DUCKDB_CONFIG["memory_limit"], limit, rows, sep="|")
"""


def test_the_memory_limit_comes_from_the_environment_for_every_connection(
    tmp_path: Path, write_file
) -> None:
    """INSIDERS_DUCKDB_MEMORY_LIMIT reaches the loader's connections and dbt's alike (one
    process: DuckDB refuses a second connection with another configuration); the loader
    hands the configured limit back when it is done, and SQL beyond it spills to
    ``<warehouse>.tmp`` instead of failing."""
    path = tmp_path / "warehouse.duckdb"
    env = dict(os.environ, INSIDERS_DUCKDB_MEMORY_LIMIT="64MB")
    done = subprocess.run(
        [sys.executable, "-c", _WITH_A_SMALL_LIMIT, str(path), str(write_file("d.csv", DAILY))],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        cwd=DBT_PROFILES_DIR.parent,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    [result] = [line for line in done.stdout.splitlines() if line.startswith("RESULT|")]
    assert result.split("|")[1:] == ["64MB", duckdb_size("64MB"), "6000000"]


# 3. A file name that is not UTF-8 ----------------------------------------------------


def _non_utf8_file(folder: Path, content: str) -> str:
    """Create ``caf\\xe9.csv`` (a Latin-1 name) and return it as Python sees it."""
    folder.mkdir(parents=True, exist_ok=True)
    raw = os.path.join(os.fsencode(folder), b"caf\xe9.csv")
    with open(raw, "wb") as handle:
        handle.write(content.encode())
    return os.fsdecode(raw)


@pytest.mark.parametrize("given", ["files", "directory"])
def test_a_file_name_that_is_not_utf8_loads_beside_the_others(
    tmp_path: Path, warehouse: Path, given: str
) -> None:
    """Before: UnicodeEncodeError (surrogates not allowed) for the whole call, so the
    good file given with it was not loaded either."""
    folder = tmp_path / "in"
    odd = _non_utf8_file(folder, DAILY)
    good = folder / "good.csv"
    good.write_text(UCI)
    report = load_files(warehouse, [odd, good] if given == "files" else [folder])
    shown = str(folder / "caf\\xe9.csv")
    assert display_path(odd) == shown
    assert sorted(f.path for f in report.loaded) == sorted([shown, str(good)])
    assert not report.failed
    uci_lines = len(UCI.strip().splitlines()) - 1
    assert report.rows_loaded == DATA_LINES + uci_lines
    assert rows_of(
        warehouse,
        "select source_file, count(*) from raw.transactions group by 1 order by 1",
    ) == sorted([(shown, DATA_LINES), (str(good), uci_lines)])
    again = load_files(warehouse, [odd, good])
    assert sorted(again.skipped) == sorted([(shown, "unchanged"), (str(good), "unchanged")])


def test_a_bad_file_with_a_name_that_is_not_utf8_fails_in_one_printable_line(
    tmp_path: Path, warehouse: Path
) -> None:
    odd = _non_utf8_file(tmp_path / "in", "name,age\nbob,3\n")
    report = load_files(warehouse, [odd])
    [error] = report.failed
    message = str(error)
    message.encode("utf-8")  # printable on any UTF-8 stream: no lone surrogates
    assert message.startswith(str(tmp_path / "in" / "caf\\xe9.csv") + ": ")
    assert "\n" not in message


# 4. Mixed encodings: decided line by line --------------------------------------------

MIXED_LINES = [
    HEADER,
    "536365,85123A,CAFÉ CRÈME,6,2010-12-01 08:26:00,2.55,17850.0,United Kingdom",
    "536366,22633,GIFT VOUCHER £40.00,1,2010-12-01 08:28:00,40.0,17850.0,United Kingdom",
    "536367,22634,NAÏVE MUG,2,2010-12-01 08:30:00,1.25,13047.0,France",
]
LATIN1_LINE = "536368,22635,POUND £ SIGN,3,2010-12-01 08:31:00,0.85,13047.0,United Kingdom"


def _mixed_file(folder: Path, odd_codec: str, odd_line: str = LATIN1_LINE) -> Path:
    """A UTF-8 file with one line written in another codec."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"mixed-{odd_codec}.csv"
    body = "\n".join(MIXED_LINES).encode("utf-8") + b"\n" + odd_line.encode(odd_codec) + b"\n"
    path.write_bytes(body)
    return path


def test_a_utf8_file_with_one_latin1_line_keeps_its_utf8_text(
    tmp_path: Path, warehouse: Path
) -> None:
    """Before: the whole file was read as cp1252 (``Â£40.00`` for ``£40.00``) and the
    encoding said ``cp1252``, with no warning."""
    path = _mixed_file(tmp_path, "latin-1")
    report = load_files(warehouse, [path])
    assert report.loaded[0].encoding == "utf-8 (1 line cp1252)"
    expected = [line.split(",")[2] for line in [*MIXED_LINES[1:], LATIN1_LINE]]
    assert [
        r[0] for r in rows_of(warehouse, "select Description from raw.transactions order by 1")
    ] == sorted(expected)
    assert rows_of(warehouse, "select encoding from raw.loaded_files") == [
        ("utf-8 (1 line cp1252)",)
    ]


def test_a_line_with_a_byte_cp1252_leaves_undefined_is_read_as_latin1(tmp_path: Path) -> None:
    odd = LATIN1_LINE.replace("POUND £ SIGN", "ODD \x81 BYTE")
    raw = split_file(_mixed_file(tmp_path, "latin-1", odd))
    assert raw.encoding == "utf-8 (1 line latin-1)"
    assert "ODD \x81 BYTE" in raw.records.column("Description").to_pylist()
    assert "CAFÉ CRÈME" in raw.records.column("Description").to_pylist()


def test_a_whole_cp1252_file_is_still_cp1252(tmp_path: Path) -> None:
    path = tmp_path / "kaggle.csv"
    path.write_bytes(("\n".join([*MIXED_LINES, LATIN1_LINE]) + "\n").encode("cp1252"))
    raw = split_file(path)
    assert raw.encoding == "cp1252"
    assert raw.records.column("Description").to_pylist()[0] == "CAFÉ CRÈME"


# 5. Compressed and non-CSV files: said, not silently skipped --------------------------


def test_a_gzip_file_loads_as_its_csv_and_counts_as_a_copy_of_it(
    tmp_path: Path, warehouse: Path
) -> None:
    """Before: 'gzip-compressed: not supported yet'. Now read through, and hashed
    decompressed, so the same lines packed and unpacked load once."""
    packed = tmp_path / "day.csv.gz"
    packed.write_bytes(gzip.compress(DAILY.encode()))
    report = load_files(warehouse, [packed])
    assert report.failed == [] and [f.layout for f in report.loaded] == ["daily"]
    assert report.rows_loaded == DATA_LINES
    plain = tmp_path / "day.csv"
    plain.write_text(DAILY)
    again = load_files(warehouse, [plain])
    assert again.loaded == []
    assert again.skipped == [(str(plain), f"same content already loaded from {packed}")]


def test_a_truncated_gzip_file_fails_in_one_line(tmp_path: Path, warehouse: Path) -> None:
    packed = tmp_path / "day.csv.gz"
    packed.write_bytes(gzip.compress(DAILY.encode())[:-12])
    report = load_files(warehouse, [packed])
    assert [str(e) for e in report.failed] == [
        f"{packed}: corrupt gzip file (Compressed file ended before the end-of-stream "
        "marker was reached)"
    ]
    assert rows_of(warehouse, "select count(*) from raw.transactions") == [(0,)]


def test_a_directory_lists_what_it_passes_over_and_why(tmp_path: Path, warehouse: Path) -> None:
    """Before: only *.csv files were seen; the rest vanished without a word."""
    folder = tmp_path / "drop"
    (folder / "sub").mkdir(parents=True)
    (folder / ".git").mkdir()
    (folder / ".git" / "config").write_text("[core]\n")
    (folder / "a.csv").write_text(DAILY)
    (folder / "sub" / "b.CSV").write_text(UCI)
    (folder / "c.csv.gz").write_bytes(gzip.compress(DAILY.encode()))
    (folder / "notes.txt").write_text("hello")
    (folder / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    (folder / ".hidden.csv").write_text(DAILY)
    (folder / "packed.csv").write_bytes(gzip.compress(UCI.encode()))  # a lie: gzip inside
    report = load_files(warehouse, [folder])
    # gzip is read by content (packed.csv too); a packed copy of a file is a copy.
    assert sorted(Path(f.path).relative_to(folder) for f in report.loaded) == [
        Path("a.csv"),
        Path("packed.csv"),
    ]
    copy = "same content already loaded from "
    assert sorted((str(Path(p).relative_to(folder)), why) for p, why in report.skipped) == [
        (".git", "hidden directory"),
        (".hidden.csv", "hidden file"),
        ("c.csv.gz", copy + str(folder / "a.csv")),
        ("logo.png", "not a .csv, .csv.gz or .parquet file"),
        ("notes.txt", "not a .csv, .csv.gz or .parquet file"),
        ("sub/b.CSV", copy + str(folder / "packed.csv")),
    ]
    assert report.failed == []
    assert report.summary().startswith("files loaded: 2, skipped: 6, failed: 0;")


# 6. Synthetic demo data is marked, and removed by the first real load -----------------


def _demo(folder: Path, seed: int = 1):
    return write_demo_data(folder, customers=40, seed=seed, layout="daily")


def _lines_of(path: Path) -> int:
    with path.open("rb") as handle:
        return sum(1 for _ in handle) - 1


def test_demo_files_are_marked_synthetic(tmp_path: Path, warehouse: Path) -> None:
    demo = _demo(tmp_path / "demo")
    assert (demo.path.parent / SYNTHETIC_MARKER).is_file()
    report = load_files(warehouse, [demo.path.parent])
    assert [(f.path, f.synthetic) for f in report.loaded] == [(str(demo.path), True)]
    assert report.skipped == []  # the manifest is the loader's own, not a data file
    assert rows_of(warehouse, "select source_file, is_synthetic from raw.loaded_files") == [
        (str(demo.path), True)
    ]
    # The mark follows the content, not the folder: a real file dropped beside it is real.
    real = demo.path.parent / "real.csv"
    real.write_text(DAILY)
    assert [f.synthetic for f in load_files(warehouse, [real]).loaded] == [False]


def test_the_first_real_load_removes_synthetic_data_in_the_same_transaction(
    tmp_path: Path, warehouse: Path
) -> None:
    demo = _demo(tmp_path / "demo")
    other = _demo(tmp_path / "demo2", seed=2)
    load_files(warehouse, [demo.path, other.path])
    raw_lines = _lines_of(demo.path) + _lines_of(other.path)
    assert rows_of(
        warehouse,
        "select (select count(*) from raw.transactions) + "
        "(select count(*) from raw.quarantined_rows)",
    ) == [(raw_lines,)]
    real = tmp_path / "real" / "day.csv"
    real.parent.mkdir()
    real.write_text(DAILY)
    report = load_files(warehouse, [real])
    assert report.synthetic_note() == (
        "removed synthetic demo data (2 files) before loading real data"
    )
    assert sorted(report.removed_synthetic) == sorted([str(demo.path), str(other.path)])
    state = raw_state(warehouse)
    assert {r[-3] for r in state["transactions"]} == {str(real)}  # source_file
    assert state["quarantined_rows"] == []
    assert [(r[0], r[-3]) for r in state["loaded_files"]] == [(str(real), False)]  # synthetic
    assert len(state["transactions"]) == DATA_LINES
    # Demo data is not mixed back in later.
    again = load_files(warehouse, [demo.path])
    assert again.loaded == [] and again.removed_synthetic == []
    assert again.skipped == [
        (str(demo.path), "synthetic demo data: not loaded into a warehouse that holds real data")
    ]
    assert raw_state(warehouse) == state


def test_a_failed_real_file_removes_nothing(tmp_path: Path, warehouse: Path) -> None:
    demo = _demo(tmp_path / "demo")
    load_files(warehouse, [demo.path])
    before = raw_state(warehouse)
    bad = tmp_path / "bad.csv"
    bad.write_text("name,age\nbob,3\n")
    report = load_files(warehouse, [bad])
    assert len(report.failed) == 1 and report.removed_synthetic == []
    assert raw_state(warehouse) == before


def test_an_older_warehouse_gains_is_synthetic_false(tmp_path: Path, write_file) -> None:
    """A warehouse made before the column existed (its DDL as it was)."""
    path = tmp_path / "old.duckdb"
    con = duckdb.connect(str(path), config=DUCKDB_CONFIG)
    con.execute(
        """
        create schema raw;
        create table raw.loaded_files (
            source_file varchar primary key, file_sha256 varchar not null,
            layout varchar not null, encoding varchar not null, raw_lines bigint not null,
            loaded_rows bigint not null, quarantined_rows bigint not null,
            loaded_at timestamp not null
        );
        insert into raw.loaded_files values ('/old.csv', 'abc', 'daily', 'utf-8', 0, 0, 0, now());
        """
    )
    con.close()
    load_files(path, [write_file("day.csv", DAILY)])
    assert rows_of(path, "select source_file, is_synthetic from raw.loaded_files order by 1") == [
        ("/old.csv", False),
        (str(tmp_path / "in" / "day.csv"), False),
    ]


# 7. A failure while writing leaves raw.* exactly as it was ----------------------------


@pytest.mark.parametrize("exception", [RuntimeError, KeyboardInterrupt])
def test_a_failure_after_the_delete_rolls_everything_back(
    tmp_path: Path, warehouse: Path, write_file, monkeypatch: pytest.MonkeyPatch, exception
) -> None:
    day = write_file("day.csv", DAILY)
    other = write_file("other.csv", UCI)
    demo = _demo(tmp_path / "demo")
    load_files(warehouse, [demo.path])  # synthetic rows the real load would remove
    before = raw_state(warehouse)
    lines = DAILY.splitlines()
    day.write_text("\n".join([lines[0], lines[1], lines[2].replace(",6,", ",six,")]) + "\n")
    seen: dict[str, int] = {}
    original = warehouse_module._record_files

    def fail_after_the_delete(con, rows):
        # Inside the transaction the old rows of day.csv and the demo rows are gone...
        seen["demo_rows"] = con.execute(
            "select count(*) from raw.transactions where source_file = ?", [str(demo.path)]
        ).fetchone()[0]
        original(con, rows)
        raise exception("disk full")

    monkeypatch.setattr(warehouse_module, "_record_files", fail_after_the_delete)
    with pytest.raises(exception, match="disk full"):
        load_files(warehouse, [day, other])
    assert seen == {"demo_rows": 0}
    assert raw_state(warehouse) == before  # ...and after the failure, all are back
    monkeypatch.undo()
    report = load_files(warehouse, [day, other])  # and the warehouse is usable
    uci_lines = len(UCI.strip().splitlines()) - 1
    assert (report.rows_loaded, report.rows_quarantined) == (1 + uci_lines, 1)
    assert report.removed_synthetic == [str(demo.path)]


# 8. Any size in bounded memory: batches and chunks change nothing ---------------------


def _odd_files(folder: Path) -> dict[str, Path]:
    """Files with every quirk the splitter handles, long enough for many small chunks."""
    folder.mkdir(parents=True, exist_ok=True)
    day = "2010-12-01 08:26:00"
    good = [
        f"5{n:05},85123A,HEART T-LIGHT {n},6,{day},2.55,17850.0,United Kingdom" for n in range(300)
    ]
    files = {
        "daily": "\n".join([HEADER, *good]) + "\n",
        # Records spanning lines (one across many chunks), blank lines, bad fields and
        # values, a CRLF line: the csv-module path from the first odd chunk on.
        "messy": "\n".join(
            [
                HEADER,
                *good[:120],
                '536366,22633,"HAND WARMER\nUNION JACK",6,2010-12-01 08:28:00,1.85,17850.0,UK',
                "",
                "536370,22728,ALARM CLOCK,24,2010-12-01 08:45:00,3.75,12583.0",
                '536371,22086,"' + "LONG\n" * 200 + '",80,2010-12-01 09:00:00,2.55,abc,UK',
                "536372,22632,HAND WARMER,six,2010-12-01 09:01:00,1.85,17850.0,UK\r",
                *good[120:],
            ]
        )
        + "\n",
        # The first three dates are UCI's, the next 297 daily: the layout is the first
        # 100 records' majority (daily), although the first chunks hold UCI dates only.
        "votes": "\n".join(
            [
                HEADER,
                *(line.replace(day, "12/1/2010 8:26") for line in good[:3]),
                *good[3:],
            ]
        )
        + "\n",
    }
    paths = {name: folder / f"{name}.csv" for name in files}
    for name, text in files.items():
        paths[name].write_text(text)
    # cp1252 lines in the first chunks, UTF-8 beyond ASCII only near the end: the label
    # counts every cp1252 line of the file.
    kaggle = folder / "kaggle.csv"
    kaggle.write_bytes(
        (HEADER + ",\n").encode()
        + b"".join(
            f"5{n:05},22635,POUND \xa3 {n},3,01-Dec-10,0.85,13047,United Kingdom,\n".encode(
                "latin-1"
            )
            for n in range(40)
        )
        + b"".join(
            f"6{n:05},22636,PLAIN {n},3,01-Dec-10,0.85,13047,United Kingdom,\n".encode()
            for n in range(200)
        )
        + "700000,22637,CAFÉ CRÈME,1,01-Dec-10,1.0,13047,France,\n".encode()
    )
    paths["kaggle"] = kaggle
    bom = folder / "bom.csv"
    bom.write_bytes(codecs_bom() + files["daily"].replace("\n", "\r\n").encode())
    paths["bom"] = bom
    # A NUL byte past the binary probe: the csv module stops there, the rest is one
    # quarantined record.
    nul = folder / "nul.csv"
    filler = "\n".join(good * 3)
    assert len(filler) > 65536
    nul.write_bytes((HEADER + "\n" + filler + "\n").encode() + b"5\x00,x\n" + good[0].encode())
    paths["nul"] = nul
    return paths


def codecs_bom() -> bytes:
    return b"\xef\xbb\xbf"


def test_tiny_batches_and_chunks_load_exactly_what_one_read_loads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file larger than the chunk size is split at line ends, chunk by chunk, and the
    files are typed and inserted batch by batch: every row, line number, reason, layout,
    encoding and count must be what the same files give read whole at once."""
    paths = _odd_files(tmp_path / "in")
    whole = tmp_path / "whole.duckdb"
    load_files(whole, [tmp_path / "in"])
    monkeypatch.setattr(warehouse_module, "CHUNK_BYTES", 512)  # the long record spans 2
    monkeypatch.setattr(warehouse_module, "BATCH_BYTES", 4096)
    monkeypatch.setattr(ingest_module, "_EXACT_PIECE_ROWS", 7)
    chunked = tmp_path / "chunked.duckdb"
    report = load_files(chunked, [tmp_path / "in"])
    assert not report.failed
    assert raw_state(chunked) == raw_state(whole)
    # And what that is, from the inputs:
    files = {
        Path(r[0]).stem: r[2:]
        for r in rows_of(chunked, "select * exclude (loaded_at) from raw.loaded_files")
    }
    assert files["votes"][:2] == ("daily", "utf-8")
    assert files["kaggle"][:2] == ("kaggle", "utf-8 (40 lines cp1252)")
    assert files["bom"][:2] == ("daily", "utf-8")
    for name, path in paths.items():
        raw_lines, loaded, quarantined = files[name][2:5]
        assert raw_lines == loaded + quarantined
        if name != "nul":  # the csv module stops at the NUL: one record from there on
            assert raw_lines == _records(path), name
    assert rows_of(
        chunked,
        "select source_line, reason from raw.quarantined_rows where source_file = ? order by 1",
        [str(paths["votes"])],
    ) == [(n, "bad InvoiceDate '12/1/2010 8:26' (expected YYYY-MM-DD HH:MM:SS)") for n in (2, 3, 4)]
    messy = rows_of(
        chunked,
        "select source_line, reason from raw.quarantined_rows where source_file = ? order by 1",
        [str(paths["messy"])],
    )
    assert messy == [
        (124, "blank line"),
        (125, "expected 8 fields, found 7"),
        (126, "bad CustomerID 'abc'"),
        (327, "bad Quantity 'six'"),
    ]
    assert rows_of(
        chunked,
        "select min(source_line), max(source_line) from raw.transactions where source_file = ?",
        [str(paths["messy"])],
    ) == [(2, 327 + len(paths["messy"].read_text().splitlines()[327:]))]


def _records(path: Path) -> int:
    """Records after the header as Python's csv module reads the file: the independent
    count (every line of these files decodes the same in cp1252 or UTF-8 alike)."""
    import csv

    data = path.read_bytes().removeprefix(codecs_bom())
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("cp1252")
    return sum(1 for _ in csv.reader(io.StringIO(text, newline=""))) - 1
