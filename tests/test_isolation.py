"""Tests do not leak environment variables into each other.

Production code sets variables as a side effect (the Dagster dbt step sets
``$INSIDERS_WAREHOUSE`` and ``DBT_INDIRECT_SELECTION``, ``insiders run`` sets
``$INSIDERS_WAREHOUSE``): the autouse fixture of ``tests/conftest.py`` puts
``os.environ`` back after every test, and session fixtures that run the job wrap it
in ``environ_restored``.
"""

from __future__ import annotations

import os

from models_py.locations import WAREHOUSE_ENV
from tests.conftest import environ_restored

LEAKED = "/nowhere/leaked-by-a-previous-test.duckdb"


def test_environ_restored_undoes_additions_changes_and_removals(monkeypatch):
    monkeypatch.setenv("INSIDERS_TEST_CHANGED", "before")
    monkeypatch.setenv("INSIDERS_TEST_REMOVED", "kept")
    monkeypatch.delenv("INSIDERS_TEST_ADDED", raising=False)
    with environ_restored():
        os.environ["INSIDERS_TEST_ADDED"] = "new"
        os.environ["INSIDERS_TEST_CHANGED"] = "after"
        del os.environ["INSIDERS_TEST_REMOVED"]
    assert "INSIDERS_TEST_ADDED" not in os.environ
    assert os.environ["INSIDERS_TEST_CHANGED"] == "before"
    assert os.environ["INSIDERS_TEST_REMOVED"] == "kept"


def test_code_under_test_sets_the_warehouse_variable():
    """What the dbt step of the job does (``os.environ[WAREHOUSE_ENV] = ...``), done
    here directly; the next test must not see it."""
    os.environ[WAREHOUSE_ENV] = LEAKED
    os.environ["DBT_INDIRECT_SELECTION"] = "buildable-leaked"


def test_the_next_test_does_not_see_it():
    """Runs after the one above (pytest keeps a module's order): fails if a variable
    set by a test, or by the code it ran, outlives that test."""
    assert os.environ.get(WAREHOUSE_ENV) != LEAKED
    assert os.environ.get("DBT_INDIRECT_SELECTION") != "buildable-leaked"
