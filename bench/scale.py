"""Benchmark: the whole graph at N times the real data, per stage wall time and peak memory.

    .venv/bin/python bench/scale.py --factors 1,10,30,100 [--json scale.json]
        [--data-root /tmp/insiders-scale] [--code DIR] [--keep] [--echo]
    .venv/bin/python bench/scale.py --target postgres --factors 1,10 [--repeat 2]
    .venv/bin/python bench/scale.py --target spark --factors 1,10 [--repeat 2]
    .venv/bin/python bench/scale.py --merge a.json b.json   # one table of saved runs

For each factor: the data (``bench/scale_data.py``, generated into
``<data-root>/<N>x`` when not already complete there), then ``insiders run --warehouse
<fresh tmp warehouse> --source <data>`` in a subprocess, its output read line by line
as it comes and the RSS of its whole process tree (the command and every child it
starts) summed from ``/proc`` every 50 ms.

Stages, from what the run prints (stdout and stderr both read, so that both of these
work):

* one line per Dagster step as it finishes, ``<step>  <seconds> s  <key figure>``
  (what ``insiders run`` prints once its quiet output lands);
* Dagster's DEBUG event log, ``STEP_START - Started execution of step "X"`` and
  ``STEP_SUCCESS - Finished execution of step "X" in 1.45s.`` (what it prints before).

``startup`` is everything before the first step starts (imports, definitions, dbt
parse), each step runs from the end of the stage before it to its line (so Dagster's
own time between two steps is counted in the step after it, and the stages add up to
the total), and ``publish`` is everything after the last step line until the command
exits (the all-or-nothing publication of the work copy, the summary). A stage's peak is
the largest tree RSS sampled in it. Prints the machine, a Markdown table (stage x
factor: seconds and peak GiB) and, with ``--json``, writes every figure (with the
steps' own reported seconds and key figures).

``--code DIR`` runs the ``insiders`` code of another checkout (e.g. ``git archive HEAD``
unpacked) with this venv: measure one commit while the work tree is being edited.

``--target postgres`` runs ``insiders run --target postgres`` instead, each factor in a
fresh database of the server the ``PG*`` variables name (created by that role, which
needs ``CREATEDB``, and dropped afterwards: ``bench/pg_server.py``); the local files go
to ``postgres/<database>/`` beside the tmp warehouse path. The tree's RSS is then the
client's only (the SQL runs in the server's processes), so the server is sampled too
(every 100 ms, in a thread): the RSS of the backends serving the run's database, and
the PSS of every process of the server (see ``bench/pg_server.py`` for what each
counts). The table gains those two peaks per stage, and the server's version and
settings are printed. Without ``--target`` the command and the figures are the DuckDB
ones, as they always were (``--target duckdb`` passes ``--target duckdb`` on).
``--target spark`` runs ``insiders run --target spark``: a local Spark session
(``orchestration/spark.py``: ``local[2]``, 2 GB driver unless ``INSIDERS_SPARK_MASTER``
/ ``INSIDERS_SPARK_DRIVER_MEMORY`` say otherwise) whose tables and Derby metastore go in
``spark/`` beside the fresh tmp warehouse path, so every factor starts from an empty
catalog (``INSIDERS_SPARK_WAREHOUSE``, ``INSIDERS_SPARK_METASTORE`` and
``INSIDERS_SPARK_REMOTE`` are cleared for the run: they would send it to another
catalog or a cluster). The JVM is a child of the ``insiders`` process (pyspark starts
it through ``spark-submit``) and the tasks' Python workers are the JVM's children, so
the tree's RSS is the whole of Spark's memory: driver heap and off-heap, workers,
dbt and the Python steps. The Spark settings, pyspark's and Java's versions are
printed and kept (``server`` in the ``--json`` figures), and a table per factor
measured on both DuckDB and Spark gives each stage's Spark/DuckDB ratio.
``--timeout SECONDS`` stops a run that takes longer (its whole tree, the JVM
included): the stages it finished are kept, the one it was in is named ``stopped``.
``--repeat N`` measures each factor N times in a row. The 1-minute load average before
and after each run is printed and kept: the machine may be shared.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # run as a script: bench/ is sys.path[0], not the root
    sys.path.insert(0, str(REPO_ROOT))

from bench.pg_server import (  # noqa: E402
    SERVER_SAMPLE_SECONDS,
    BenchDatabaseError,
    ServerSample,
    ServerSampler,
    admin_connect,
    peaks,
    scratch_database,
    server_settings,
)
from bench.scale_data import REAL_DATA, generate  # noqa: E402

# Dagster's step keys under the names the quiet CLI prints for them, so that tables of
# runs before and after it line up; dbt's steps are numbered in run order: dbt-1, ...
from orchestration.progress import DBT_STEP_PREFIX  # noqa: E402
from orchestration.progress import STAGES as STAGE_NAMES  # noqa: E402

BIN = Path(sys.executable).parent
SAMPLE_SECONDS = 0.05
GIB = 1024**3
PAGE = os.sysconf("SC_PAGE_SIZE")
# The quiet CLI's line per finished step.
STEP_LINE = re.compile(r"^(\S+)\s+([0-9]+(?:\.[0-9]+)?) s\b(.*)$")
# Dagster's event log (the CLI before the quiet output, or with --verbose).
DAGSTER_START = re.compile(r'STEP_START - Started execution of step "([^"]+)"')
DAGSTER_END = re.compile(
    r'STEP_(SUCCESS|FAILURE) - (?:Finished execution of step|Execution of step) "([^"]+)"'
    r"(?: in ((?:[0-9]+(?:\.[0-9]+)?(?:ms|h|m|s))+))?"
)
STEP_FAILED_LINE = re.compile(r"^(\S+)\s+FAILED\s*$")
DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|h|m|s)")
# Variables that would send the run elsewhere than the fresh warehouse and the data.
CLEARED_ENV = (
    "INSIDERS_WAREHOUSE",
    "INSIDERS_SOURCE",
    "INSIDERS_BI_DIR",
    "INSIDERS_BI_SNAPSHOT",
    "DAGSTER_HOME",
)
# Spark only: variables that would put the run's tables in another catalog (or on a
# cluster) than the fresh one beside the tmp warehouse. The master, driver memory and
# shuffle partitions are kept: they are the settings being measured (and printed).
CLEARED_SPARK_ENV = (
    "INSIDERS_SPARK_WAREHOUSE",
    "INSIDERS_SPARK_METASTORE",
    "INSIDERS_SPARK_REMOTE",
)


def parse_duration(text: str) -> float | None:
    """Dagster's ``format_duration`` (``0.83ms``, ``533ms``, ``5.6s``, ``4m52s``,
    ``1h4m``) in seconds; None for anything else."""
    parts = DURATION_PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        return None
    unit = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    return sum(float(n) * unit[u] for n, u in parts)


@dataclass(frozen=True)
class StepEvent:
    """A step starting or finishing, as read from one line of the run's output."""

    kind: str  # "start", "finish" (quiet CLI) or "dagster_finish" (Dagster's log)
    step: str
    seconds: float | None = None
    figure: str = ""
    failed: bool = False


