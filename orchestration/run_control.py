"""One run at a time, and a run that lands whole or not at all.

DuckDB lets one process write a database file. Two runs at once used to fail deep in
a traceback (``Could not set lock on file``), a reader holding the file made a writer
fail at once, and a run killed in its last dbt step left ``ml.*`` of the killed run
beside ``insiders.*`` of the previous one. Three mechanisms fix that:

- **The warehouse lock** (:class:`WarehouseLock`): an exclusive ``flock`` on
  ``.<warehouse>.lock`` beside the warehouse, held by every writer (a run, ``insiders
  load``) for its whole duration. A second writer waits for it, after one line naming
  the holder, or gives up at once with that line (``--no-wait``). The kernel releases
  the lock when its process dies, so a killed run never blocks the next one.
- **The work copy** (:func:`start_work`, :func:`promote`, :func:`discard`): a run
  writes a copy of the warehouse in ``.work/`` beside it, never the warehouse itself;
  when every step succeeded, the copy is renamed over the warehouse in one atomic
  rename. A failed or killed run leaves the previous complete warehouse untouched
  (labels and the marts built on them from the same run), and readers of the
  warehouse never block a run: they keep the file they opened.
- **Dead runs in Dagster's storage** (:func:`fail_dead_runs`): a run killed with
  ``kill -9`` stays ``STARTED`` in Dagster's run storage, and with
  ``max_concurrent_runs: 1`` it would block the queue for ever. Every run holds a lock
  on its own file under ``.runs/``, tagged on the run; a ``STARTED`` run whose lock
  file is free has no process any more and is marked failed.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from models_py.locations import DUCKDB_CONFIG
from orchestration.warehouse import connect, path_literal

WORK_DIR = ".work"
RUNS_DIR = ".runs"
RUN_LOCK_TAG = "insiders/run_lock"
FAILED_PREFIX = "failed-"


class WarehouseBusy(RuntimeError):
    """Another process holds the warehouse and the caller chose not to wait."""


def lock_path(warehouse: Path) -> Path:
    return warehouse.parent / f".{warehouse.name}.lock"


def work_path(warehouse: Path) -> Path:
    """Where a run writes: the same file name (DuckDB names its catalog after it, and
    dbt's partial parsing keys on the path) in ``.work/`` beside the warehouse."""
    return warehouse.parent / WORK_DIR / warehouse.name


def _wal(path: Path) -> Path:
    return path.with_name(path.name + ".wal")


@dataclass(frozen=True)
class Holder:
    """Who holds the warehouse lock, as the holder wrote it."""

    pid: int | None
    owner: str
    since: str

    def __str__(self) -> str:
        pid = f"pid {self.pid}" if self.pid else "unknown process"
        return f"{self.owner} ({pid}, since {self.since})"


def read_holder(warehouse: Path) -> Holder:
    try:
        data = json.loads(lock_path(warehouse).read_text() or "{}")
    except (OSError, ValueError):
        data = {}
    return Holder(data.get("pid"), data.get("owner", "another process"), data.get("since", "?"))


class WarehouseLock:
    """The exclusive writer lock of one warehouse (see the module docstring).

    ``flock`` locks belong to an open file: a second ``WarehouseLock`` on the same
    warehouse waits even inside the same process, so take it once per writer.
    """

    def __init__(self, warehouse: Path, owner: str) -> None:
        self.warehouse = warehouse
        self.owner = owner
        self._fd: int | None = None

    def acquire(self, wait: bool = True, notify: Callable[[str], Any] | None = None) -> None:
        path = lock_path(self.warehouse)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = read_holder(self.warehouse)
                if not wait:
                    raise WarehouseBusy(
                        f"{self.warehouse} is busy: {holder} is writing it; "
                        "try again when it has finished"
                    ) from None
                if notify is not None:
                    notify(f"waiting for {holder} to finish with {self.warehouse}")
                fcntl.flock(fd, fcntl.LOCK_EX)
            os.ftruncate(fd, 0)
            stamp = {
                "pid": os.getpid(),
                "owner": self.owner,
                "since": time.strftime("%Y-%m-%d %H:%M:%S"),
            }
            os.pwrite(fd, json.dumps(stamp).encode(), 0)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(self._fd, 0)
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> WarehouseLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def start_work(warehouse: Path) -> Path:
    """A fresh work copy of the warehouse (hold the lock): what is left in ``.work/``
    by a killed run is removed, except the last failed run's copy kept for inspection.

    A WAL left beside the warehouse by a crashed writer is first folded into it
    (opening and closing it checkpoints it), so that publishing never has to delete a
    WAL of the warehouse."""
    work = work_path(warehouse)
    work.parent.mkdir(parents=True, exist_ok=True)
    for leftover in (work, _wal(work), _compact(work), _wal(_compact(work))):
        leftover.unlink(missing_ok=True)
    if _wal(warehouse).exists():
        with contextlib.suppress(duckdb.Error):  # a reader holds it: copy the WAL along
            _checkpoint(warehouse)
    if warehouse.exists():
        shutil.copyfile(warehouse, work)
        if _wal(warehouse).exists():
            # A writer that crashed left its last transactions in the WAL: carry them,
            # DuckDB replays them when the copy is opened.
            shutil.copyfile(_wal(warehouse), _wal(work))
    return work


def _compact(work: Path) -> Path:
    return work.with_name(f"compact-{work.name}")


def promote(
    warehouse: Path,
    work: Path,
) -> None:
    """Make the work copy the warehouse, compacted, in one rename.

    A DuckDB file keeps the blocks of replaced tables as free space: the real data's
    warehouse went from 40 to 61 MB over re-runs. So the finished copy is rewritten by
    DuckDB (``COPY FROM DATABASE``: every schema, table, view and constraint; 0.4 s for
    40 MB), holding live data only, and that is renamed over the warehouse. Should DuckDB
    refuse, the work copy itself is, once its WAL is folded into the file.
    The warehouse's own WAL, if a crash left one, is already inside the copy: it is
    removed before the rename, so it can never be replayed over the new file.
    """
    compact = _compact(work)
    try:
        _compacted_copy(work, compact)
        final = compact
    except duckdb.Error:  # DuckDB refused: publish the work copy as it is
        for leftover in (compact, _wal(compact)):
            leftover.unlink(missing_ok=True)
        if _wal(work).exists():
            _checkpoint(work)
        final = work
    if _wal(final).exists():
        raise RuntimeError(f"{final} still has a write-ahead log: not published")
    _wal(warehouse).unlink(missing_ok=True)
    os.replace(final, warehouse)
    for leftover in (work, _wal(work)):
        leftover.unlink(missing_ok=True)


def _checkpoint(path: Path) -> None:
    connect(path).close()  # DuckDB checkpoints a file when its last connection closes


# The copy streams table by table; more memory only lets DuckDB buffer more of it (under
# the default limit it took 1.76 GiB at 30x the real data, 1.07 GiB with this one).
_COMPACTION_MEMORY = "1GB"


def _compacted_copy(source: Path, target: Path) -> None:
    """``COPY FROM DATABASE`` into a new file, under a memory limit of its own, spilling
    beside the warehouse (an in-memory database would spill into the current folder)."""
    spill = target.parent / ".tmp"
    con = duckdb.connect(
        ":memory:",
        config={**DUCKDB_CONFIG, "memory_limit": _COMPACTION_MEMORY, "temp_directory": str(spill)},
    )
    try:
        # ATTACH takes no parameters: the paths are ours (beside the validated warehouse).
        con.execute(f"attach {path_literal(source)} as source_db (read_only)")
        con.execute(f"attach {path_literal(target)} as work_db")
        con.execute("copy from database source_db to work_db")
        con.execute("checkpoint work_db")
    finally:
        con.close()
        shutil.rmtree(spill, ignore_errors=True)


def failed_copy(warehouse: Path, run_id: str) -> Path:
    """Where :func:`discard` keeps the copy of a run that failed or could not publish."""
    return work_path(warehouse).with_name(f"{FAILED_PREFIX}{run_id}.duckdb")


def discard(warehouse: Path, work: Path, run_id: str) -> Path | None:
    """Keep a failed run's copy as ``.work/failed-<run>.duckdb`` (only the last one) for
    inspection; the warehouse itself is untouched. Returns the kept copy's path."""
    for leftover in (_compact(work), _wal(_compact(work))):
        leftover.unlink(missing_ok=True)
    if not work.exists():
        return None
    for old in work.parent.glob(f"{FAILED_PREFIX}*"):
        old.unlink(missing_ok=True)
    kept = failed_copy(warehouse, run_id)
    os.replace(work, kept)
    if _wal(work).exists():
        os.replace(_wal(work), _wal(kept))
    return kept


@contextlib.contextmanager
def writing(
    warehouse: Path,
    owner: str,
    wait: bool = True,
    notify: Callable[[str], Any] | None = None,
) -> Iterator[Path]:
    """Hold the lock and yield a work copy; publish it if the block ends normally,
    keep the warehouse as it was if it raises (a writer outside Dagster: a load)."""
    lock = WarehouseLock(warehouse, owner)
    lock.acquire(wait=wait, notify=notify)
    try:
        work = start_work(warehouse)
        try:
            yield work
        except BaseException:
            discard(warehouse, work, time.strftime("%Y%m%dT%H%M%S"))
            raise
        promote(warehouse, work)
    finally:
        lock.release()


# --- runs in Dagster's storage --------------------------------------------------------


class RunLock:
    """A lock held by a live run on its own file, so others can tell it is alive."""

    def __init__(self, warehouse: Path, run_id: str) -> None:
        self.path = warehouse.parent / RUNS_DIR / f"{run_id}.lock"
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self._fd = fd

    def release(self) -> None:
        """Remove the file while still holding it: a run that ends normally leaves no
        file, so it can never look dead (only a killed run leaves a free lock file)."""
        self.path.unlink(missing_ok=True)
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def is_dead(lock_file: str | os.PathLike[str]) -> bool:
    """True when ``lock_file`` is there but no process holds it: its run was killed.

    A missing file is a run that ended (it removes the file before letting go), or one
    that is ending: not dead."""
    try:
        fd = os.open(lock_file, os.O_RDWR)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)  # closing releases a lock taken just above
    return True


