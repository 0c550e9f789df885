"""The whole graph on PostgreSQL (a real server: tests/postgres_server.py), through the
real CLI: target selection, one-line errors without the password, the read-only BI
role, readers during a run, and a killed run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from orchestration.cli import main
from orchestration.targets import TargetError, resolve_target
from tests.conftest import environ_restored
from tests.postgres_server import fresh_database

REPO_ROOT = Path(__file__).resolve().parent.parent


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """The real console script in a process of its own."""
    return subprocess.run(
        [str(Path(sys.executable).parent / "insiders"), *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=600,
    )


# --- target selection and errors ------------------------------------------------------


def test_target_is_chosen_by_flag_then_variable(monkeypatch):
    monkeypatch.delenv("INSIDERS_TARGET", raising=False)
    assert resolve_target() == "duckdb"
    monkeypatch.setenv("INSIDERS_TARGET", "postgres")
    assert resolve_target() == "postgres"
    assert resolve_target("duckdb") == "duckdb"
    monkeypatch.setenv("INSIDERS_TARGET", "oracle")
    with pytest.raises(TargetError, match=r"\$INSIDERS_TARGET: unknown target 'oracle'"):
        resolve_target()


def test_unknown_target_in_the_environment_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("INSIDERS_TARGET", "oracle")
    assert main(["load", "--warehouse", str(tmp_path / "w.duckdb"), str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "insiders: error: $INSIDERS_TARGET: unknown target 'oracle': one of duckdb, postgres, spark"
    ]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"PGPORT": "1"}, "Connection refused (is the server running? check PGHOST and PGPORT)"),
        ({"PGPASSWORD": "not-the-password"}, "password authentication failed for user"),
        ({"PGDATABASE": "no_such_database"}, 'database "no_such_database" does not exist'),
    ],
    ids=["unreachable", "wrong-password", "missing-database"],
)
def test_connection_problems_are_one_line_without_the_password(
    pg_database, tmp_path, change, expected
):
    data = tmp_path / "data"
    data.mkdir()
    for command in (["load", str(data)], ["run", "--source", str(data)], ["build"]):
        result = run_cli(
            *command, "--target", "postgres", "--warehouse", str(tmp_path / "w.duckdb"), env=change
        )
        assert result.returncode == 2, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith("insiders: error: postgresql://"), lines[0]
        assert expected in lines[0]
        password = change.get("PGPASSWORD") or os.environ["PGPASSWORD"]
        assert password not in result.stdout + result.stderr
    # Nothing was created locally or in the database by the failed commands.
    with psycopg.connect("") as con:
        tables = con.execute(
            "select count(*) from information_schema.tables where table_schema = 'raw'"
        ).fetchone()[0]
    assert tables == 0


def test_insufficient_privileges_are_one_line(pg_database, tmp_path, demo_dir):
    """A role that may connect but not create schemas cannot load: one line, and the
    database holds nothing of the load."""
    role = f"weak_{pg_database[-8:]}"
    with psycopg.connect("", autocommit=True) as con:
        con.execute(f"create role {role} login password 'weak-pass'")
        con.execute(f'revoke create on database "{pg_database}" from public')
    try:
        for command in (["load", str(demo_dir)], ["run", "--source", str(demo_dir)], ["build"]):
            result = run_cli(
                *command,
                "--target",
                "postgres",
                "--warehouse",
                str(tmp_path / "w.duckdb"),
                env={"PGUSER": role, "PGPASSWORD": "weak-pass"},
            )
            assert result.returncode != 0
            lines = result.stderr.strip().splitlines()
            assert len(lines) == 1, result.stderr
            assert "permission denied" in lines[0]
            assert lines[0].startswith("insiders: error: ")
            assert "weak-pass" not in result.stdout + result.stderr
    finally:
        with psycopg.connect("", autocommit=True) as con:
            con.execute(f'drop role if exists "{role}"')  # it owns nothing: nothing loaded


# --- the graph on PostgreSQL ----------------------------------------------------------


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("demo") / "data"
    assert main(["demo-data", str(folder), "--customers", "400", "--seed", "7"]) == 0
    return folder


@pytest.fixture(scope="module")
def pg_graph(pg_server, demo_dir, tmp_path_factory) -> Iterator[tuple[Path, dict[str, str]]]:
    """The whole graph run once on PostgreSQL (demo data, fresh database): the local
    warehouse path and the PG* variables."""
    local = tmp_path_factory.mktemp("pg-graph") / "w.duckdb"
    with fresh_database(pg_server) as name, environ_restored():
        env = {**pg_server, "PGDATABASE": name}
        os.environ.update(env)
        code = main(
            ["run", "--target", "postgres", "--warehouse", str(local), "--source", str(demo_dir)]
        )
        assert code == 0
        yield local, env


def pg_rows(env: dict[str, str], sql: str, params: list | None = None) -> list[tuple]:
    with environ_restored():
        os.environ.update(env)
        with psycopg.connect("") as con:
            return con.execute(sql, params).fetchall()


def test_the_graph_on_postgres_writes_every_schema(pg_graph):
    local, env = pg_graph
    counts = dict(
        pg_rows(
            env,
            """
            select table_schema, count(*) from information_schema.tables
            where table_schema in ('raw', 'staging', 'intermediate', 'marts', 'ml', 'insiders')
            group by 1
            """,
        )
    )
    assert set(counts) == {"raw", "staging", "intermediate", "marts", "ml", "insiders"}
    customers = pg_rows(env, "select count(*) from marts.dim_customers")[0][0]
    labelled = pg_rows(env, "select count(distinct customer_id) from ml.customer_segments")[0][0]
    assert customers == labelled > 0
    # The answer, the report and the BI snapshot came out of the PostgreSQL run.
    answers = pg_rows(env, "select count(*) from insiders.answers")[0][0]
    assert answers >= 9
    folder = local.parent / "postgres" / env["PGDATABASE"]
    assert (folder / "reports" / "insiders_report.html").stat().st_size > 0
    import duckdb

    snapshot = duckdb.connect(str(folder / "bi" / "insiders_bi.duckdb"), read_only=True)
    try:
        kpis = snapshot.execute("select insiders, customers from insiders.kpis").fetchone()
    finally:
        snapshot.close()
    assert kpis == pg_rows(env, "select insiders, customers from insiders.kpis")[0]


def test_the_password_is_written_nowhere(pg_graph):
    """Not in any local file of the run (dbt's logs and artifacts, the models, the
    report, the snapshot), nor in what a verbose build prints."""
    local, env = pg_graph
    password = env["PGPASSWORD"].encode()
    assert len(password) >= 8
    files = [p for p in local.parent.rglob("*") if p.is_file()]
    assert any(p.name == "dbt.log" for p in files)
    assert [p for p in files if password in p.read_bytes()] == []
    build = run_cli(
        "build", "--target", "postgres", "--warehouse", str(local), "--verbose", env=env
    )
    assert build.returncode == 0, build.stdout[-2000:] + build.stderr[-2000:]
    assert "postgres" in build.stdout + build.stderr
    assert env["PGPASSWORD"] not in build.stdout + build.stderr


def test_loading_the_same_files_again_changes_nothing(pg_graph, demo_dir):
    local, env = pg_graph
    before = pg_rows(env, "select count(*), sum(source_line) from raw.transactions")
    result = run_cli(
        "load", "--target", "postgres", "--warehouse", str(local), str(demo_dir), env=env
    )
    assert result.returncode == 0, result.stderr
    assert "files loaded: 0" in result.stdout
    assert pg_rows(env, "select count(*), sum(source_line) from raw.transactions") == before


def test_reader_role_reads_marts_and_insiders_only(pg_graph, tmp_path):
    local, env = pg_graph
    role = f"reader_{env['PGDATABASE'][-8:]}"
    result = run_cli(
        "reader-role",
        "--target",
        "postgres",
        "--warehouse",
        str(local),
        "--role",
        role,
        env={**env, "INSIDERS_READER_PASSWORD": "bi-pass-123"},
    )
    assert result.returncode == 0, result.stderr
    assert "bi-pass-123" not in result.stdout + result.stderr
    reader = {**env, "PGUSER": role, "PGPASSWORD": "bi-pass-123"}
    try:
        assert pg_rows(reader, "select count(*) from insiders.kpis")[0][0] == 1
        assert pg_rows(reader, "select count(*) from marts.dim_customers")[0][0] > 0
        for forbidden in (
            "select count(*) from raw.transactions",
            "select count(*) from ml.customer_segments",
            "select count(*) from staging.stg_online_retail__transactions",
            "select count(*) from intermediate.int_evaluation_dates",
            "create table insiders.mine (a int)",
            "create table marts.mine (a int)",
            "create table public.mine (a int)",
            "create schema mine",
            "insert into insiders.kpis select * from insiders.kpis",
            "delete from marts.dim_customers",
            "update insiders.members set customer_id = customer_id",
            "drop table insiders.kpis",
            "truncate marts.dim_customers",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                pg_rows(reader, forbidden)
        # dbt replaces every table on a run: the reader still reads the new ones.
        build = run_cli(
            "build", "--target", "postgres", "--warehouse", str(local), "--select", "kpis", env=env
        )
        assert build.returncode == 0, build.stdout + build.stderr
        assert pg_rows(reader, "select count(*) from insiders.kpis")[0][0] == 1
    finally:
        # A CREATEROLE role may make itself a member, then drop what the role holds.
        with environ_restored():
            os.environ.update(env)
            with psycopg.connect("", autocommit=True) as con:
                con.execute(f"grant {role} to current_user")
                con.execute(f"drop owned by {role}")
                con.execute(f"drop role {role}")


def test_readers_see_whole_tables_during_a_run(pg_graph):
    """A reader querying throughout a run never fails and never sees a half-built or
    mixed table: every read of insiders.members has one run's rows, all of them."""
    local, env = pg_graph
    expected = pg_rows(env, "select count(*) from insiders.members")[0][0]
    seen: list[tuple] = []
    errors: list[BaseException] = []
    done = threading.Event()

    def read() -> None:
        with environ_restored():
            os.environ.update(env)
            with psycopg.connect("", autocommit=True) as con:
                while not done.is_set():
                    try:
                        seen.append(
                            con.execute(
                                "select count(*), count(distinct run_id) from insiders.members"
                            ).fetchone()
                            + con.execute("select count(*) from insiders.kpis").fetchone()
                        )
                    except BaseException as exc:
                        errors.append(exc)
                        return

    reader = threading.Thread(target=read)
    reader.start()
    try:
        result = run_cli(
            "run", "--target", "postgres", "--warehouse", str(local), "--refit", env=env
        )
    finally:
        done.set()
        reader.join()
    assert result.returncode == 0, result.stdout + result.stderr
    assert not errors, errors
    assert len(seen) > 20
    assert set(seen) == {(expected, 1, 1)}