def parse_line(line: str) -> StepEvent | None:
    """The step event ``line`` reports, if any, in either output format."""
    line = line.rstrip("\r\n")
    match = DAGSTER_START.search(line)
    if match:
        return StepEvent("start", match.group(1))
    match = DAGSTER_END.search(line)
    if match:
        seconds = parse_duration(match.group(3) or "")
        return StepEvent(
            "dagster_finish", match.group(2), seconds, failed=match.group(1) == "FAILURE"
        )
    match = STEP_FAILED_LINE.match(line)
    if match:
        return StepEvent("finish", match.group(1), failed=True)
    match = STEP_LINE.match(line)
    if match:
        return StepEvent("finish", match.group(1), float(match.group(2)), match.group(3).strip())
    return None


@dataclass
class Stage:
    """One stage of a run: wall seconds and peak tree RSS between its two boundaries."""

    name: str
    seconds: float
    peak_bytes: int
    reported_seconds: float | None = None
    figure: str = ""
    failed: bool = False
    # PostgreSQL only (bench/pg_server.py): the backends of the run's database (RSS) and
    # the whole server (PSS), peaks sampled in the stage.
    server_backends_peak_bytes: int | None = None
    server_pss_peak_bytes: int | None = None


@dataclass
class RunFigures:
    """One factor's run: its stages, the totals and how it ended."""

    factor: int
    lines: int
    data: str
    generate_seconds: float
    generated: bool
    returncode: int
    total_seconds: float
    peak_bytes: int
    largest_process_peak_bytes: int
    samples: int
    stages: list[Stage] = field(default_factory=list)
    tail: str = ""
    target: str = "duckdb"
    database: str = ""
    server_backends_peak_bytes: int | None = None
    server_pss_peak_bytes: int | None = None
    server_samples: int = 0
    stopped_after: float | None = None  # --timeout: stopped, its last stage "stopped"
    load_average: list[float] = field(default_factory=list)  # 1-min, before and after
    server: dict[str, str] = field(default_factory=dict)  # the server's settings


