"""The Spark target: where its tables live, and the one Spark session of a process.

A store whose data outgrows one machine points the same project at its Spark. Every
setting comes from the environment (the same variables ``profiles/profiles.yml``
gives dbt-spark), none is pasted into SQL:

* ``INSIDERS_SPARK_WAREHOUSE``: the tables' directory (``spark.sql.warehouse.dir``;
  any URI Spark reads: a folder, ``hdfs://``, ``s3a://``). Default: ``spark/tables``
  beside the ``--warehouse`` path (``warehouse/spark/tables``).
* ``INSIDERS_SPARK_METASTORE``: the folder of the local session's Hive metastore (an
  embedded Derby database). Default: ``spark/metastore`` beside the tables. A cluster
  brings its own metastore (``INSIDERS_SPARK_REMOTE``).
* ``INSIDERS_SPARK_MASTER``: the master of a local session (default ``local[2]``).
* ``INSIDERS_SPARK_DRIVER_MEMORY``: the driver's memory (default ``2g``).
* ``INSIDERS_SPARK_SHUFFLE_PARTITIONS``: ``spark.sql.shuffle.partitions`` (default 8:
  Spark's 200 cost more than they save at one machine's sizes; raise it on a cluster).
* ``INSIDERS_SPARK_REMOTE``: a Spark Connect URL (``sc://host:15002``); the Python
  steps then run against the cluster instead of a local session (dbt reaches the same
  cluster through its ``thrift`` method: see ``profiles/profiles.yml``).

The local files of a Spark warehouse (models, reports, the BI snapshot, dbt's target
folder, the run lock) go in ``spark/`` beside the ``--warehouse`` path, as a PostgreSQL
warehouse's go in ``postgres/<database>/``.

One session per process: :func:`session` starts it (or returns the running one) and
:func:`stop_session` ends it. dbt-spark's ``session`` method calls
``SparkSession.builder.getOrCreate()`` in the same process, so dbt and the Python steps
of a run share the session, its metastore and its tables.
"""

from __future__ import annotations

import os
import re
import socket
import sys
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestration.warehouse import WarehouseError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

LOCAL_FOLDER = "spark"
WAREHOUSE_DIR_ENV = "INSIDERS_SPARK_WAREHOUSE"
METASTORE_ENV = "INSIDERS_SPARK_METASTORE"
MASTER_ENV = "INSIDERS_SPARK_MASTER"
DRIVER_MEMORY_ENV = "INSIDERS_SPARK_DRIVER_MEMORY"
SHUFFLE_PARTITIONS_ENV = "INSIDERS_SPARK_SHUFFLE_PARTITIONS"
REMOTE_ENV = "INSIDERS_SPARK_REMOTE"
DEFAULT_MASTER = "local[2]"
DEFAULT_DRIVER_MEMORY = "2g"
DEFAULT_SHUFFLE_PARTITIONS = "8"
APP_NAME = "insiders"
CONNECT_TIMEOUT_SECONDS = 10
_CONNECT_URL = re.compile(r"sc://(?:[^@/]*@)?([A-Za-z0-9.-]+|\[[0-9A-Fa-f:]+\])(?::(\d+))?(/.*)?")
_MASTER = re.compile(r"local(\[(\d+|\*)\])?|spark://[A-Za-z0-9.-]+:\d+(,[A-Za-z0-9.-]+:\d+)*")
_MEMORY = re.compile(r"\d+[kmgt]?", re.IGNORECASE)
_POSITIVE = re.compile(r"[1-9]\d*")
# A path Spark passes through its JVM options and SQL text: no quotes, backslashes or
# control characters (spaces are quoted).
_UNSAFE_PATH = re.compile(r"['\"\\\x00-\x1f`]")

# pyspark 4 warns, when a session starts, that pandas 3 is not "fully" supported: the
# paths used here (Arrow transfers, mapInPandas) are tested with it.
warnings.filterwarnings(
    "ignore", message="PySpark does not yet fully support pandas", category=FutureWarning
)

_WORKER_WARNINGS = "ignore:PySpark does not yet fully support pandas:FutureWarning"

_LOCK = threading.Lock()
_SESSION: dict[str, Any] = {}


