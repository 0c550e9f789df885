"""Tests of ``bench/scale.py --target postgres`` and ``bench/pg_server.py`` on a real
PostgreSQL server (the PG* variables', else the throwaway one of ``.ci/postgres``).

The last test runs the whole graph on both targets, about a minute.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from bench.pg_server import (
    ServerSampler,
    database_exists,
    drop_database,
    peaks,
    scratch_database,
    server_settings,
)
from bench.scale import (
    RunFigures,
    Stage,
    load_runs,
    main,
    markdown_table,
    ratio_table,
)
from tests.postgres_server import server_env

GIB = 1024**3


@pytest.fixture(scope="module")
def pg_env() -> Iterator[dict[str, str]]:
    """The server's PG* variables, set in the environment for the module."""
    env = server_env()
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    try:
        yield env
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def admin() -> psycopg.Connection:
    return psycopg.connect("", autocommit=True)


def vm_rss(pid: int) -> int:
    """RSS of ``pid`` read from /proc/<pid>/status (not smaps_rollup, which the sampler
    reads), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


def test_scratch_database_is_dropped_with_its_sessions_still_connected(pg_env) -> None:
    with scratch_database("insiders_bench_test") as name:
        assert name.startswith("insiders_bench_test_")
        # A session the run left open (a dbt thread, a step) must not stop the drop.
        left_open = psycopg.connect("", dbname=name, autocommit=True)
        with admin() as con:
            assert database_exists(con, name)
    with admin() as con:
        assert not database_exists(con, name)
    assert left_open.closed or left_open.broken or _dead(left_open)


def _dead(con: psycopg.Connection) -> bool:
    try:
        con.execute("select 1")
    except psycopg.OperationalError:
        return True
    return False


def test_drop_of_a_missing_database_is_one_attempt(pg_env) -> None:
    with admin() as con:
        assert drop_database(con, "insiders_bench_never_created_0") == 1


def test_sampler_counts_the_databases_backends_and_the_whole_server(pg_env) -> None:
    with scratch_database("insiders_bench_test") as name:
        sessions = [psycopg.connect("", dbname=name, autocommit=True) for _ in range(2)]
        other = psycopg.connect("", autocommit=True)  # another database: not a backend of it
        try:
            pids = [int(s.execute("select pg_backend_pid()").fetchone()[0]) for s in sessions]
            sampler = ServerSampler(name)
            assert sampler.available, "the server's processes are not readable here"
            sample = sampler.sample()
            sampler.stop()
            assert sample.backends == 2
            expected = sum(vm_rss(pid) for pid in pids)
            # Two readings of the same idle processes, moments apart.
            assert abs(sample.backends_rss - expected) <= 0.2 * expected
            assert 0 < sample.backends_pss <= sample.backends_rss
            # The whole server: more than the two backends (the postmaster, checkpointer,
            # the other session, ...) and at least its shared buffers touched once.
            assert sample.server_pss > sample.backends_pss
        finally:
            for con in [*sessions, other]:
                con.close()


def test_sampler_thread_samples_until_stopped(pg_env) -> None:
    with scratch_database("insiders_bench_test") as name, psycopg.connect("", dbname=name) as con:
        sampler = ServerSampler(name, interval=0.02).start()
        con.execute("select pg_sleep(0.3)")
        samples = sampler.stop()
    assert sampler.error == ""
    assert len(samples) >= 5
    assert all(s.backends == 1 for s in samples)
    moments = [s.moment for s in samples]
    assert moments == sorted(moments)
    found = peaks(samples, moments[0] - 1, moments[-1])
    assert found["server_backends_peak_bytes"] == max(s.backends_rss for s in samples)
    assert found["server_pss_peak_bytes"] == max(s.server_pss for s in samples)
    assert peaks([], 0, 1)["server_pss_peak_bytes"] is None


def test_server_settings_name_the_durability_settings(pg_env) -> None:
    with admin() as con:
        settings = server_settings(con)
        fsync = con.execute("show fsync").fetchone()[0]
    assert settings["fsync"] == fsync
    assert {"synchronous_commit", "full_page_writes", "shared_buffers"} <= set(settings)
    assert settings["shared_buffers"].endswith(("MiB", "GiB"))


def _run(target: str, factor: int, seconds: list[float], gib: float) -> RunFigures:
    names = ["startup", "raw_transactions", "publish"]
    stages = [Stage(n, s, int(gib * GIB)) for n, s in zip(names, seconds, strict=True)]
    run = RunFigures(
        factor, 100, "/d", 0.0, False, 0, sum(seconds), int(gib * GIB), 0, 3, stages
    )  # fmt: skip
    run.target = target
    if target == "postgres":
        for stage in stages:
            stage.server_backends_peak_bytes = GIB // 2
            stage.server_pss_peak_bytes = GIB // 4
        run.server_backends_peak_bytes, run.server_pss_peak_bytes = GIB // 2, GIB // 4
    return run


def test_duckdb_table_is_the_one_it_always_was() -> None:
    # Written by hand in the format of the benchmark before --target existed.
    expected = "\n".join(
        [
            "| stage | 1x s | 1x peak GiB | 10x s | 10x peak GiB |",
            "|:--|--:|--:|--:|--:|",
            "| startup | 1.0 | 1.00 | 3.0 | 2.00 |",
            "| load | 2.0 | 1.00 | 4.0 | 2.00 |",
            "| publish | 0.5 | 1.00 | 0.5 | 2.00 |",
            "| **total** | **3.5** | **1.00** | **7.5** | **2.00** |",
            "| lines | 100 | | 100 | |",
        ]
    )
    runs = [_run("duckdb", 1, [1.0, 2.0, 0.5], 1.0), _run("duckdb", 10, [3.0, 4.0, 0.5], 2.0)]
    assert markdown_table(runs) == expected
    assert ratio_table(runs) == ""


def test_postgres_columns_and_the_ratio_of_both_targets() -> None:
    runs = [
        _run("duckdb", 1, [1.0, 2.0, 1.0], 1.0),
        _run("duckdb", 1, [1.0, 4.0, 1.0], 1.0),
        _run("postgres", 1, [1.0, 9.0, 2.0], 0.5),
    ]
    table = markdown_table(runs).splitlines()
    assert table[0] == (
        "| stage | duckdb 1x #1 s | duckdb 1x #1 peak GiB | duckdb 1x #2 s | duckdb 1x #2 peak GiB"
        " | postgres 1x s | postgres 1x client GiB | postgres 1x backends GiB"
        " | postgres 1x server PSS GiB |"
    )
    assert table[1] == "|:--|" + "--:|" * 8
    assert table[3] == "| load | 2.0 | 1.00 | 4.0 | 1.00 | 9.0 | 0.50 | 0.50 | 0.25 |"
    assert table[-2] == (
        "| **total** | **4.0** | **1.00** | **6.0** | **1.00** | **12.0** | **0.50** | **0.50**"
        " | **0.25** |"
    )
    assert all(row.count("|") == 10 for row in table)  # every row has every cell
    ratios = ratio_table(runs).splitlines()
    assert ratios[0].startswith("| 1x: stage | DuckDB s (n=2) | PostgreSQL s (n=1) |")
    # DuckDB: the mean of the two runs (load 3.0 s, total 5.0 s); PostgreSQL 9.0 and 12.0;
    # the peaks: DuckDB's largest, PostgreSQL's client, backends and server.
    assert "| load | 3.0 | 9.0 | 3.00 | 1.00 | 0.50 | 0.50 | 0.25 |" in ratios
    assert ratios[-1] == "| **total** | 5.0 | 12.0 | 2.40 | 1.00 | 0.50 | 0.50 | 0.25 |"


def test_old_json_files_still_merge(tmp_path: Path) -> None:
    # A --json file of the benchmark before --target: no target nor server fields.
    old = {
        "factor": 1, "lines": 100, "data": "/d", "generate_seconds": 0.0, "generated": False,
        "returncode": 0, "total_seconds": 2.0, "peak_bytes": GIB, "largest_process_peak_bytes": 0,
        "samples": 3, "tail": "",
        "stages": [{"name": "startup", "seconds": 2.0, "peak_bytes": GIB}],
    }  # fmt: skip
    path = tmp_path / "old.json"
    path.write_text(json.dumps({"machine": {}, "runs": [old]}))
    (run,) = load_runs(path)
    assert run.target == "duckdb"
    assert run.stages[0].server_pss_peak_bytes is None


def test_whole_graph_on_postgres_in_a_database_of_its_own(
    pg_env, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--target postgres`` end to end on a small synthetic store: every stage gets the
    server's figures, and the run's database is gone afterwards."""
    source = tmp_path / "source"
    insiders = Path(sys.executable).parent / "insiders"
    subprocess.run(
        [str(insiders), "demo-data", str(source), "--customers", "150", "--layout", "daily"],
        check=True,
        capture_output=True,
        cwd=tmp_path,
    )
    figures = tmp_path / "pg.json"
    main(
        [
            "--target",
            "postgres",
            "--factors",
            "1",
            "--source",
            str(source),
            "--data-root",
            str(tmp_path / "scaled"),
            "--json",
            str(figures),
        ]
    )
    out = capsys.readouterr().out
    assert "fsync=" in out and "postgres 1x server PSS GiB" in out
    (run,) = load_runs(figures)
    assert run.returncode == 0, run.tail
    assert run.target == "postgres" and run.database.startswith("insiders_scale_1x_")
    assert run.server["fsync"] in {"on", "off"}
    steps = [stage.name for stage in run.stages]
    assert steps[0] == "startup" and steps[-1] == "publish"
    assert steps[1:-1] == [
        "load",
        "dbt-1",
        "clustering",
        "analytics",
        "dbt-2",
        "report",
        "snapshot",
    ]
    for stage in run.stages:
        assert stage.server_pss_peak_bytes and stage.server_pss_peak_bytes > 0, stage.name
        assert stage.server_backends_peak_bytes is not None, stage.name
    # The loader and dbt work in the run's database: its backends hold memory then.
    load = next(s for s in run.stages if s.name == "load")
    assert load.server_backends_peak_bytes and load.server_backends_peak_bytes > 0
    assert len(run.load_average) == 2
    with admin() as con:
        assert not database_exists(con, run.database)