def _processes() -> dict[int, tuple[int, int]]:
    """Every process's (parent pid, resident bytes), from one pass over /proc."""
    found: dict[int, tuple[int, int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as handle:
                stat = handle.read()
        except OSError:  # gone since the listing
            continue
        # The command name is in parentheses and may hold spaces: split after the last ')'.
        fields = stat[stat.rfind(b")") + 2 :].split()
        found[int(entry.name)] = (int(fields[1]), int(fields[21]) * PAGE)
    return found


def _tree(root: int, processes: dict[int, tuple[int, int]]) -> list[int]:
    """``root`` and all its descendants among ``processes``, parents before children."""
    children: dict[int, list[int]] = {}
    for pid, (parent, _) in processes.items():
        children.setdefault(parent, []).append(pid)
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, ()))
    return found


def tree_pids(root: int) -> list[int]:
    """``root`` and all its descendants (the JVM and its Python workers on Spark)."""
    return _tree(root, _processes())


def stop_pids(pids: list[int], sig: int) -> None:
    """Send ``sig`` to each of ``pids`` (a tree from :func:`tree_pids`, children first),
    so that a JVM the run started does not outlive it."""
    for pid in reversed(pids):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def tree_rss(root: int) -> int:
    """Resident bytes of ``root`` and all its descendants, from one pass over /proc."""
    processes = _processes()
    return sum(processes[pid][1] for pid in _tree(root, processes) if pid in processes)


def attribute(
    started: float,
    ended: float,
    events: list[tuple[float, StepEvent]],
    samples: list[tuple[float, int]],
) -> list[Stage]:
    """Cut the run's wall time into stages at the step lines and give each stage the
    peak of the memory samples taken in it (see the module docstring).

    The quiet CLI's lines are used when there are any (with ``--verbose`` a run may
    print both formats), else Dagster's. A step line carries the step's own seconds, so
    the first step started ``seconds`` before its line: that ends ``startup`` when no
    ``STEP_START`` was seen."""
    quiet = [(t, e) for t, e in events if e.kind == "finish"]
    finishes = quiet or [(t, e) for t, e in events if e.kind == "dagster_finish"]
    if not finishes:
        return [Stage("startup", ended - started, _peak(samples, started, ended))]
    first_time, first = finishes[0]
    starts = [t for t, e in events if e.kind == "start" and e.step == first.step]
    first_start = starts[0] if starts else first_time - (first.seconds or 0.0)
    first_start = min(max(first_start, started), first_time)
    stages = [Stage("startup", first_start - started, _peak(samples, started, first_start))]
    previous, seen = first_start, set()
    for moment, event in finishes:
        name = event.step
        while name in seen:  # a step reported twice keeps both, told apart
            name += "'"
        seen.add(name)
        stages.append(
            Stage(
                name,
                moment - previous,
                _peak(samples, previous, moment),
                event.seconds,
                event.figure,
                event.failed,
            )
        )
        previous = moment
    stages.append(Stage("publish", ended - previous, _peak(samples, previous, ended)))
    return stages


def _peak(samples: list[tuple[float, int]], start: float, end: float) -> int:
    """The largest sample in (start, end]; a stage shorter than the sampling interval
    gets the first sample after it (the memory it left behind)."""
    inside = [rss for moment, rss in samples if start < moment <= end]
    if inside:
        return max(inside)
    after = [rss for moment, rss in samples if moment > end]
    return after[0] if after else 0


def _reader(stream, sink: list[tuple[float, str]], echo: bool) -> None:
    """Stamp every line of ``stream`` with the time it arrived."""
    for line in iter(stream.readline, ""):
        sink.append((time.monotonic(), line))
        if echo:
            sys.stderr.write(line)
    stream.close()