@dataclass(frozen=True)
class SparkWarehouse:
    """A Spark catalog as a warehouse: ``local`` is the folder of its local files
    (``spark/`` beside the ``--warehouse`` path); the tables live in :attr:`tables`."""

    local: Path
    # The name of a Spark temporary view of ``customer_id``s: the driver-side steps then
    # read only those customers' rows (a sample; ``orchestration.spark_evaluation``).
    sample: str | None = None

    @property
    def parent(self) -> Path:
        """The folder that holds models/, reports/, bi/ and .dbt/, as a DuckDB
        warehouse file's folder does."""
        return self.local

    @property
    def tables(self) -> str:
        """``spark.sql.warehouse.dir``: ``$INSIDERS_SPARK_WAREHOUSE``, else
        ``<local>/tables``."""
        chosen = os.environ.get(WAREHOUSE_DIR_ENV)
        if chosen:
            return chosen if "://" in chosen else str(Path(chosen).expanduser().resolve())
        return str(self.local / "tables")

    @property
    def metastore(self) -> Path:
        """The embedded metastore's folder of a local session."""
        chosen = os.environ.get(METASTORE_ENV)
        if chosen:
            return Path(chosen).expanduser().resolve()
        if os.environ.get(WAREHOUSE_DIR_ENV) and "://" not in os.environ[WAREHOUSE_DIR_ENV]:
            return Path(self.tables).parent / "metastore"
        return self.local / "metastore"

    def describe(self) -> str:
        remote = os.environ.get(REMOTE_ENV)
        if remote:
            return f"Spark Connect {remote.split('@')[-1]} (tables in {self.tables})"
        return f"local Spark {master()} (tables in {self.tables})"

    def session(self) -> SparkSession:
        return session(self)


def local_folder(warehouse: Path) -> Path:
    """The local files' folder of a Spark warehouse, beside the ``--warehouse`` path."""
    return warehouse.parent / LOCAL_FOLDER


def master() -> str:
    return os.environ.get(MASTER_ENV) or DEFAULT_MASTER


def session_config(warehouse: SparkWarehouse) -> dict[str, str]:
    """The configuration of a local session (the same as the dbt profile's
    ``server_side_parameters``)."""
    metastore = warehouse.metastore
    return {
        "spark.master": master(),
        "spark.app.name": APP_NAME,
        "spark.driver.memory": os.environ.get(DRIVER_MEMORY_ENV) or DEFAULT_DRIVER_MEMORY,
        "spark.sql.warehouse.dir": warehouse.tables,
        "spark.sql.catalogImplementation": "hive",
        "spark.hadoop.javax.jdo.option.ConnectionURL": (
            f"jdbc:derby:;databaseName={metastore / 'metastore_db'};create=true"
        ),
        # Quoted: Spark splits the options like a shell (a folder may hold spaces).
        "spark.driver.extraJavaOptions": f'"-Dderby.system.home={metastore}"',
        # The tasks' Python workers run this interpreter (its packages: pandas,
        # scikit-learn, the project), not whatever python3 is first on the PATH.
        "spark.pyspark.python": sys.executable,
        "spark.pyspark.driver.python": sys.executable,
        # An embedded metastore held by another process fails at once, not after a
        # minute of Hive's retries (there is nothing a retry could wait for).
        "spark.hadoop.hive.hmshandler.retry.attempts": "1",
        "spark.hadoop.hive.metastore.failure.retries": "1",
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.shuffle.partitions": os.environ.get(SHUFFLE_PARTITIONS_ENV)
        or DEFAULT_SHUFFLE_PARTITIONS,
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.sources.partitionOverwriteMode": "dynamic",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        # A write of a table's new version never leaves _SUCCESS or .crc files that
        # DuckDB's read_parquet would trip over.
        "spark.hadoop.mapreduce.fileoutputcommitter.marksuccessfuljobs": "false",
        "spark.hadoop.parquet.enable.summary-metadata": "false",
    }


def session(warehouse: SparkWarehouse) -> SparkSession:
    """The process's Spark session, started on first use for ``warehouse``.

    A session's catalog is fixed when it starts: asked for another warehouse, the
    running session is stopped and a new one started (about a second in the same JVM;
    a process works on one warehouse at a time)."""
    with _LOCK:
        current = _SESSION.get("session")
        if current is not None:
            if _SESSION["tables"] == warehouse.tables:
                return current
            _SESSION.clear()
            current.stop()
        try:
            with warnings.catch_warnings():
                # pyspark 4 warns at import that pandas 3 is not "fully" supported:
                # the paths used here (Arrow, mapInPandas) are tested with it.
                warnings.simplefilter("ignore", FutureWarning)
                from pyspark.sql import SparkSession
        except ImportError:
            raise WarehouseError(
                "the spark target needs pyspark: pip install 'pyspark>=4.0' 'dbt-spark[session]'"
            ) from None
        remote = os.environ.get(REMOTE_ENV)
        if remote:
            spark = _remote_session(SparkSession, remote)
        else:
            spark = _local_session(SparkSession, warehouse)
        _SESSION.update(session=spark, tables=warehouse.tables)
        return spark


