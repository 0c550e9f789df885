"""A daily run costs a day, and agrees with a full rebuild.

The first run on a warehouse fits everything. When the source then gains one daily
file, ``insiders run`` loads just that file, builds dbt's line marts incrementally,
scores the customers with the saved clustering model and the saved fits of the
rolling-origin evaluation (same month: no refit), and refreshes the answers. A full
rebuild of a copy of that warehouse (``--full-refresh``, every dbt model from raw,
``--no-refit``: the same saved models) must give the same marts, row for row.
"""

from __future__ import annotations

import contextlib
import csv
import io
import shutil
from datetime import date
from pathlib import Path

import pytest

from models_py.demo_data import write_demo_data
from orchestration.cli import main
from tests.conftest import environ_restored, query

# Columns that name the run that wrote a row, or when: the rest must be equal.
# Tables that keep every run's rows as history.
HISTORY = frozenset({("ml", "cluster_centroids")})
RUN_COLUMNS = frozenset({"run_id", "created_at", "loaded_at", "published_at", "snapshot_id"})


def _daily_files(tmp: Path) -> list[Path]:
    """Synthetic data (daily layout) split into one file per invoice day, in order; a
    line whose date does not parse stays with the day before it (the bad lines)."""
    demo = write_demo_data(tmp / "demo", customers=400, seed=7, layout="daily")
    text = demo.path.read_text(encoding="utf-8")
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader)
    days: dict[str, list[list[str]]] = {}
    day = "0000-00-00"
    for row in reader:
        stamp = row[4] if len(row) > 4 else ""
        with contextlib.suppress(ValueError):  # a bad line stays with the day before
            day = date.fromisoformat(stamp[:10]).isoformat()
        days.setdefault(day, []).append(row)
    folder = tmp / "by-day"
    folder.mkdir()
    files = []
    for name, rows in sorted(days.items()):
        buffer = io.StringIO(newline="")
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
        path = folder / f"{name}.csv"
        path.write_text(buffer.getvalue(), encoding="utf-8")
        files.append(path)
    return files


def _tables(warehouse: Path) -> list[tuple[str, str]]:
    return [
        (schema, table)
        for schema, table in query(
            warehouse,
            """
            select table_schema, table_name from information_schema.tables
            where table_schema in ('marts', 'insiders', 'ml') and table_type = 'BASE TABLE'
            order by 1, 2
            """,
        )
        if (schema, table) != ("ml", "segmentation_runs")  # one row per run, by design
    ]


def _content(warehouse: Path, schema: str, table: str) -> list[tuple]:
    columns = [
        name
        for (name,) in query(
            warehouse,
            "select column_name from information_schema.columns "
            "where table_schema = ? and table_name = ? order by ordinal_position",
            [schema, table],
        )
        if name not in RUN_COLUMNS
    ]
    listed = ", ".join(f'"{c}"' for c in columns)
    latest = ""
    if (schema, table) in HISTORY:  # one set of rows per run: compare the last run's
        latest = (
            " where run_id = (select run_id from ml.segmentation_runs "
            "order by created_at desc limit 1)"
        )
    rows = query(warehouse, f'select {listed} from "{schema}"."{table}"{latest}')
    # Doubles to 12 significant digits: DuckDB's parallel aggregates may add the same
    # doubles in another order from one build to the next (the last bits of a mean).
    return sorted(
        (tuple(float(f"{v:.12g}") if isinstance(v, float) else v for v in row) for row in rows),
        key=repr,
    )


def test_a_daily_run_loads_one_file_scores_and_equals_a_full_rebuild(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = _daily_files(tmp_path)
    last = files[-1]
    held_back = tmp_path / last.name
    shutil.move(last, held_back)
    assert files[-2].name[:7] == last.name[:7], "the new day must be in the same month"
    source = last.parent
    warehouse = tmp_path / "daily" / "warehouse.duckdb"

    with environ_restored():
        assert main(["run", "--warehouse", str(warehouse), "--source", str(source)]) == 0
    first = capsys.readouterr().out
    assert "(fitted)" in first, first

    shutil.move(held_back, last)
    with environ_restored():
        assert main(["run", "--warehouse", str(warehouse), "--source", str(source)]) == 0
    daily = capsys.readouterr().out
    assert "from 1 new files" in daily, daily
    assert "scored with the saved model" in daily, daily
    assert "scored with the saved fits" in daily, daily
    assert len(daily.splitlines()) <= 60

    rebuilt_folder = tmp_path / "rebuilt"
    shutil.copytree(warehouse.parent, rebuilt_folder, symlinks=True)
    rebuilt = rebuilt_folder / warehouse.name
    with environ_restored():
        rc = main(
            [
                "run",
                "--warehouse",
                str(rebuilt),
                "--source",
                str(source),
                "--full-refresh",
                "--no-refit",
            ]
        )
    assert rc == 0
    assert "from 0 new files" in capsys.readouterr().out

    tables = _tables(warehouse)
    assert ("marts", "fct_transactions") in tables and ("insiders", "answers") in tables
    assert tables == _tables(rebuilt)
    different = [
        f"{schema}.{table}"
        for schema, table in tables
        if _content(warehouse, schema, table) != _content(rebuilt, schema, table)
    ]
    assert not different, f"a daily run and a full rebuild differ in: {', '.join(different)}"