def fail_dead_runs(instance: Any, exclude: str | None = None) -> list[str]:
    """Mark failed every STARTED run whose process is gone (its run lock is free).

    Only runs tagged with a run lock are judged: a run without one never reached the
    warehouse, and another project's runs are not ours to touch.
    """
    from dagster import DagsterRunStatus, RunsFilter

    failed = []
    runs = instance.get_runs(
        filters=RunsFilter(statuses=[DagsterRunStatus.STARTED, DagsterRunStatus.CANCELING])
    )
    for run in runs:
        lock_file = run.tags.get(RUN_LOCK_TAG)
        if not lock_file or run.run_id == exclude or not is_dead(lock_file):
            continue
        instance.report_run_failed(
            run, "the run's process is gone (killed?): marked failed by the next run"
        )
        Path(lock_file).unlink(missing_ok=True)
        failed.append(run.run_id)
    return failed


def run_succeeded_so_far(instance: Any, run_id: str) -> bool:
    """The run is started or succeeded (not cancelling, not marked failed) and no step
    failed: its work may be published."""
    from dagster import DagsterEventType, DagsterRunStatus

    run = instance.get_run_by_id(run_id)
    # Teardown may come before or after Dagster records the run's success; anything
    # else (cancelling, failed, marked failed by another process) is not published.
    if run is None or run.status not in (DagsterRunStatus.STARTED, DagsterRunStatus.SUCCESS):
        return False
    failures = instance.get_records_for_run(
        run_id, of_type={DagsterEventType.STEP_FAILURE}, limit=1
    ).records
    return not failures