def check_settings(warehouse: SparkWarehouse) -> None:
    """Every setting of a local session checked where it enters: one line naming the
    variable and the value (Spark itself would only say its JVM exited)."""
    checks = (
        (MASTER_ENV, master(), _MASTER, "local, local[N], local[*] or spark://host:port"),
        (
            DRIVER_MEMORY_ENV,
            os.environ.get(DRIVER_MEMORY_ENV) or DEFAULT_DRIVER_MEMORY,
            _MEMORY,
            "a size such as 2g or 512m",
        ),
        (
            SHUFFLE_PARTITIONS_ENV,
            os.environ.get(SHUFFLE_PARTITIONS_ENV) or DEFAULT_SHUFFLE_PARTITIONS,
            _POSITIVE,
            "a whole number of at least 1",
        ),
    )
    for name, value, pattern, expected in checks:
        if not pattern.fullmatch(value.strip()):
            raise WarehouseError(f"${name}: {value!r} is not {expected}")
    for what, place in (("tables", warehouse.tables), ("metastore", str(warehouse.metastore))):
        if _UNSAFE_PATH.search(place):
            raise WarehouseError(
                f"the Spark {what} folder may not hold quotes, backslashes or control "
                f"characters: {place!r} (set ${WAREHOUSE_DIR_ENV} / ${METASTORE_ENV})"
            )


def _local_session(builder_class: Any, warehouse: SparkWarehouse) -> SparkSession:
    """A local session over ``warehouse``, its catalog reachable; every failure one
    :class:`WarehouseError` line (the details in ``spark/logs/spark.log``)."""
    check_settings(warehouse)
    log = warehouse.local / "logs" / "spark.log"
    try:
        warehouse.metastore.mkdir(parents=True, exist_ok=True)
        if "://" not in warehouse.tables:
            Path(warehouse.tables).mkdir(parents=True, exist_ok=True)
        log.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise WarehouseError(
            f"cannot create the Spark warehouse's folders: {exc.strerror}: {exc.filename}"
        ) from None
    # SparkContext reads the workers' interpreter from the environment, and the workers
    # inherit it: the same pandas-3 warning silenced there too.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYTHONWARNINGS", _WORKER_WARNINGS)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    builder = builder_class.builder
    for key, value in session_config(warehouse).items():
        builder = builder.config(key, value)
    try:
        with _jvm_output(log):
            spark = builder.enableHiveSupport().getOrCreate()
    except Exception as exc:  # Java missing, a port taken
        raise WarehouseError(
            f"Spark did not start ({master()}, driver memory "
            f"{os.environ.get(DRIVER_MEMORY_ENV) or DEFAULT_DRIVER_MEMORY}): "
            f"{_first_line(exc)} (its log: {log})"
        ) from None
    spark.sparkContext.setLogLevel("ERROR")
    try:
        spark.catalog.listDatabases()  # the metastore, now: not in the middle of a step
    except Exception as exc:
        spark.stop()
        held = "another process holds it" if "metastore" in str(exc).lower() else ""
        raise WarehouseError(
            f"Spark's metastore {warehouse.metastore} cannot be opened"
            + (
                f": {held} (a local session's metastore takes one process at a time)"
                if held
                else f": {_first_line(exc)}"
            )
        ) from None
    return spark


def _remote_session(builder_class: Any, remote: str) -> SparkSession:
    """A Spark Connect session; a failure is one line (the URL without credentials)."""
    shown = remote.split("@")[-1]
    found = re.fullmatch(
        r"sc://(?:[^@/]*@)?([A-Za-z0-9.-]+|\[[0-9A-Fa-f:]+\])(?::(\d+))?(/.*)?", remote
    )
    if found is None:
        raise WarehouseError(f"${REMOTE_ENV}: not a Spark Connect URL (sc://host:port): {shown!r}")
    host, port = found.group(1).strip("[]"), int(found.group(2) or 15002)
    try:  # gRPC would retry an unreachable server for minutes
        socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_SECONDS).close()
    except OSError as exc:
        raise WarehouseError(
            f"${REMOTE_ENV}: Spark Connect at {shown} cannot be reached: {exc.strerror or exc}"
        ) from None
    try:
        spark = builder_class.builder.remote(remote).getOrCreate()
        spark.catalog.listDatabases()
    except Exception as exc:
        raise WarehouseError(
            f"${REMOTE_ENV}: Spark Connect at {shown} cannot be used: {_first_line(exc)}"
        ) from None
    return spark


def running() -> bool:
    """Whether this process has a Spark session."""
    return _SESSION.get("session") is not None


def stop_session() -> None:
    """Stop the process's Spark session (and its JVM's hold on the local metastore)."""
    with _LOCK:
        spark = _SESSION.pop("session", None)
        _SESSION.pop("tables", None)
        if spark is not None:
            spark.stop()


@contextmanager
def _jvm_output(log: Path) -> Iterator[None]:
    """Quiet by default: the JVM Spark launches inherits this process's standard error
    at birth and writes its warnings there for its whole life (log4j's banner, the
    JDK's incubator notice, the host's address). Point that inherited descriptor at
    ``log`` while the JVM starts; with ``$INSIDERS_VERBOSE`` it stays the terminal."""
    if os.environ.get("INSIDERS_VERBOSE"):
        yield
        return
    log.parent.mkdir(parents=True, exist_ok=True)
    sys.stderr.flush()
    saved = os.dup(2)
    target = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.dup2(target, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(target)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]