def run_graph(
    factor: int,
    data: Path,
    work: Path,
    code: Path | None,
    echo: bool,
    target: str | None = None,
    database: str | None = None,
    timeout: float | None = None,
) -> tuple[int, float, list[Stage], int, int, int, str, list[ServerSample]]:
    """``insiders run`` on ``data`` into a fresh warehouse under ``work`` (with
    ``target``, ``--target`` passed on; with ``database``, PostgreSQL's database, whose
    server is sampled too), measured. After ``timeout`` seconds the run's whole tree is
    stopped (SIGTERM, SIGKILL 30 s later); the stages up to then are kept and the one
    it was in is named ``stopped``."""
    env = run_env(target, database, code)
    warehouse = work / "warehouse" / "insiders_warehouse.duckdb"
    warehouse.parent.mkdir(parents=True)
    command = [
        str(BIN / "insiders"),
        "run",
        *(["--target", target] if target else []),
        "--warehouse",
        str(warehouse),
        "--source",
        str(data),
    ]
    lines: list[tuple[float, str]] = []
    samples: list[tuple[float, int]] = []
    sampler = ServerSampler(database).start() if database is not None else None
    if sampler is not None and not sampler.available:
        sys.stderr.write(
            "scale: the PostgreSQL server's processes are not readable here (another "
            "machine, or another user's): its memory is left out\n"
        )
    started = time.monotonic()
    process = subprocess.Popen(
        command,
        cwd=work,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        errors="replace",
    )
    readers = [
        threading.Thread(target=_reader, args=(stream, lines, echo), daemon=True)
        for stream in (process.stdout, process.stderr)
    ]
    for reader in readers:
        reader.start()
    stopped_at: float | None = None
    stopping: list[int] = []  # the tree when it was stopped (orphans leave the tree)
    while True:
        now = time.monotonic()
        samples.append((now, tree_rss(process.pid)))
        # wait4, not poll: its rusage is this run's own (the largest process's peak).
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            break
        if timeout is not None and stopped_at is None and now - started > timeout:
            stopped_at, stopping = now, tree_pids(process.pid)
            stop_pids(stopping, signal.SIGTERM)
        elif stopped_at is not None and now - stopped_at > 30:
            stop_pids(stopping, signal.SIGKILL)
        time.sleep(SAMPLE_SECONDS)
    ended = stopped_at if stopped_at is not None else time.monotonic()
    if stopping:  # what the stopped tree left (a JVM) must not linger
        time.sleep(1)
        stop_pids([pid for pid in stopping if pid != process.pid], signal.SIGKILL)
    server_samples = sampler.stop() if sampler is not None else []
    if sampler is not None and sampler.error:
        sys.stderr.write(f"scale: the server's memory was sampled only in part: {sampler.error}\n")
    process.returncode = os.waitstatus_to_exitcode(status)
    for reader in readers:
        reader.join()
    largest = usage.ru_maxrss * 1024
    events = [(t, e) for t, line in sorted(lines) for e in [parse_line(line)] if e is not None]
    stages = attribute(started, ended, events, samples)
    if stopped_at is not None:
        stages[-1].name, stages[-1].failed = "stopped", True
    if database is not None:
        server_peaks(stages, started, server_samples)
    peak = max((rss for _, rss in samples), default=0)
    tail = "".join(line for _, line in sorted(lines)[-40:])
    return (
        process.returncode, ended - started, stages, peak, largest, len(samples), tail,
        server_samples,
    )  # fmt: skip


def run_env(target: str | None, database: str | None, code: Path | None) -> dict[str, str]:
    """The environment of a measured run: this one without the variables that would
    send it elsewhere than its fresh warehouse (on Spark, its fresh catalog too)."""
    cleared = CLEARED_ENV + (CLEARED_SPARK_ENV if target == "spark" else ())
    env = {k: v for k, v in os.environ.items() if k not in cleared}
    if database is not None:
        env["PGDATABASE"] = database
    env["PYTHONUNBUFFERED"] = "1"  # lines arrive when printed: their times are the stages'
    if code is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(code), env.get("PYTHONPATH")]))
    return env


def spark_settings() -> dict[str, str]:
    """What a local Spark run is measured with: the session's master, driver memory and
    shuffle partitions (as ``orchestration/spark.py`` reads them), pyspark's and Java's
    versions. Read without starting Spark."""
    from importlib.metadata import version

    from orchestration import spark

    try:
        java = subprocess.run(
            ["java", "-version"], capture_output=True, text=True, timeout=60, check=False
        ).stderr.splitlines()
    except (OSError, subprocess.TimeoutExpired):
        java = []
    return {
        "master": spark.master(),
        "driver_memory": os.environ.get(spark.DRIVER_MEMORY_ENV) or spark.DEFAULT_DRIVER_MEMORY,
        "shuffle_partitions": os.environ.get(spark.SHUFFLE_PARTITIONS_ENV)
        or spark.DEFAULT_SHUFFLE_PARTITIONS,
        "pyspark": version("pyspark"),
        "dbt-spark": version("dbt-spark"),
        "java": java[0] if java else "not found",
    }


