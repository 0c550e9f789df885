"""One run at a time, all or nothing: the warehouse lock, the work copy, dead runs.

Real processes: ``insiders`` runs in subprocesses that hold, wait for or die holding
the warehouse; ``kill -9`` is a real SIGKILL of the run's process group.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import duckdb
import pytest

from orchestration import run_control
from orchestration.dbt_runner import dbt_target_path
from tests.conftest import REPO_ROOT

INSIDERS = [sys.executable, "-m", "orchestration.cli"]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _env(dagster_home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INSIDERS_")}
    env["DAGSTER_HOME"] = str(dagster_home)
    return env


def _insiders(*args: str, env: dict[str, str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*INSIDERS, *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True, **kwargs
    )


def _hold_lock(warehouse: Path, owner: str) -> subprocess.Popen:
    """Another process that holds the warehouse lock until it is killed."""
    code = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        from orchestration.run_control import WarehouseLock
        WarehouseLock(Path({str(warehouse)!r}), {owner!r}).acquire()
        print("held", flush=True)
        time.sleep(600)
        """
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", code], cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    return holder


@pytest.fixture(scope="module")
def completed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A warehouse after one complete run of the demo data, with Dagster's storage."""
    from models_py.demo_data import write_demo_data

    root = tmp_path_factory.mktemp("run_control")
    source = root / "data"
    write_demo_data(source, customers=300, seed=7, layout="kaggle")
    home = root / "dagster"
    home.mkdir()
    shutil.copy(REPO_ROOT / ".dagster" / "dagster.yaml", home / "dagster.yaml")
    warehouse = root / "wh" / "insiders_warehouse.duckdb"
    done = _insiders("run", "--warehouse", str(warehouse), "--source", str(source), env=_env(home))
    assert done.returncode == 0, done.stderr[-3000:]
    return {"warehouse": warehouse, "source": source, "home": home}


