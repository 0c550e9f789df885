"""Loading files into the warehouse: idempotency, replacement, directories, the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestration.cli import main
from orchestration.warehouse import load_files
from tests.conftest import query, scalar
from tests.test_ingest import DAILY, UCI

COUNTS = """
select
    (select count(*) from raw.transactions),
    (select count(*) from raw.quarantined_rows),
    (select count(*) from raw.loaded_files),
    (select coalesce(sum(Quantity * UnitPrice), 0) from raw.transactions)
"""


def counts(warehouse: Path) -> tuple:
    return query(warehouse, COUNTS)[0]


def test_loading_the_same_file_twice_changes_nothing(write_file, warehouse):
    path = write_file("day.csv", DAILY)
    first = load_files(warehouse, [path])
    assert (len(first.loaded), first.rows_loaded) == (1, 4)
    before = counts(warehouse)
    second = load_files(warehouse, [path])
    assert second.loaded == [] and second.skipped == [(str(path), "unchanged")]
    assert counts(warehouse) == before


def test_a_changed_file_replaces_its_own_rows_only(write_file, warehouse):
    day = write_file("day.csv", DAILY)
    other = write_file("other.csv", UCI)
    load_files(warehouse, [day, other])
    assert counts(warehouse)[:3] == (8, 0, 2)
    # Same file, one line dropped and one line broken.
    lines = DAILY.splitlines()
    day.write_text("\n".join([lines[0], lines[1], lines[2].replace(",6,", ",six,")]) + "\n")
    report = load_files(warehouse, [day, other])
    assert [f.path for f in report.loaded] == [str(day)]
    assert (report.rows_loaded, report.rows_quarantined) == (1, 1)
    assert counts(warehouse)[:3] == (5, 1, 2)
    assert (
        scalar(
            warehouse, "select raw_lines from raw.loaded_files where source_file = ?", [str(day)]
        )
        == 2
    )
    assert (
        scalar(
            warehouse, "select count(*) from raw.transactions where source_file = ?", [str(other)]
        )
        == 4
    )


def test_a_directory_loads_only_new_or_changed_files(tmp_path, warehouse):
    folder = tmp_path / "drop"
    folder.mkdir()
    (folder / "a.csv").write_text(DAILY)
    assert len(load_files(warehouse, [folder]).loaded) == 1
    (folder / "b.csv").write_text(UCI)
    (folder / ".hidden.csv").write_text("not,a,transaction,file\n")
    (folder / "notes.txt").write_text("ignored")
    report = load_files(warehouse, [folder])
    assert [Path(f.path).name for f in report.loaded] == ["b.csv"]
    # Files passed over by design are listed with the reason (rc stays 0).
    assert sorted((Path(p).name, why) for p, why in report.skipped) == [
        (".hidden.csv", "hidden file"),
        ("a.csv", "unchanged"),
        ("notes.txt", "not a .csv, .csv.gz or .parquet file"),
    ]
    assert not report.failed


def test_a_copy_of_a_loaded_file_is_not_loaded_twice(write_file, warehouse):
    original = write_file("day.csv", DAILY)
    copy = write_file("copy/day.csv", DAILY)
    report = load_files(warehouse, [original, copy])
    assert report.rows_loaded == 4
    assert report.skipped == [(str(copy), f"same content already loaded from {original}")]


def test_every_loaded_row_keeps_its_file_and_line(write_file, warehouse):
    path = write_file("day.csv", DAILY)
    load_files(warehouse, [path])
    rows = query(
        warehouse, "select source_file, source_line from raw.transactions order by source_line"
    )
    assert rows == [(str(path), n) for n in (2, 3, 4, 5)]


def test_cli_reports_counts_and_a_bad_file_fails_alone(write_file, warehouse, capsys):
    good = write_file("good.csv", DAILY)
    lines = DAILY.splitlines()
    messy = write_file("messy.csv", "\n".join([*lines, "1,2,3"]) + "\n")
    bad = write_file("bad.csv", "name,age\nbob,3\n")
    code = main(["load", "--warehouse", str(warehouse), str(good), str(messy), str(bad)])
    out, err = capsys.readouterr()
    assert code == 1
    assert err.strip() == (
        f"insiders: error: {bad}: not an Online Retail transaction file: missing columns "
        "InvoiceNo, StockCode, Description, Quantity, InvoiceDate, UnitPrice, CustomerID, "
        "Country; unexpected columns 'name', 'age' (and no preset fits the header: give a "
        "mapping with --mapping)"
    )
    assert "files loaded: 2, skipped: 0, failed: 1; rows loaded: 8, rows quarantined: 1" in out
    assert (
        scalar(warehouse, "select count(*) from raw.loaded_files where source_file = ?", [str(bad)])
        == 0
    )


def test_missing_path_is_an_error_naming_it(tmp_path, warehouse, capsys):
    missing = tmp_path / "nope.csv"
    assert main(["load", "--warehouse", str(warehouse), str(missing)]) == 1
    assert f"{missing}: no such file or directory" in capsys.readouterr().err


def test_warehouse_location_comes_from_env_when_not_given(
    write_file, tmp_path, monkeypatch: pytest.MonkeyPatch
):
    target = tmp_path / "from-env.duckdb"
    monkeypatch.setenv("INSIDERS_WAREHOUSE", str(target))
    assert main(["load", str(write_file("day.csv", DAILY))]) == 0
    assert scalar(target, "select count(*) from raw.transactions") == 4


def test_a_warehouse_named_like_a_schema_is_refused(tmp_path, capsys):
    assert main(["build", "--warehouse", str(tmp_path / "insiders.duckdb")]) == 2
    assert "may not be named like a schema" in capsys.readouterr().err


def test_a_path_given_twice_is_one_file(write_file, warehouse, capsys):
    """`insiders load f.csv f.csv` and `insiders load dir dir/f.csv` once multiplied the
    rows (a 4-line file loaded as 16 rows) and later loads skipped the file as unchanged."""
    path = write_file("day.csv", DAILY)
    lines = len(DAILY.strip().splitlines()) - 1  # the header is no row
    assert main(["load", "--warehouse", str(warehouse), str(path), str(path)]) == 0
    assert "rows loaded: 4," in capsys.readouterr().out
    assert counts(warehouse)[0] == lines == 4
    other = write_file("other.csv", UCI)
    report = load_files(warehouse, [path.parent, other, path.parent / "." / other.name])
    assert [f.path for f in report.loaded] == [str(other)]
    assert report.skipped == [(str(path), "unchanged")]
    assert (
        scalar(
            warehouse, "select count(*) from raw.transactions where source_file = ?", [str(other)]
        )
        == report.rows_loaded
    )