def server_peaks(stages: list[Stage], started: float, samples: list[ServerSample]) -> None:
    """Give each stage the server's peaks sampled in it; the stages follow one another
    from ``started`` (their seconds add up to the run's)."""
    start = started
    for stage in stages:
        end = start + stage.seconds
        found = peaks(samples, start, end)
        stage.server_backends_peak_bytes = found["server_backends_peak_bytes"]
        stage.server_pss_peak_bytes = found["server_pss_peak_bytes"]
        start = end


def machine() -> dict[str, str | int]:
    """Cores, memory, CPU, Python and DuckDB: what the figures were measured on."""
    import duckdb

    meminfo = Path("/proc/meminfo").read_text().split("\n")
    total_kib = next(int(line.split()[1]) for line in meminfo if line.startswith("MemTotal:"))
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().split("\n")
            if line.startswith("model name")
        ),
        platform.processor() or "unknown",
    )
    return {
        "cores": os.cpu_count() or 0,
        "memory_gib": f"{total_kib / 1024**2:.1f}",
        "cpu": cpu,
        "python": platform.python_version(),
        "duckdb": duckdb.__version__,
        "platform": platform.platform(),
    }


def labelled(stages: list[Stage]) -> list[tuple[str, Stage]]:
    """Each stage with the name the quiet CLI gives it (Dagster's step keys mapped)."""
    dbt, out = 0, []
    for stage in stages:
        name = STAGE_NAMES.get(stage.name, stage.name)
        if name.startswith(DBT_STEP_PREFIX):
            dbt += 1
            name = f"dbt-{dbt}"
        out.append((name, stage))
    return out


def _is_postgres(run: RunFigures) -> bool:
    return run.target == "postgres"


def _gib(value: int | None) -> str:
    return "" if value is None else f"{value / GIB:.2f}"


def stage_names(runs: list[RunFigures]) -> list[str]:
    """Every stage the runs met, in the order they met them; startup first, publish last."""
    names: list[str] = []
    for run in runs:
        for name, _ in labelled(run.stages):
            if name not in names:
                names.append(name)
    names.sort(key=lambda n: {"startup": 0, "publish": 2, "stopped": 3}.get(n, 1))
    return names


def markdown_table(runs: list[RunFigures]) -> str:
    """Stage x factor: seconds and peak GiB, stages in the order the runs met them.

    With a PostgreSQL or Spark run among them, each column is named after its target
    too, and a PostgreSQL run has two more: the peaks of its database's backends (RSS)
    and of the whole server (PSS); its ``peak GiB`` is then the client's (the process
    tree). A Spark run's ``peak GiB`` is its tree's, the JVM included."""
    names = stage_names(runs)
    mixed = any(run.target != "duckdb" for run in runs)
    seen: dict[tuple[str, int], int] = {}
    heads = []
    for run in runs:  # the same factor measured twice: "1x #1", "1x #2"
        key = (run.target, run.factor)
        seen[key] = seen.get(key, 0) + 1
        twice = sum((r.target, r.factor) == key for r in runs) > 1
        head = f"{run.factor}x" + (f" #{seen[key]}" if twice else "")
        if mixed:
            head = f"{run.target} {head}"
        if _is_postgres(run):
            heads.append(
                f"{head} s | {head} client GiB | {head} backends GiB | {head} server PSS GiB"
            )
        else:
            heads.append(f"{head} s | {head} peak GiB")
    width = sum(4 if _is_postgres(run) else 2 for run in runs)
    header = "| stage | " + " | ".join(heads)
    rule = "|:--|" + "--:|" * width
    rows = [header + " |", rule]
    for name in names:
        cells = []
        for run in runs:
            stage = next((s for label, s in labelled(run.stages) if label == name), None)
            if stage is None:
                cells += [""] * (4 if _is_postgres(run) else 2)
                continue
            mark = " (failed)" if stage.failed else ""
            cells += [f"{stage.seconds:.1f}{mark}", f"{stage.peak_bytes / GIB:.2f}"]
            if _is_postgres(run):
                cells += [_gib(stage.server_backends_peak_bytes), _gib(stage.server_pss_peak_bytes)]
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    total = []
    for run in runs:
        failed = "" if run.returncode == 0 else f" (exit {run.returncode})"
        if run.stopped_after is not None:
            failed = f" (stopped after {run.stopped_after:.0f} s)"
        total += [f"**{run.total_seconds:.1f}**{failed}", f"**{run.peak_bytes / GIB:.2f}**"]
        if _is_postgres(run):
            total += [
                f"**{_gib(run.server_backends_peak_bytes)}**",
                f"**{_gib(run.server_pss_peak_bytes)}**",
            ]
    rows.append("| **total** | " + " | ".join(total) + " |")
    line_cells = [f"{r.lines:,} |" + (" | |" if _is_postgres(r) else "") for r in runs]
    rows.append("| lines | " + " | ".join(line_cells) + " |")
    return "\n".join(rows)