def test_a_second_writer_waits_or_names_the_holder(tmp_path: Path) -> None:
    warehouse = tmp_path / "wh" / "insiders_warehouse.duckdb"
    data = tmp_path / "f.csv"
    data.write_text(
        "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n"
        "536365,85123A,MUG,6,12/1/2010 8:26,2.55,17850,United Kingdom\n"
    )
    holder = _hold_lock(warehouse, "a test holding the warehouse")
    try:
        env = _env(tmp_path / "dagster")
        busy = _insiders("load", "--no-wait", "--warehouse", str(warehouse), str(data), env=env)
        assert busy.returncode == 3
        lines = [line for line in busy.stderr.splitlines() if line.strip()]
        assert len(lines) == 1, busy.stderr
        assert "busy" in lines[0] and "a test holding the warehouse" in lines[0]
        assert f"pid {holder.pid}" in lines[0]

        waiting = subprocess.Popen(
            [*INSIDERS, "load", "--warehouse", str(warehouse), str(data)],
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(3)
        assert waiting.poll() is None, "the second writer did not wait"
    finally:
        holder.kill()
        holder.wait()
    out, err = waiting.communicate(timeout=120)
    assert waiting.returncode == 0, err
    assert "waiting for a test holding the warehouse" in out + err
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        assert con.execute("select count(*) from raw.transactions").fetchone()[0] == 1
    finally:
        con.close()


def test_a_killed_run_leaves_the_last_complete_warehouse(completed: dict[str, Path]) -> None:
    """kill -9 in the last dbt step: the warehouse is byte-for-byte the last complete
    run's (labels and marts from one run), and the next run neither waits for nor
    trips over the dead one."""
    warehouse, home = completed["warehouse"], completed["home"]
    before = _sha(warehouse)
    runs_before = _run_ids(warehouse)
    env = _env(home)
    log = dbt_target_path(warehouse) / "dbt.log"
    seen = log.stat().st_size if log.exists() else 0
    run = subprocess.Popen(
        [*INSIDERS, "run", "--warehouse", str(warehouse), "--definition", "rfm_champions"],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 300
        while not _last_dbt_step_running(log, seen):
            assert run.poll() is None, "the run ended before its last dbt step"
            assert time.monotonic() < deadline, "the last dbt step never started"
            time.sleep(0.2)
        time.sleep(1.0)
    finally:
        os.killpg(run.pid, signal.SIGKILL)
        run.wait()

    assert _sha(warehouse) == before
    assert _run_ids(warehouse) == runs_before

    stale = [run for run, status in _dagster_statuses(home).items() if status == "STARTED"]
    assert len(stale) == 1  # the killed run, as Dagster last heard of it
    _evaluate_dead_runs_sensor(home)
    assert _dagster_statuses(home)[stale[0]] == "FAILURE"

    again = _insiders("run", "--warehouse", str(warehouse), "--no-wait", env=env, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "STARTED" not in _dagster_statuses(home).values()


def test_a_reader_does_not_block_a_run(completed: dict[str, Path]) -> None:
    """A BI tool holding the warehouse open read-only keeps reading the run it opened;
    the run neither fails nor waits for it."""
    warehouse = completed["warehouse"]
    code = textwrap.dedent(
        f"""
        import duckdb, time
        con = duckdb.connect({str(warehouse)!r}, read_only=True)
        first = con.execute("select count(*) from ml.customer_segments").fetchone()[0]
        print("open", flush=True)
        time.sleep(90)
        """
    )
    reader = subprocess.Popen(
        [sys.executable, "-c", code], cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert reader.stdout is not None and reader.stdout.readline().strip() == "open"
        runs_before = _run_ids(warehouse)
        inode_before = warehouse.stat().st_ino
        done = _insiders(
            "build",
            "--no-wait",
            "--warehouse",
            str(warehouse),
            "--select",
            "kpis",
            env=_env(completed["home"]),
            timeout=600,
        )
        assert done.returncode == 0, done.stderr[-3000:]
    finally:
        reader.kill()
        reader.wait()
    assert _run_ids(warehouse) == runs_before  # a dbt-only build keeps the labels
    assert warehouse.stat().st_ino != inode_before  # its result was published meanwhile


def _run_ids(warehouse: Path) -> list[str]:
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        return [r[0] for r in con.execute("select run_id from ml.segmentation_runs").fetchall()]
    finally:
        con.close()


def _last_dbt_step_running(log: Path, seen: int) -> bool:
    """dbt (in the run's process) has started building the Insiders KPIs, in the last
    dbt step: its log, beyond what was there before the run, says so."""
    if not log.exists():
        return False
    with log.open("rb") as handle:
        handle.seek(seen)
        return b"START sql table model insiders.kpis" in handle.read()


def _instance(home: Path):
    from dagster import DagsterInstance

    return DagsterInstance.from_config(str(home))


def _dagster_statuses(home: Path) -> dict[str, str]:
    with _instance(home) as instance:
        return {r.run_id: r.status.value for r in instance.get_runs()}


def _evaluate_dead_runs_sensor(home: Path) -> None:
    from dagster import build_sensor_context

    from orchestration.definitions import dead_runs

    with _instance(home) as instance:
        dead_runs(build_sensor_context(instance=instance))


def test_only_a_killed_runs_lock_looks_dead(tmp_path: Path) -> None:
    warehouse = tmp_path / "insiders_warehouse.duckdb"
    code = textwrap.dedent(
        f"""
        import time
        from pathlib import Path
        from orchestration.run_control import RunLock
        RunLock(Path({str(warehouse)!r}), "killed").acquire()
        print("held", flush=True)
        time.sleep(600)
        """
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", code], cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    killed_lock = warehouse.parent / run_control.RUNS_DIR / "killed.lock"
    assert not run_control.is_dead(killed_lock)  # alive
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert run_control.is_dead(killed_lock)  # killed: the file stays, nobody holds it

    ended = run_control.RunLock(warehouse, "ended")
    ended.acquire()
    assert not run_control.is_dead(ended.path)
    ended.release()
    assert not run_control.is_dead(ended.path)  # ended normally: never looks dead


def test_a_discarded_copy_leaves_the_warehouse_and_is_kept(tmp_path: Path) -> None:
    from models_py.locations import DUCKDB_CONFIG

    warehouse = tmp_path / "insiders_warehouse.duckdb"
    con = duckdb.connect(str(warehouse), config=DUCKDB_CONFIG)
    con.execute("create table t as select 1 as x")
    con.close()
    before = _sha(warehouse)
    work = run_control.start_work(warehouse)
    con = duckdb.connect(str(work), config=DUCKDB_CONFIG)
    con.execute("insert into t values (2)")
    con.close()
    kept = run_control.discard(warehouse, work, "r1")
    assert _sha(warehouse) == before
    assert kept == run_control.failed_copy(warehouse, "r1") and kept.exists()
    assert not work.exists()


def test_a_run_whose_publish_fails_fails_and_keeps_the_warehouse(
    completed: dict[str, Path], monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """Dagster records a run as successful even when its teardown raises: the CLI must
    not, and the warehouse stays the last complete one."""
    from dagster import AssetKey

    from orchestration.cli import run_job

    warehouse = completed["warehouse"]
    before = _sha(warehouse)

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(run_control, "_compacted_copy", disk_full)
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    rc = run_job(warehouse, None, None, asset_selection=[AssetKey(["insiders", "kpis"])])
    assert rc == 1
    err = capsys.readouterr().err
    assert "could not be published" in err
    assert _sha(warehouse) == before


def test_promote_compacts_and_keeps_every_object(tmp_path: Path) -> None:
    """Replaced tables leave free blocks in a DuckDB file (the real warehouse grew from
    40 to 61 MB over re-runs): the published file holds live data only, and every
    table, view and constraint of the work copy."""
    from models_py.locations import DUCKDB_CONFIG

    warehouse = tmp_path / "insiders_warehouse.duckdb"
    con = duckdb.connect(str(warehouse), config=DUCKDB_CONFIG)
    con.execute("create schema marts")
    con.execute("create table marts.t (id integer primary key, x double)")
    con.execute("insert into marts.t select i, random() from range(100000) as r(i)")
    con.execute("create view marts.v as select count(*) as n from marts.t")
    for _ in range(5):  # what every run does: replace big tables
        con.execute("create or replace table marts.big as select random() as r from range(2000000)")
    con.execute("drop table marts.big")
    con.close()
    bloated = warehouse.stat().st_size

    work = run_control.start_work(warehouse)
    run_control.promote(warehouse, work)

    assert warehouse.stat().st_size < bloated / 2
    assert not work.exists()
    con = duckdb.connect(str(warehouse), read_only=True, config=DUCKDB_CONFIG)
    try:
        assert con.execute("select n from marts.v").fetchone()[0] == 100000
        kinds = {
            r[0] for r in con.execute("select constraint_type from duckdb_constraints()").fetchall()
        }
        assert "PRIMARY KEY" in kinds
    finally:
        con.close()