def test_a_killed_run_leaves_the_previous_answer_readable(pg_graph):
    local, env = pg_graph
    before = pg_rows(env, "select run_id, count(*) from insiders.members group by 1")
    process = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "insiders"),
            "run",
            "--target",
            "postgres",
            "--warehouse",
            str(local),
            "--refit",
        ],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    # Kill it once the clustering has finished, in the middle of what follows.
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith("clustering"):
            break
    time.sleep(1.0)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert pg_rows(env, "select run_id, count(*) from insiders.members group by 1") == before
    assert pg_rows(env, "select count(*) from insiders.kpis")[0][0] == 1
    # The writer lock died with the process: the next run is not blocked.
    again = run_cli("run", "--target", "postgres", "--warehouse", str(local), "--no-wait", env=env)
    assert again.returncode == 0, again.stdout + again.stderr


def test_a_second_writer_waits_or_fails_in_one_line(pg_graph, demo_dir):
    from orchestration.postgres import PgWriterLock

    local, env = pg_graph
    with environ_restored():
        os.environ.update(env)
        lock = PgWriterLock("a test holding the database")
        lock.acquire()
        try:
            result = run_cli(
                "load",
                "--target",
                "postgres",
                "--warehouse",
                str(local),
                "--no-wait",
                str(demo_dir),
                env=env,
            )
        finally:
            lock.release()
    assert result.returncode == 3
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "is busy: a test holding the database" in lines[0]