def ratio_table(runs: list[RunFigures]) -> str:
    """One table per factor measured on both targets: each stage's mean seconds on
    DuckDB and on PostgreSQL (over the runs of that factor that succeeded), their ratio,
    and the largest peaks (DuckDB's tree; PostgreSQL's client tree, its database's
    backends and the server). Then the same for DuckDB and Spark (whose tree holds the
    JVM: one peak each). Empty when no factor has both."""
    tables = [_postgres_ratio_tables(runs), _spark_ratio_tables(runs)]
    return "\n\n".join(table for table in tables if table)


def _spark_ratio_tables(runs: list[RunFigures]) -> str:
    """Per factor measured on DuckDB and on Spark: each stage's mean seconds on both
    (runs that succeeded), Spark/DuckDB, and each target's largest tree peak."""
    ok = [run for run in runs if run.returncode == 0]
    spark = [r for r in ok if r.target == "spark"]
    duck = [r for r in ok if r.target == "duckdb"]
    tables = []
    for factor in sorted({r.factor for r in spark} & {r.factor for r in duck}):
        a_runs = [r for r in duck if r.factor == factor]
        b_runs = [r for r in spark if r.factor == factor]
        rows = [
            f"| {factor}x: stage | DuckDB s (n={len(a_runs)}) | Spark s (n={len(b_runs)}) "
            "| Spark/DuckDB | DuckDB peak GiB | Spark peak GiB |",
            "|:--|" + "--:|" * 5,
        ]
        for name in [*stage_names(a_runs + b_runs), "total"]:
            rows.append(_ratio_row(name, a_runs, b_runs, digits=1, server=False))
        tables.append("\n".join(rows))
    return "\n\n".join(tables)


def _postgres_ratio_tables(runs: list[RunFigures]) -> str:
    """The DuckDB/PostgreSQL tables of :func:`ratio_table`."""
    ok = [run for run in runs if run.target in ("duckdb", "postgres") and run.returncode == 0]
    factors = sorted(
        {r.factor for r in ok if _is_postgres(r)} & {r.factor for r in ok if not _is_postgres(r)}
    )
    tables = []
    for factor in factors:
        duck = [r for r in ok if r.factor == factor and not _is_postgres(r)]
        pg = [r for r in ok if r.factor == factor and _is_postgres(r)]
        rows = [
            f"| {factor}x: stage | DuckDB s (n={len(duck)}) | PostgreSQL s (n={len(pg)}) "
            "| PG/DuckDB | DuckDB peak GiB | PG client GiB | PG backends GiB | PG server PSS GiB |",
            "|:--|" + "--:|" * 7,
        ]
        for name in [*stage_names(ok), "total"]:
            rows.append(_ratio_row(name, duck, pg, digits=2, server=True))
        tables.append("\n".join(rows))
    return "\n\n".join(tables)


def _ratio_row(
    name: str, a_runs: list[RunFigures], b_runs: list[RunFigures], digits: int, server: bool
) -> str:
    """One row of a ratio table: stage ``name``'s (or the total's) mean seconds on each
    side, their ratio to ``digits`` decimals, each side's largest peak and, with
    ``server``, the second side's database backends and server peaks."""
    total = name == "total"
    a_items = a_runs if total else _stages(a_runs, name)
    b_items = b_runs if total else _stages(b_runs, name)
    field = "total_seconds" if total else "seconds"
    a = _mean([getattr(x, field) for x in a_items])
    b = _mean([getattr(x, field) for x in b_items])
    memory = [_max([x.peak_bytes for x in a_items]), _max([x.peak_bytes for x in b_items])]
    if server:
        memory += [
            _max([x.server_backends_peak_bytes for x in b_items]),
            _max([x.server_pss_peak_bytes for x in b_items]),
        ]
    cells = [
        "" if a is None else f"{a:.1f}",
        "" if b is None else f"{b:.1f}",
        f"{b / a:.{digits}f}" if a and b is not None else "",
        *[_gib(m) for m in memory],
    ]
    label = "**total**" if total else name
    return f"| {label} | " + " | ".join(cells) + " |"


