"""Where the dbt project is, and dbt in-process for tests and tools.

Runs go through Dagster (``insiders run`` and ``insiders build`` execute the job, whose
dbt steps call the dbt CLI); :func:`run_dbt` invokes dbt in this process
(``dbtRunner``) for tests and for docs, pointing it at ``dbt_project/`` and
``profiles/`` and at a warehouse through ``INSIDERS_WAREHOUSE``, which the profile
reads. An analyst gets the same result with
``dbt build --project-dir dbt_project --profiles-dir profiles``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from datetime import date
from pathlib import Path

from models_py.locations import WAREHOUSE_ENV

REPO_ROOT = Path(__file__).resolve().parent.parent
DBT_PROJECT_DIR = REPO_ROOT / "dbt_project"
DBT_PROFILES_DIR = REPO_ROOT / "profiles"


def dbt_target_path(warehouse: Path) -> Path:
    """dbt's target folder (artifacts, partial parse, logs) of runs on ``warehouse``:
    one per warehouse, beside it, reused by every invocation."""
    return warehouse.parent / ".dbt" / "target"


def dbt_vars(
    as_of: date | None = None, extra: dict[str, object] | None = None
) -> dict[str, object]:
    """The ``--vars`` of a run: the as-of date, plus any override (e.g. guest_policy)."""
    values: dict[str, object] = dict(extra or {})
    if as_of is not None:
        values["as_of"] = as_of.isoformat()
    return values


def dbt_args(command: str, variables: dict[str, object], extra: Sequence[str] = ()) -> list[str]:
    args = [
        command,
        "--project-dir",
        str(DBT_PROJECT_DIR),
        "--profiles-dir",
        str(DBT_PROFILES_DIR),
        # dbt writes logs/ into the working directory by default: keep them with the
        # rest of its artifacts (ignored by git), not in the source tree.
        "--log-path",
        str(DBT_PROJECT_DIR / "target" / "logs"),
    ]
    if variables:
        args += ["--vars", json.dumps(variables)]
    return args + list(extra)


def run_dbt(
    command: str,
    warehouse: Path,
    variables: dict[str, object] | None = None,
    extra: Sequence[str] = (),
) -> bool:
    """Invoke dbt in this process; True when every node and test passed."""
    from dbt.cli.main import dbtRunner

    from orchestration.ml_tables import ensure_ml_tables
    from orchestration.run_control import WarehouseLock
    from orchestration.warehouse import connect

    # A writer like any other: hold the warehouse lock, so a run cannot publish its copy
    # over what this build writes (a dbt started by hand does not know the lock).
    with WarehouseLock(warehouse, "dbt in process"):
        con = connect(warehouse)  # the raw and ml source tables exist before dbt reads
        try:
            ensure_ml_tables(con)
        finally:
            con.close()
        previous = os.environ.get(WAREHOUSE_ENV)
        os.environ[WAREHOUSE_ENV] = str(warehouse)
        try:
            result = dbtRunner().invoke(dbt_args(command, variables or {}, extra))
        finally:
            if previous is None:
                os.environ.pop(WAREHOUSE_ENV, None)
            else:
                os.environ[WAREHOUSE_ENV] = previous
    return bool(result.success)
