"""Tests of ``bench/scale.py --target spark``: the run's environment, the tables of a
DuckDB and a Spark run side by side, and that the process tree it samples holds the
JVM of a real local Spark session (one session start, about 10 s), and that a run
stopped by ``--timeout`` leaves no JVM behind (25 s of a Spark run).

The whole graph on Spark is not run here (minutes): ``tests/test_spark_target.py``
runs it; this checks what the benchmark adds around it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.scale import (
    BIN,
    CLEARED_ENV,
    RunFigures,
    Stage,
    markdown_table,
    ratio_table,
    run_env,
    run_graph,
    spark_settings,
    tree_rss,
)

GIB = 1024**3
REPO_ROOT = Path(__file__).resolve().parent.parent


def test_a_spark_run_gets_a_fresh_catalog_and_keeps_the_settings_measured(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The variables naming another catalog or a cluster are dropped for Spark only;
    the master and driver memory (what is measured) pass; DuckDB's env is as before."""
    monkeypatch.setenv("INSIDERS_SPARK_WAREHOUSE", "/elsewhere/tables")
    monkeypatch.setenv("INSIDERS_SPARK_METASTORE", "/elsewhere/metastore")
    monkeypatch.setenv("INSIDERS_SPARK_REMOTE", "sc://cluster:15002")
    monkeypatch.setenv("INSIDERS_SPARK_DRIVER_MEMORY", "3g")
    monkeypatch.setenv("INSIDERS_WAREHOUSE", "/elsewhere/w.duckdb")
    env = run_env("spark", None, None)
    for key in ("INSIDERS_SPARK_WAREHOUSE", "INSIDERS_SPARK_METASTORE", "INSIDERS_SPARK_REMOTE"):
        assert key not in env
    assert env["INSIDERS_SPARK_DRIVER_MEMORY"] == "3g"
    assert not set(CLEARED_ENV) & set(env)
    duck = run_env(None, None, None)
    assert duck["INSIDERS_SPARK_WAREHOUSE"] == "/elsewhere/tables"
    assert "INSIDERS_WAREHOUSE" not in duck

    settings = spark_settings()
    assert settings["driver_memory"] == "3g"
    monkeypatch.delenv("INSIDERS_SPARK_MASTER", raising=False)
    assert spark_settings()["master"] == "local[2]"
    assert settings["java"].startswith(("openjdk", "java"))


def _run(target: str, factor: int, seconds: list[float], peaks: list[float]) -> RunFigures:
    names = ["startup", "raw_transactions", "insiders_dbt_assets", "publish"]
    stages = [
        Stage(name, s, int(p * GIB)) for name, s, p in zip(names, seconds, peaks, strict=True)
    ]
    run = RunFigures(
        factor, 541_909 * factor, f"/d/{factor}x", 0.0, False, 0, sum(seconds),
        int(max(peaks) * GIB), 0, 10, stages,
    )  # fmt: skip
    run.target = target
    return run


def test_duckdb_and_spark_runs_side_by_side_with_their_ratio() -> None:
    duck = _run("duckdb", 1, [2.0, 1.0, 4.0, 1.0], [0.3, 0.6, 0.8, 0.9])
    spark_a = _run("spark", 1, [10.0, 30.0, 60.0, 2.0], [1.0, 2.0, 2.5, 2.2])
    spark_b = _run("spark", 1, [12.0, 50.0, 80.0, 4.0], [1.1, 2.1, 2.4, 2.3])
    table = markdown_table([duck, spark_a, spark_b]).splitlines()
    assert table[0].startswith("| stage | duckdb 1x s | duckdb 1x peak GiB | spark 1x #1 s")
    assert table[2] == "| startup | 2.0 | 0.30 | 10.0 | 1.00 | 12.0 | 1.10 |"

    rows = {line.split(" | ")[0]: line.split(" | ")[1:] for line in ratio_table(
        [duck, spark_a, spark_b]).splitlines()}  # fmt: skip
    header = next(key for key in rows if key.startswith("| 1x: stage"))
    assert rows[header][:3] == ["DuckDB s (n=1)", "Spark s (n=2)", "Spark/DuckDB"]
    # load: (30 + 50) / 2 = 40 s on Spark against 1 s: 40x; peaks the larger run's.
    assert rows["| load"] == ["1.0", "40.0", "40.0", "0.60", "2.10 |"]
    # total: DuckDB 8 s; Spark (102 + 146) / 2 = 124 s: 15.5x.
    assert rows["| **total**"] == ["8.0", "124.0", "15.5", "0.90", "2.50 |"]
    # No PostgreSQL run: no PostgreSQL table.
    assert "PG/DuckDB" not in ratio_table([duck, spark_a])


