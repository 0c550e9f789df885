"""Dagster resources: the warehouse connection, opened only while a step needs it."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import duckdb
from dagster import ConfigurableResource, InitResourceContext
from pydantic import PrivateAttr

from models_py.locations import resolve_bi_dir
from orchestration import run_control
from orchestration.ml_tables import ensure_ml_tables
from orchestration.warehouse import check_warehouse, connect


class WarehouseResource(ConfigurableResource):
    """The DuckDB warehouse of a run: one run at a time, landing whole or not at all.

    ``path`` is the warehouse file. During a run, the steps write a work copy of it
    (``file``) while the run holds the warehouse lock; when every step succeeded the
    copy replaces the warehouse in one rename, otherwise the warehouse stays as the
    last complete run left it (see ``orchestration.run_control``). ``wait``: a run
    that finds the warehouse busy waits for it (False: fails at once, naming the
    holder). Steps open the file briefly: DuckDB allows one writer process.
    """

    path: str
    wait: bool = True

    _work: Path | None = PrivateAttr(default=None)
    _lock: run_control.WarehouseLock | None = PrivateAttr(default=None)
    _run_lock: run_control.RunLock | None = PrivateAttr(default=None)

    @property
    def file(self) -> Path:
        """The database file steps read and write: the run's work copy during a run."""
        return self._work or Path(self.path)

    def connect(self, read_only: bool = False) -> duckdb.DuckDBPyConnection:
        """Open the run's file; a writer also makes sure the ``ml`` tables exist, so the
        dbt sources over them resolve before the first clustering."""
        con = connect(self.file, read_only=read_only)
        if not read_only:
            ensure_ml_tables(con)
        return con

    def setup_for_execution(self, context: InitResourceContext) -> None:
        run_id, instance = _run_id(context), context.instance
        if not run_id:  # built outside a run (a test, a script): use the file itself
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

    def resolve(self, warehouse: Path) -> Path:
        return resolve_bi_dir(warehouse, self.directory or None)
