"""The code stays lint-clean: ruff on the Python, sqlfluff (duckdb dialect) on the SQL."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / args[0]), *args[1:]],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )


def test_ruff_is_clean():
    check = run("ruff", "check", ".")
    assert check.returncode == 0, check.stdout + check.stderr
    fmt = run("ruff", "format", "--check", ".")
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr


def test_sqlfluff_is_clean():
    lint = run("sqlfluff", "lint", "dbt_project/models", "dbt_project/tests", "--nocolor")
    assert lint.returncode == 0, lint.stdout + lint.stderr