def _descendants(root: int) -> dict[int, str]:
    """pid -> command name of every descendant of ``root``."""
    parents, names = {}, {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                stat = Path(f"/proc/{entry.name}/stat").read_text()
            except OSError:
                continue
            pid = int(entry.name)
            names[pid] = stat[stat.index("(") + 1 : stat.rindex(")")]
            parents[pid] = int(stat[stat.rindex(")") + 2 :].split()[1])
    found, todo = {}, [root]
    while todo:
        current = todo.pop()
        for pid, parent in parents.items():
            if parent == current:
                found[pid] = names[pid]
                todo.append(pid)
    return found


def _vm_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


SESSION_SCRIPT = """
import sys
from pathlib import Path
from orchestration.spark import SparkWarehouse, session
spark = session(SparkWarehouse(Path(sys.argv[1])))
spark.range(1000).selectExpr("sum(id)").collect()
print("ready", flush=True)
sys.stdin.readline()
"""


def test_the_sampled_tree_holds_the_jvm_of_a_local_session(tmp_path: Path) -> None:
    """A process that starts the local session has the JVM among its descendants, and
    the RSS the benchmark samples for it counts the JVM's (read apart from /proc's
    status file, not the stat file the sampler reads)."""
    process = subprocess.Popen(
        [sys.executable, "-c", SESSION_SCRIPT, str(tmp_path / "spark")],
        cwd=REPO_ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = process.stdout.readline()
        assert line.strip() == "ready", f"the session did not start: {line!r}"
        children = _descendants(process.pid)
        java = [pid for pid, name in children.items() if name == "java"]
        assert len(java) == 1, children
        own, jvm = _vm_rss(process.pid), _vm_rss(java[0])
        assert jvm > 100 * 1024**2  # a started JVM, not a launcher script
        assert tree_rss(process.pid) >= 0.9 * (own + jvm)
    finally:
        process.stdin.close()
        process.wait(timeout=120)


def _processes_naming(text: str) -> list[int]:
    """Live processes whose command line holds ``text``."""
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                cmdline = Path(f"/proc/{entry.name}/cmdline").read_bytes()
            except OSError:
                continue
            if text.encode() in cmdline:
                found.append(int(entry.name))
    return found


def test_a_run_stopped_by_the_timeout_leaves_no_jvm_behind(tmp_path: Path) -> None:
    """``--timeout``: the run is stopped when its time is up, its last stage is named
    ``stopped`` and lasts until then, and neither the ``insiders`` process nor the JVM
    it started (found by the run's folder in its command line) is left running."""
    data = tmp_path / "demo"
    subprocess.run(
        [str(BIN / "insiders"), "demo-data", str(data), "--customers", "60"],
        check=True,
        capture_output=True,
    )
    work = tmp_path / "work"
    work.mkdir()
    code, wall, stages, peak, *_ = run_graph(1, data, work, None, False, "spark", timeout=25.0)
    assert code != 0
    assert stages[-1].name == "stopped" and stages[-1].failed
    assert wall == pytest.approx(25.0, abs=1.0)
    assert sum(stage.seconds for stage in stages) == pytest.approx(wall, abs=0.01)
    # The JVM had started (its log is opened when it starts) and counted in the peak.
    assert (work / "warehouse" / "spark" / "logs" / "spark.log").is_file()
    assert peak > 300 * 1024**2
    assert _processes_naming(str(work)) == []
