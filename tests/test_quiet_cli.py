"""The CLI is quiet by default, and nothing parses dbt at import.

``insiders run`` prints one line per step (stage, seconds, key figure), then the
summary; Dagster's event log stays in its storage unless ``--verbose``. Importing the
definitions reuses the parsed manifest while no dbt file changed.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from models_py.demo_data import write_demo_data
from orchestration.dbt_runner import DBT_PROFILES_DIR, DBT_PROJECT_DIR, dbt_fingerprint

INSIDERS = str(Path(sys.executable).parent / "insiders")
STEP_LINE = re.compile(r"^(\S+)\s+([0-9]+\.[0-9]) s\b(.*)$")


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [INSIDERS, *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        check=False,
    )


def test_a_run_prints_one_line_per_step_and_verbose_brings_the_event_log_back(
    tmp_path: Path,
) -> None:
    demo = write_demo_data(tmp_path / "data", customers=300, seed=3)
    warehouse = tmp_path / "wh" / "warehouse.duckdb"
    quiet = _run("run", "--warehouse", str(warehouse), "--source", str(demo.path))
    assert quiet.returncode == 0, quiet.stderr
    lines = (quiet.stdout + quiet.stderr).splitlines()
    assert len(lines) <= 60, "\n".join(lines)
    assert not [line for line in lines if " - DEBUG - " in line or "STEP_START" in line]
    stages = [m.group(1) for m in map(STEP_LINE.match, quiet.stdout.splitlines()) if m]
    assert stages[:1] and {"load", "clustering", "analytics", "report", "snapshot"} <= set(
        stages
    ), quiet.stdout
    # dbt runs twice: before the clustering and after the analytics (RUN_AFTER)
    assert sum(stage.startswith("dbt-") for stage in stages) == 2
    load = next(line for line in quiet.stdout.splitlines() if line.startswith("load "))
    assert f"{demo.lines - demo.bad_lines:,} rows loaded" in load, load
    assert "Insiders:" in quiet.stdout and "report:" in quiet.stdout

    verbose = _run("run", "--warehouse", str(warehouse), "--verbose")
    assert verbose.returncode == 0, verbose.stderr
    assert "STEP_SUCCESS" in verbose.stderr + verbose.stdout


def test_a_failing_step_prints_its_error_in_full(tmp_path: Path) -> None:
    """A bad as-of (after loading) fails the dbt step: the error says why, in words."""
    demo = write_demo_data(tmp_path / "data", customers=200, seed=5)
    warehouse = tmp_path / "wh" / "warehouse.duckdb"
    failed = _run(
        "run", "--warehouse", str(warehouse), "--source", str(demo.path), "--as-of", "2001-01-01"
    )
    assert failed.returncode == 1
    assert "FAILED" in failed.stdout
    assert "before the first invoice" in failed.stderr, failed.stderr
    assert " - DEBUG - " not in failed.stderr


def test_importing_the_definitions_does_not_parse_dbt_again(tmp_path: Path) -> None:
    manifest = DBT_PROJECT_DIR / "target" / "manifest.json"
    code = "import orchestration.definitions"
    subprocess.run([sys.executable, "-c", code], check=True)
    before = manifest.stat().st_mtime_ns
    subprocess.run([sys.executable, "-c", code], check=True)
    assert manifest.stat().st_mtime_ns == before, "the manifest was parsed again"


def test_the_fingerprint_changes_with_any_dbt_file(tmp_path: Path) -> None:
    project = shutil.copytree(
        DBT_PROJECT_DIR, tmp_path / "dbt_project", ignore=shutil.ignore_patterns("target")
    )
    profiles = shutil.copytree(DBT_PROFILES_DIR, tmp_path / "profiles")
    first = dbt_fingerprint(project, profiles)
    assert dbt_fingerprint(project, profiles) == first
    (project / "target").mkdir()
    (project / "target" / "run_results.json").write_text("{}")
    assert dbt_fingerprint(project, profiles) == first, "outputs are not sources"
    model = project / "models" / "marts" / "dim_customers.sql"
    model.write_text(model.read_text() + "\n")
    second = dbt_fingerprint(project, profiles)
    assert second != first
    (profiles / "profiles.yml").write_text((profiles / "profiles.yml").read_text() + "\n")
    assert dbt_fingerprint(project, profiles) not in (first, second)
