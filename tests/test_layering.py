"""Each thing in its layer, read from the source (ast), so that a change cannot quietly
bring a debt back:

- the pure models (``models_py``) know nothing of Dagster, dbt or the orchestration;
- the Dagster steps (``orchestration``) are wiring: no model computation there (no
  scikit-learn, numpy, scipy, matplotlib or pickling imported);
- the raw loader does not create the ``ml`` schema (the ml writers do);
- ``bench/`` does not import from ``tests/``;
- a confidence level is a setting (``models_py.settings``), not a literal default;
- nothing downstream (report, dashboard, BI snapshot) computes the cluster profile in
  Python: they read dbt's ``insiders.cluster_profile``.

"""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import duckdb
import pytest

from models_py import settings
from models_py.insiders_definitions import evaluate_definitions
from models_py.rolling_evaluation import evaluate
from orchestration.insiders_steps import run_rolling_evaluation
from orchestration.warehouse import load_files
from tests.test_ingest import DAILY

ROOT = Path(__file__).resolve().parent.parent


def imports(path: Path) -> set[str]:
    """Every module ``path`` imports, anywhere in it (function-level imports too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
    return found


def _top(modules: set[str]) -> set[str]:
    return {m.split(".")[0] for m in modules}


def python_files(*folders: str) -> list[Path]:
    return sorted(p for folder in folders for p in (ROOT / folder).rglob("*.py"))


def test_the_models_know_nothing_of_dagster_dbt_or_the_orchestration():
    offenders = {
        str(p.relative_to(ROOT)): sorted(_top(imports(p)) & {"dagster", "dbt", "orchestration"})
        for p in python_files("models_py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


COMPUTING = {"sklearn", "numpy", "scipy", "matplotlib", "joblib", "pickle", "umap", "pymc"}


@pytest.mark.parametrize("module", ["segmentation_asset.py", "insiders_steps.py", "ml_tables.py"])
def test_the_python_steps_are_wiring_only(module: str):
    assert _top(imports(ROOT / "orchestration" / module)) & COMPUTING == set()


def test_the_raw_loader_does_not_create_the_ml_schema(tmp_path: Path):
    source = tmp_path / "day.csv"
    source.write_text(DAILY)
    warehouse = tmp_path / "warehouse.duckdb"
    assert not load_files(warehouse, [source]).failed
    con = duckdb.connect(str(warehouse))
    try:
        schemas = {r[0] for r in con.execute("select schema_name from duckdb_schemas()").fetchall()}
    finally:
        con.close()
    assert "raw" in schemas and "ml" not in schemas


PENDING_BENCH = {"bench/dashboard.py"}  # imports tests.browser: its owner moves it


def _bench_importing_tests() -> set[str]:
    return {str(p.relative_to(ROOT)) for p in python_files("bench") if "tests" in _top(imports(p))}


def test_bench_does_not_import_from_tests():
    assert _bench_importing_tests() - PENDING_BENCH == set()


def test_no_bench_script_imports_from_tests():
    assert _bench_importing_tests() == set()


def _confidence_literals() -> set[str]:
    """Files where a parameter or class attribute named ``confidence`` has a number
    literal as its default."""
    found = set()
    for path in python_files("models_py", "orchestration", "bench", "dashboard"):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            pairs: list[tuple[str, ast.expr | None]] = []
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                args = node.args
                positional = args.posonlyargs + args.args
                defaults = [None] * (len(positional) - len(args.defaults)) + list(args.defaults)
                pairs += [(a.arg, d) for a, d in zip(positional, defaults, strict=True)]
                pairs += [
                    (a.arg, d) for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True)
                ]
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                pairs.append((node.target.id, node.value))
            for name, default in pairs:
                literal = isinstance(default, ast.Constant) and isinstance(
                    default.value, float | int
                )
                if "confidence" in name and literal:
                    found.add(str(path.relative_to(ROOT)))
    return found


PENDING_CONFIDENCE = {"models_py/evidence.py", "orchestration/definitions.py"}


def test_confidence_defaults_come_from_the_settings():
    assert _confidence_literals() - PENDING_CONFIDENCE == set()
    level = settings.RANDOM_GROUPS_CONFIDENCE
    for function in (evaluate_definitions, evaluate, run_rolling_evaluation):
        assert inspect.signature(function).parameters["confidence"].default == level


def test_no_confidence_level_is_a_literal():
    assert _confidence_literals() == set()


DOWNSTREAM = (
    "models_py/report.py",
    "orchestration/report_asset.py",
    "orchestration/bi_snapshot.py",
)


def test_nothing_downstream_computes_the_cluster_profile_in_python():
    """The report, the dashboard and the BI snapshot read insiders.cluster_profile; the
    Python profile of models_py.clustering is the clustering step's own run summary."""
    files = [ROOT / f for f in DOWNSTREAM] + python_files("dashboard")
    users = {
        str(p.relative_to(ROOT))
        for p in files
        if any(m.startswith("models_py.clustering") for m in imports(p))
        or "cluster_profile(" in p.read_text()
    }
    assert users == set()
