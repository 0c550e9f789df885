"""dbt in this process: the manifest built once, every invocation without re-parsing.

Each ``dbt`` subprocess costs 2.5 to 4 s before its first query (Python start, dbt's
imports, reading the partial-parse file), and a run has four dbt steps; parsing the
project at import of ``orchestration.definitions`` cost another 5 s per command. So:

* :func:`asset_graph_manifest` gives Dagster the manifest it draws the asset graph from.
  It is parsed only when a dbt file changed (a fingerprint of the project's files,
  ``profiles.yml`` and dbt's version is stored beside it), never on a plain import.
* :func:`invoke` runs a dbt command through ``dbtRunner`` in this process with a
  manifest parsed once per (project fingerprint, warehouse file, vars, target) and kept
  in memory, so the second and later steps of a run start at once; the first re-uses
  dbt's partial parse in the warehouse's ``.dbt/target`` (0.3 s when nothing changed).
* :func:`run_dbt` is the same for tests and tools, holding the warehouse lock.

An analyst gets the same result with
``dbt build --project-dir dbt_project --profiles-dir profiles`` (the profile reads the
warehouse from ``INSIDERS_WAREHOUSE``).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

from models_py.locations import WAREHOUSE_ENV

if TYPE_CHECKING:
    from orchestration.sessions import Warehouse

REPO_ROOT = Path(__file__).resolve().parent.parent
DBT_PROJECT_DIR = REPO_ROOT / "dbt_project"
DBT_PROFILES_DIR = REPO_ROOT / "profiles"
# Folders of the dbt project that are outputs, not sources.
_NOT_SOURCES = frozenset({"target", "logs", "dbt_packages"})
_GRAPH_TARGET = DBT_PROJECT_DIR / "target"
_FINGERPRINT_FILE = "insiders_fingerprint.txt"
# Set by `insiders run --verbose`: dbt prints its own log to the terminal.
VERBOSE_ENV = "INSIDERS_VERBOSE"


def dbt_target_path(warehouse: Warehouse) -> Path:
    """dbt's target folder (artifacts, partial parse, logs) of runs on ``warehouse``:
    one per warehouse, beside it, reused by every invocation."""
    return warehouse.parent / ".dbt" / "target"


def _source_files(project_dir: Path, profiles_dir: Path) -> list[tuple[Path, Path]]:
    """(root, file) of every file the manifest depends on, in a stable order."""
    sources = sorted(
        path
        for top in project_dir.iterdir()
        if top.name not in _NOT_SOURCES
        for path in ([top] if top.is_file() else top.rglob("*"))
        if path.is_file()
    )
    return [(profiles_dir, profiles_dir / "profiles.yml")] + [(project_dir, p) for p in sources]


# The last fingerprint computed, by the files' (path, size, mtime): a run asks at every
# dbt step, and reading every file again costs 0.2 s each time.
_FINGERPRINTS: dict[tuple, str] = {}


def dbt_fingerprint(
    project_dir: Path = DBT_PROJECT_DIR, profiles_dir: Path = DBT_PROFILES_DIR
) -> str:
    """SHA-256 over every source file of the dbt project, the profiles and dbt's
    version: what the parsed manifest depends on (with the vars and the profile).
    Recomputed only when a file's size or modification time changed."""
    from dbt.version import __version__

    files = _source_files(project_dir, profiles_dir)
    listing = tuple(
        (str(path), stat.st_size, stat.st_mtime_ns) for _, path in files for stat in [path.stat()]
    )
    if listing in _FINGERPRINTS:
        return _FINGERPRINTS[listing]
    digest = hashlib.sha256(__version__.encode())
    for root, path in files:
        digest.update(str(path.relative_to(root)).encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    _FINGERPRINTS.clear()
    _FINGERPRINTS[listing] = digest.hexdigest()
    return _FINGERPRINTS[listing]


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """Two processes importing the definitions at once parse once, not into each other."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def asset_graph_manifest() -> Path:
    """``dbt_project/target/manifest.json``, parsed again only when a dbt file changed.

    Dagster reads it at import to draw the dbt assets; the runs execute with a
    manifest of their own warehouse (:func:`invoke`). Parsing happens here at most
    once per change of the project, in this process (no subprocess)."""
    manifest = _GRAPH_TARGET / "manifest.json"
    stamp = _GRAPH_TARGET / _FINGERPRINT_FILE
    fingerprint = dbt_fingerprint()
    if manifest.exists() and stamp.exists() and stamp.read_text() == fingerprint:
        return manifest
    with _file_lock(_GRAPH_TARGET / ".parse.lock"):
        if manifest.exists() and stamp.exists() and stamp.read_text() == fingerprint:
            return manifest  # another process parsed it meanwhile
        result = _runner().invoke(
            [*_common_args("parse", _GRAPH_TARGET), "--quiet"],
        )
        if not result.success:
            raise RuntimeError(
                f"dbt parse of {DBT_PROJECT_DIR} failed: {_first_line(result.exception)}"
            )
        stamp.write_text(fingerprint)
    return manifest


def dbt_vars(
    as_of: date | None = None, extra: dict[str, object] | None = None
) -> dict[str, object]:
    """The ``--vars`` of a run: the as-of date, plus any override (e.g. guest_policy)."""
    values: dict[str, object] = dict(extra or {})
    if as_of is not None:
        values["as_of"] = as_of.isoformat()
    return values


def _common_args(command: str, target: Path) -> list[str]:
    return [
        command,
        "--project-dir",
        str(DBT_PROJECT_DIR),
        "--profiles-dir",
        str(DBT_PROFILES_DIR),
        "--target-path",
        str(target),
        # dbt writes logs/ into the working directory by default: keep them with the
        # rest of its artifacts, not in the source tree.
        "--log-path",
        str(target),
    ]


def dbt_args(
    command: str,
    variables: dict[str, object],
    extra: Sequence[str] = (),
    target: Path | None = None,
) -> list[str]:
    """The arguments of one invocation: project, profiles, target folder, vars."""
    args = _common_args(command, target or _GRAPH_TARGET)
    if variables:
        args += ["--vars", json.dumps(variables, sort_keys=True)]
    return args + list(extra)


def _runner(manifest: Any = None, callbacks: list[Callable[[Any], None]] | None = None) -> Any:
    from dbt.cli.main import dbtRunner

    return dbtRunner(manifest=manifest, callbacks=callbacks or [])


def _first_line(error: BaseException | None) -> str:
    text = str(error or "unknown error").strip()
    return text.splitlines()[0] if text else type(error).__name__


class DbtParseError(RuntimeError):
    """The project does not parse (a bad var, a broken file); one line."""


# Manifests parsed in this process, by (fingerprint, warehouse, vars, target folder).
_MANIFESTS: dict[tuple[str, str, str, str], Any] = {}


def run_manifest(warehouse: Warehouse, variables: dict[str, object], target: Path) -> Any:
    """The parsed manifest for invocations on ``warehouse`` with ``variables``.

    Kept in memory for the process; the first parse uses dbt's partial parsing in
    ``target`` (the warehouse's own folder), so only changed files are read again."""
    key = (
        dbt_fingerprint(),
        _where(warehouse),
        json.dumps(variables, sort_keys=True),
        str(target),
    )
    if key in _MANIFESTS:
        return _MANIFESTS[key]
    with _warehouse_env(warehouse):
        result = _runner().invoke(
            dbt_args("parse", variables, ["--quiet", *_target_args(warehouse)], target)
        )
    if not result.success:
        raise DbtParseError(f"dbt parse failed: {_first_line(result.exception)}")
    _MANIFESTS.clear()  # one warehouse at a time: do not keep old projects alive
    _MANIFESTS[key] = result.result
    return result.result


def _where(warehouse: Warehouse) -> str:
    """The warehouse as the manifest cache's key: the file, or the database."""
    from orchestration.postgres import PgWarehouse
    from orchestration.spark import SparkWarehouse

    if isinstance(warehouse, PgWarehouse | SparkWarehouse):
        return warehouse.describe()
    return str(warehouse)


def _target_args(warehouse: Warehouse) -> list[str]:
    """``--target`` of the profile's output for ``warehouse`` (duckdb, postgres or
    spark)."""
    from orchestration.sessions import target_name

    return ["--target", target_name(warehouse)]


@contextmanager
def _warehouse_env(warehouse: Warehouse) -> Iterator[None]:
    """The profile reads the DuckDB file from ``INSIDERS_WAREHOUSE`` (PostgreSQL's
    connection from the ``PG*`` variables; Spark's tables and metastore from
    ``INSIDERS_SPARK_WAREHOUSE`` and ``INSIDERS_SPARK_METASTORE``): set them for one
    call. On Spark the process's session is started first, with the warehouse's
    settings, so that dbt-spark's ``session`` method joins it."""
    from orchestration import spark
    from orchestration.postgres import PgWarehouse

    if isinstance(warehouse, PgWarehouse):
        yield
        return
    if isinstance(warehouse, spark.SparkWarehouse):
        settings = {
            spark.WAREHOUSE_DIR_ENV: warehouse.tables,
            spark.METASTORE_ENV: str(warehouse.metastore),
        }
        spark.session(warehouse)
    else:
        settings = {WAREHOUSE_ENV: str(warehouse)}
    previous = {name: os.environ.get(name) for name in settings}
    os.environ.update(settings)
    try:
        yield
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@dataclass
class Invocation:
    """What one in-process dbt command did: success, the structured events of its node
    results (dbt's JSON log lines, as dagster-dbt reads them), and the failures."""

    success: bool
    events: list[dict[str, Any]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0
    parse_seconds: float = 0.0
    elapsed: float = 0.0  # dbt's own elapsed time of the command (run_results.json)


_RESULT_EVENTS = frozenset(
    {"LogSeedResult", "LogModelResult", "LogSnapshotResult", "LogTestResult"}
)


def invoke(
    command: str,
    warehouse: Warehouse,
    variables: dict[str, object] | None = None,
    extra: Sequence[str] = (),
    target: Path | None = None,
    quiet: bool | None = None,
) -> Invocation:
    """Run ``dbt <command>`` on ``warehouse`` in this process with a pre-parsed manifest.

    ``quiet`` (default: unless ``$INSIDERS_VERBOSE``): dbt's log goes to its file in
    ``target`` only, errors still to the terminal."""
    import time

    from dbt_common.events.functions import msg_to_dict

    variables = variables or {}
    target = target or dbt_target_path(warehouse)
    if quiet is None:
        quiet = not os.environ.get(VERBOSE_ENV)
    started = time.perf_counter()
    try:
        manifest = run_manifest(warehouse, variables, target)
    except DbtParseError as error:
        return Invocation(success=False, failures=[str(error)])
    parsed = time.perf_counter()
    events: list[dict[str, Any]] = []

    def collect(event: Any) -> None:
        if event.info.name in _RESULT_EVENTS:
            events.append(msg_to_dict(event))

    flags = [*(["--quiet"] if quiet else []), *_target_args(warehouse), *extra]
    args = dbt_args(command, variables, flags, target)
    with _warehouse_env(warehouse):
        try:
            result = _runner(manifest, [collect]).invoke(args)
        finally:
            _close_dbt_connections()
    failures = _failures(result)
    return Invocation(
        success=bool(result.success),
        events=events,
        failures=failures,
        seconds=time.perf_counter() - started,
        parse_seconds=parsed - started,
        elapsed=float(getattr(getattr(result, "result", None), "elapsed_time", 0.0) or 0.0),
    )


def _failures(result: Any) -> list[str]:
    """One line per node that errored or failed, else the exception's first line."""
    lines = []
    for node in getattr(getattr(result, "result", None), "results", None) or []:
        status = str(getattr(node, "status", ""))
        if status in ("error", "fail", "runtime error"):
            message = (node.message or status).strip().splitlines()
            lines.append(f"{node.node.name}: {message[0] if message else status}")
    if not lines and not result.success:
        lines.append(_first_line(result.exception))
    return lines


def _close_dbt_connections() -> None:
    """dbt-duckdb keeps the database open in a class-level environment after the
    command; close it, so the run can rename its work copy and the next step opens
    the file afresh (DuckDB caches database instances by path)."""
    try:
        from dbt.adapters.duckdb.connections import DuckDBConnectionManager
    except ImportError:  # another adapter: nothing held
        return
    environment = DuckDBConnectionManager._ENV
    if environment is not None:
        try:
            environment.close()
        finally:
            DuckDBConnectionManager.close_all_connections()


def run_dbt(
    command: str,
    warehouse: Warehouse,
    variables: dict[str, object] | None = None,
    extra: Sequence[str] = (),
) -> bool:
    """Invoke dbt in this process (tests, tools); True when every node and test passed."""
    from orchestration.postgres import PgWarehouse, PgWriterLock
    from orchestration.run_control import WarehouseLock
    from orchestration.sessions import lock_anchor, prepare_warehouse

    # A writer like any other: hold the warehouse lock, so a run cannot publish its copy
    # over what this build writes (a dbt started by hand does not know the lock).
    lock: Any = (
        PgWriterLock("dbt in process")
        if isinstance(warehouse, PgWarehouse)
        else WarehouseLock(lock_anchor(warehouse), "dbt in process")
    )
    with lock:
        prepare_warehouse(warehouse)  # the raw and ml source tables exist before dbt reads
        outcome = invoke(command, warehouse, variables, extra, quiet=False)
    return outcome.success
