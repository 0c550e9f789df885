"""Dagster resources: the warehouse connection, opened only while a step needs it."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from datetime import date
from pathlib import Path

import duckdb
from dagster import ConfigurableResource, InitResourceContext
from pydantic import PrivateAttr

from models_py.locations import resolve_bi_dir
from orchestration import run_control
from orchestration.postgres import PgWarehouse, PgWriterLock, local_folder
from orchestration.sessions import Warehouse, open_warehouse, prepare_warehouse
from orchestration.spark import SparkWarehouse, stop_session
from orchestration.spark import local_folder as spark_folder
from orchestration.targets import DUCKDB, POSTGRES, SPARK, check_target
from orchestration.warehouse import check_warehouse


class WarehouseResource(ConfigurableResource):
    """The warehouse of a run: one run at a time, landing whole or not at all.

    ``target`` is ``duckdb`` (the default) or ``postgres``. On DuckDB ``path`` is the
    warehouse file. During a run, the steps write a work copy of it (``file``) while
    the run holds the warehouse lock; when every step succeeded the copy replaces the
    warehouse in one rename, otherwise the warehouse stays as the last complete run
    left it (see ``orchestration.run_control``). Steps open the file briefly: DuckDB
    allows one writer process.

    On PostgreSQL the database is the one the ``PG*`` variables name; ``path`` only
    places the local files (models, reports, the BI snapshot, dbt's target folder, the
    run lock) in ``postgres/<database>/`` beside it. A run holds the database's
    advisory writer lock; dbt replaces each table inside a transaction and the Python
    steps write their ``ml`` tables in one transaction each, so readers always see
    whole tables. ``wait``: a run that finds the warehouse busy waits for it (False:
    fails at once, naming the holder).

    On Spark the catalog's tables live where ``orchestration.spark`` says and the local
    files in ``spark/`` beside ``path``. A run holds a lock file there, starts the
    process's Spark session once (dbt joins it) and stops it at the end. Each ``ml``
    table is switched to its new version in one metastore operation; what readers use
    whole is the BI snapshot, published when every step succeeded.
    """

    path: str
    wait: bool = True
    target: str = DUCKDB

    _work: Path | None = PrivateAttr(default=None)
    _lock: run_control.WarehouseLock | None = PrivateAttr(default=None)
    _pg_lock: PgWriterLock | None = PrivateAttr(default=None)
    _run_lock: run_control.RunLock | None = PrivateAttr(default=None)

    @property
    def is_postgres(self) -> bool:
        return check_target(self.target) == POSTGRES

    @property
    def is_spark(self) -> bool:
        return check_target(self.target) == SPARK

    @property
    def anchor(self) -> Warehouse:
        """The warehouse as a place: its ``parent`` folder holds the local files."""
        if self.is_postgres:
            return PgWarehouse(local_folder(Path(self.path)))
        if self.is_spark:
            return SparkWarehouse(spark_folder(Path(self.path)))
        return Path(self.path)

    @property
    def file(self) -> Warehouse:
        """What steps read and write: the run's work copy during a DuckDB run, the
        database on PostgreSQL, the catalog on Spark."""
        if self.is_postgres or self.is_spark:
            return self.anchor
        return self._work or Path(self.path)

    def session(
        self, reads: Sequence[str | tuple[str, str]] = ()
    ) -> AbstractContextManager[duckdb.DuckDBPyConnection]:
        """A step's connection (``orchestration.sessions.open_warehouse``)."""
        return open_warehouse(self.file, reads)

    def prepare(self) -> None:
        """Make the ``raw`` and ``ml`` tables exist before dbt reads them."""
        prepare_warehouse(self.file)

    def setup_for_execution(self, context: InitResourceContext) -> None:
        run_id, instance = _run_id(context), context.instance
        if not run_id:  # built outside a run (a test, a script): use the file itself
            return
        if self.is_postgres or self.is_spark:
            self._setup_server(context, run_id)
            return
        warehouse = Path(self.path)
        check_warehouse(warehouse)  # one line for a path that is no DuckDB database
        try:
            self._run_lock = run_control.RunLock(warehouse, run_id)
            self._run_lock.acquire()
            if instance is not None:
                tag = {run_control.RUN_LOCK_TAG: str(self._run_lock.path)}
                instance.add_run_tags(run_id, tag)
                for dead in run_control.fail_dead_runs(instance, exclude=run_id):
                    _log(context, f"run {dead} had no process any more: marked failed")
            self._lock = run_control.WarehouseLock(warehouse, f"Dagster run {run_id}")
            self._lock.acquire(wait=self.wait, notify=lambda line: _log(context, line))
            self._work = run_control.start_work(warehouse)
        except BaseException:
            # Dagster calls no teardown when setup fails: let go of what was taken.
            self._release()
            raise

    def _setup_server(self, context: InitResourceContext, run_id: str) -> None:
        """A run on PostgreSQL or Spark: the local run lock (dead runs), then the
        database's writer lock (Spark: a lock file beside its local files) and, on
        Spark, the session; no work copy (see the class docstring)."""
        anchor = self.anchor
        anchor.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._run_lock = run_control.RunLock(anchor.parent / "database", run_id)
            self._run_lock.acquire()
            instance = context.instance
            if instance is not None:
                tag = {run_control.RUN_LOCK_TAG: str(self._run_lock.path)}
                instance.add_run_tags(run_id, tag)
                for dead in run_control.fail_dead_runs(instance, exclude=run_id):
                    _log(context, f"run {dead} had no process any more: marked failed")
            if self.is_spark:
                self._lock = run_control.WarehouseLock(
                    anchor.parent / "database", f"Dagster run {run_id}"
                )
                self._lock.acquire(wait=self.wait, notify=lambda line: _log(context, line))
                anchor.session()  # once per run: dbt and every step join it
                return
            self._pg_lock = PgWriterLock(f"Dagster run {run_id}")
            self._pg_lock.acquire(wait=self.wait, notify=lambda line: _log(context, line))
        except BaseException:
            self._release()
            raise

    def teardown_after_execution(self, context: InitResourceContext) -> None:
        """Publish the run's copy if every step succeeded, else keep the warehouse.

        Dagster still records a run as successful when its teardown raises, so a copy
        that could not be published is kept as ``.work/failed-<run>.duckdb``, which the
        CLI reports as a failure (``run_control.failed_copy``)."""
        warehouse, work, run_id = Path(self.path), self._work, _run_id(context)
        try:
            if work is not None and context.instance is not None and run_id:
                if run_control.run_succeeded_so_far(context.instance, run_id):
                    try:
                        run_control.promote(warehouse, work)
                    except BaseException as exc:
                        kept = run_control.discard(warehouse, work, run_id)
                        if context.log is not None:
                            context.log.error(
                                f"the run's results could not be published ({exc}): "
                                f"{warehouse} is left as the last complete run made it"
                                + (f"; this run's copy is kept in {kept}" if kept else "")
                            )
                        raise
                else:
                    kept = run_control.discard(warehouse, work, run_id)
                    _log(
                        context,
                        f"the run failed: {warehouse} is left as the last complete run "
                        f"made it" + (f"; this run's copy is kept in {kept}" if kept else ""),
                    )
        finally:
            self._release()

    def _release(self) -> None:
        self._work = None
        if self.is_spark:
            stop_session()
        if self._pg_lock is not None:
            self._pg_lock.release()
            self._pg_lock = None
        if self._lock is not None:
            self._lock.release()
            self._lock = None
        if self._run_lock is not None:
            self._run_lock.release()
            self._run_lock = None