def _stages(runs: list[RunFigures], name: str) -> list[Stage]:
    return [stage for run in runs for label, stage in labelled(run.stages) if label == name]


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _max(values: list[int | None]) -> int | None:
    known = [v for v in values if v is not None]
    return max(known) if known else None


def load_runs(path: Path) -> list[RunFigures]:
    """The runs a ``--json`` file of this benchmark holds."""
    runs = []
    for raw in json.loads(path.read_text())["runs"]:
        stages = [Stage(**stage) for stage in raw.pop("stages")]
        runs.append(RunFigures(**raw, stages=stages))
    return runs


def count_lines(data: Path) -> int:
    """Invoice lines in ``data`` (every line but each file's header)."""
    total = 0
    for path in data.glob("*.csv"):
        with open(path, "rb") as handle:
            while chunk := handle.read(1 << 24):
                total += chunk.count(b"\n")
        total -= 1
    return total


def measure(
    factor: int,
    data: Path,
    lines: int,
    generate_seconds: float,
    generated: bool,
    args: argparse.Namespace,
    server: dict[str, str],
) -> RunFigures:
    """One measured run of ``factor`` (on PostgreSQL, in a database of its own), printed."""
    work = Path(tempfile.mkdtemp(prefix=f"insiders-scale-{factor}x-"))
    load_before = os.getloadavg()[0]
    database = ""
    try:
        if args.target == "postgres":
            with scratch_database(f"insiders_scale_{factor}x") as database:
                measured = run_graph(
                    factor, data, work, args.code, args.echo, args.target, database, args.timeout
                )
        else:
            measured = run_graph(
                factor, data, work, args.code, args.echo, args.target, timeout=args.timeout
            )
    except BenchDatabaseError as exc:
        raise SystemExit(str(exc)) from None
    finally:
        if args.keep:
            print(f"  kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    code, wall, stages, peak, largest, count, tail, server_samples = measured
    run = RunFigures(
        factor, lines, str(data), generate_seconds, generated, code, wall, peak, largest,
        count, stages, tail if code else "",
    )  # fmt: skip
    run.load_average = [load_before, os.getloadavg()[0]]
    if stages and stages[-1].name == "stopped":
        run.stopped_after = wall
    if args.target is not None:
        run.target = args.target
    if args.target == "spark":
        run.server = server
    if args.target == "postgres":
        run.database, run.server, run.server_samples = database, server, len(server_samples)
        run.server_backends_peak_bytes = max((s.backends_rss for s in server_samples), default=None)
        run.server_pss_peak_bytes = max((s.server_pss for s in server_samples), default=None)
    steps = ", ".join(f"{s.name} {s.seconds:.1f} s" for s in stages)
    server_peak = (
        f", server backends {_gib(run.server_backends_peak_bytes)} GiB, "
        f"PSS {_gib(run.server_pss_peak_bytes)} GiB ({len(server_samples)} samples)"
        if args.target == "postgres"
        else ""
    )
    print(
        f"  {wall:.1f} s, peak {peak / GIB:.2f} GiB{server_peak} (exit {code}; load average "
        f"{run.load_average[0]:.2f} -> {run.load_average[1]:.2f}): {steps}",
        flush=True,
    )
    if code:
        sys.stderr.write(f"insiders run failed at {factor}x (exit {code}); its last lines:\n")
        sys.stderr.write(tail)
    return run


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--factors", default="1,10", help="comma-separated, e.g. 1,10,30,100")
    parser.add_argument(
        "--data-root", type=Path, default=Path(tempfile.gettempdir()) / "insiders-scale"
    )
    parser.add_argument("--source", type=Path, default=REAL_DATA, help="the real daily files")
    parser.add_argument("--json", type=Path, help="write every figure here")
    parser.add_argument("--code", type=Path, help="run the insiders code of this checkout")
    parser.add_argument("--keep", action="store_true", help="keep the warehouses")
    parser.add_argument("--echo", action="store_true", help="echo the run's output to stderr")
    parser.add_argument(
        "--merge", type=Path, nargs="+", help="print one table of these --json files, run nothing"
    )
    parser.add_argument(
        "--target",
        choices=("duckdb", "postgres", "spark"),
        help="passed to insiders run; postgres: a fresh database per run, spark: a fresh "
        "local catalog per run (see above)",
    )
    parser.add_argument("--repeat", type=int, default=1, help="runs per factor (default 1)")
    parser.add_argument(
        "--timeout",
        type=float,
        help="stop a run after this many seconds, keeping its stages so far (default: none)",
    )
    args = parser.parse_args(argv)
    if args.merge:
        runs = [run for path in args.merge for run in load_runs(path)]
        runs.sort(key=lambda r: (r.factor, r.target != "duckdb", r.target))
        print(markdown_table(runs))
        ratios = ratio_table(runs)
        if ratios:
            print()
            print(ratios)
        return
    if args.repeat < 1:
        raise SystemExit(f"scale: --repeat {args.repeat}: must be >= 1")
    if args.timeout is not None and args.timeout <= 0:
        raise SystemExit(f"scale: --timeout {args.timeout}: must be > 0 seconds")
    try:
        factors = [int(f) for f in args.factors.split(",") if f.strip()]
    except ValueError:
        raise SystemExit(f"scale: --factors {args.factors!r}: not integers like 1,10,30") from None
    if not factors or min(factors) < 1:
        raise SystemExit(f"scale: --factors {args.factors!r}: each factor must be >= 1")
    if args.code is not None and not (args.code / "orchestration").is_dir():
        raise SystemExit(f"scale: --code {args.code}: no orchestration/ package there")

    info = machine()
    print(
        f"machine: {info['cores']} cores, {info['memory_gib']} GiB, {info['cpu']}; "
        f"Python {info['python']}, DuckDB {info['duckdb']}; {info['platform']}"
    )
    print(f"command: {' '.join([sys.executable, *sys.argv])}")
    server: dict[str, str] = {}
    if args.target == "postgres":
        try:
            with admin_connect() as con:
                server = server_settings(con)
        except BenchDatabaseError as exc:
            raise SystemExit(str(exc)) from None
        where = f"{os.environ.get('PGHOST', 'localhost')}:{os.environ.get('PGPORT', '5432')}"
        print(f"server: PostgreSQL at {where}: " + ", ".join(f"{k}={v}" for k, v in server.items()))
    elif args.target == "spark":
        server = spark_settings()
        print("spark: local session, " + ", ".join(f"{k}={v}" for k, v in server.items()))
    runs: list[RunFigures] = []
    for factor in factors:
        data = args.data_root / f"{factor}x"
        made = generate(factor, data, args.source)
        lines = count_lines(data)
        print(
            f"{factor}x: {lines:,} lines in {data} "
            + (f"(generated in {made.seconds:.1f} s)" if made.written else "(already there)"),
            flush=True,
        )
        for _ in range(args.repeat):
            run = measure(factor, data, lines, made.seconds, made.written, args, server)
            runs.append(run)
    print()
    print(markdown_table(runs))
    print()
    print(
        "Stage seconds run from the end of the stage before to the step's line (Dagster's "
        "time between steps included); peak GiB: largest RSS of the whole process tree "
        f"sampled every {SAMPLE_SECONDS * 1000:.0f} ms in the stage."
    )
    if args.target == "postgres":
        print(
            "PostgreSQL: client GiB is that tree (the insiders command: Python, dbt, the "
            "Python steps' in-memory DuckDB); backends GiB: the summed RSS of the backends "
            "serving the run's database (shared buffers they touched counted in each); "
            "server PSS GiB: the summed PSS of every process of the server (shared memory "
            "counted once; other databases' sessions included); both sampled every "
            f"{SERVER_SAMPLE_SECONDS * 1000:.0f} ms."
        )
    if args.target == "spark":
        print(
            "Spark: peak GiB is that tree with the JVM in it (the driver, which runs the "
            "tasks in local mode, and the tasks' Python workers are its descendants)."
        )
    ratios = ratio_table(runs)
    if ratios:
        print()
        print(ratios)
    if args.json:
        args.json.write_text(
            json.dumps({"machine": info, "runs": [asdict(r) for r in runs]}, indent=1)
        )
        print(f"figures: {args.json}")
    if any(r.returncode for r in runs):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