def test_the_dashboard_shows_the_postgres_run(pg_graph, monkeypatch):
    """``insiders dashboard --target postgres`` opens the snapshot the PostgreSQL run
    published; its overview shows PostgreSQL's answers and Insiders count."""
    import re

    from streamlit.testing.v1 import AppTest

    from dashboard.snapshot import snapshot_path
    from models_py.locations import SNAPSHOT_ENV
    from orchestration.postgres import PgWarehouse, local_folder

    local, env = pg_graph
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv(SNAPSHOT_ENV, raising=False)
    snapshot = snapshot_path(PgWarehouse(local_folder(local)))
    assert snapshot == local.parent / "postgres" / env["PGDATABASE"] / "bi" / "insiders_bi.duckdb"
    monkeypatch.setenv(SNAPSHOT_ENV, str(snapshot))
    at = AppTest.from_file(str(REPO_ROOT / "dashboard" / "app.py"), default_timeout=60)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    shown = [re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", m.value) for m in at.markdown]
    answers = pg_rows(env, "select question_number, answer from insiders.answers order by 1")
    assert len(answers) == 9
    for number, answer in answers:
        assert any(m.startswith(f"**{number}.") and m.endswith(answer) for m in shown), answer
    insiders = pg_rows(env, "select insiders from insiders.kpis")[0][0]
    assert {m.label: m.value for m in at.metric}["Insiders"] == f"{insiders:,}"