def _run_id(context: InitResourceContext) -> str | None:
    """The run being set up, or None when the resource is built outside a run."""
    run = getattr(context, "run", None)
    return run.run_id if run is not None else None


def _log(context: InitResourceContext, line: str) -> None:
    if context.log is not None:
        context.log.warning(line)


class BuildSettings(ConfigurableResource):
    """Settings of the whole run, shared by every dbt step of it.

    ``as_of`` (YYYY-MM-DD): compute customer features as of this date; empty: the day
    after the last invoice. ``insiders_definition``: force this definition of the
    Insiders (one of ``models_py.insiders_definitions.DEFINITIONS``) instead of the one
    with the best rolling-origin evidence; empty: automatic. ``full_refresh``: rebuild
    the incremental models from scratch (``dbt build --full-refresh``), as after a
    change to their SQL. ``unit_tests``: run dbt's unit tests too. A resource, not op
    config, because Dagster may run the dbt assets as several steps in one run, and
    they must all agree.
    """

    as_of: str = ""
    insiders_definition: str = ""
    full_refresh: bool = False
    unit_tests: bool = False

    def dbt_flags(self) -> list[str]:
        """dbt flags of every dbt step of the run. dbt's unit tests check the SQL on
        fixed inputs, not the data: they run in CI, in ``insiders build`` and with
        ``unit_tests: true``, not in every run (2 to 4 s of a run on the real data)."""
        flags = ["--full-refresh"] if self.full_refresh else []
        if not self.unit_tests:
            flags += ["--exclude", "resource_type:unit_test"]
        return flags

    def dbt_vars(self) -> dict[str, str]:
        """The dbt vars of the run, each checked where it enters."""
        from models_py.insiders_definitions import DEFINITIONS

        out: dict[str, str] = {}
        if self.as_of:
            try:
                out["as_of"] = date.fromisoformat(self.as_of.strip()).isoformat()
            except ValueError:
                raise ValueError(
                    f"settings.as_of: not a date (YYYY-MM-DD): {self.as_of!r}"
                ) from None
        if self.insiders_definition:
            if self.insiders_definition not in DEFINITIONS:
                raise ValueError(
                    f"settings.insiders_definition: unknown definition "
                    f"{self.insiders_definition!r}; one of {', '.join(DEFINITIONS)}"
                )
            out["insiders_definition"] = self.insiders_definition
        return out


class BiSnapshotResource(ConfigurableResource):
    """Where the BI snapshot is published: ``directory``, else ``$INSIDERS_BI_DIR``,
    else ``bi/`` beside the warehouse file."""

    directory: str = ""

    def resolve(self, warehouse: Warehouse) -> Path:
        return resolve_bi_dir(warehouse, self.directory or None)
