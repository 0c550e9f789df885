"""Benchmark: the whole graph at N times the real data, per stage wall time and peak memory.

    .venv/bin/python bench/scale.py --factors 1,10,30,100 [--json scale.json]
        [--data-root /tmp/insiders-scale] [--code DIR] [--keep] [--echo]
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
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
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


def tree_rss(root: int) -> int:
    """Resident bytes of ``root`` and all its descendants, from one pass over /proc."""
    parents: dict[int, int] = {}
    rss: dict[int, int] = {}
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
        pid = int(entry.name)
        parents[pid] = int(fields[1])
        rss[pid] = int(fields[21]) * PAGE
    children: dict[int, list[int]] = {}
    for pid, parent in parents.items():
        children.setdefault(parent, []).append(pid)
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        total += rss.get(pid, 0)
        todo.extend(children.get(pid, ()))
    return total


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
    factor: int, data: Path, work: Path, code: Path | None, echo: bool
) -> tuple[int, float, list[Stage], int, int, int, str]:
    """``insiders run`` on ``data`` into a fresh warehouse under ``work``, measured."""
    env = {k: v for k, v in os.environ.items() if k not in CLEARED_ENV}
    env["PYTHONUNBUFFERED"] = "1"  # lines arrive when printed: their times are the stages'
    if code is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(code), env.get("PYTHONPATH")]))
    warehouse = work / "warehouse" / "insiders_warehouse.duckdb"
    warehouse.parent.mkdir(parents=True)
    command = [
        str(BIN / "insiders"),
        "run",
        "--warehouse",
        str(warehouse),
        "--source",
        str(data),
    ]
    lines: list[tuple[float, str]] = []
    samples: list[tuple[float, int]] = []
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
    while True:
        samples.append((time.monotonic(), tree_rss(process.pid)))
        # wait4, not poll: its rusage is this run's own (the largest process's peak).
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            break
        time.sleep(SAMPLE_SECONDS)
    ended = time.monotonic()
    process.returncode = os.waitstatus_to_exitcode(status)
    for reader in readers:
        reader.join()
    largest = usage.ru_maxrss * 1024
    events = [(t, e) for t, line in sorted(lines) for e in [parse_line(line)] if e is not None]
    stages = attribute(started, ended, events, samples)
    peak = max((rss for _, rss in samples), default=0)
    tail = "".join(line for _, line in sorted(lines)[-40:])
    return process.returncode, ended - started, stages, peak, largest, len(samples), tail


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


def markdown_table(runs: list[RunFigures]) -> str:
    """Stage x factor: seconds and peak GiB, stages in the order the runs met them."""
    names: list[str] = []
    for run in runs:
        for name, _ in labelled(run.stages):
            if name not in names:
                names.append(name)
    # startup first and publish last whatever the runs' step orders
    names.sort(key=lambda n: {"startup": 0, "publish": 2}.get(n, 1))
    seen: dict[int, int] = {}
    heads = []
    for run in runs:  # the same factor measured twice: "1x #1", "1x #2"
        seen[run.factor] = seen.get(run.factor, 0) + 1
        twice = sum(r.factor == run.factor for r in runs) > 1
        heads.append(f"{run.factor}x" + (f" #{seen[run.factor]}" if twice else ""))
    header = "| stage | " + " | ".join(f"{h} s | {h} peak GiB" for h in heads)
    rule = "|:--|" + "--:|--:|" * len(runs)
    rows = [header + " |", rule]
    for name in names:
        cells = []
        for run in runs:
            stage = next((s for label, s in labelled(run.stages) if label == name), None)
            if stage is None:
                cells += ["", ""]
            else:
                mark = " (failed)" if stage.failed else ""
                cells += [f"{stage.seconds:.1f}{mark}", f"{stage.peak_bytes / GIB:.2f}"]
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    total = []
    for run in runs:
        failed = "" if run.returncode == 0 else f" (exit {run.returncode})"
        total += [f"**{run.total_seconds:.1f}**{failed}", f"**{run.peak_bytes / GIB:.2f}**"]
    rows.append("| **total** | " + " | ".join(total) + " |")
    rows.append("| lines | " + " | ".join(f"{r.lines:,} |" for r in runs) + " |")
    return "\n".join(rows)


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
    args = parser.parse_args(argv)
    if args.merge:
        runs = [run for path in args.merge for run in load_runs(path)]
        print(markdown_table(sorted(runs, key=lambda r: r.factor)))
        return
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
        work = Path(tempfile.mkdtemp(prefix=f"insiders-scale-{factor}x-"))
        try:
            code, wall, stages, peak, largest, count, tail = run_graph(
                factor, data, work, args.code, args.echo
            )
        finally:
            if args.keep:
                print(f"  kept: {work}")
            else:
                shutil.rmtree(work, ignore_errors=True)
        run = RunFigures(
            factor, lines, str(data), made.seconds, made.written, code, wall, peak, largest,
            count, stages, tail if code else "",
        )  # fmt: skip
        runs.append(run)
        steps = ", ".join(f"{s.name} {s.seconds:.1f} s" for s in stages)
        print(f"  {wall:.1f} s, peak {peak / GIB:.2f} GiB (exit {code}): {steps}", flush=True)
        if code:
            sys.stderr.write(f"insiders run failed at {factor}x (exit {code}); its last lines:\n")
            sys.stderr.write(tail)
    print()
    print(markdown_table(runs))
    print()
    print(
        "Stage seconds run from the end of the stage before to the step's line (Dagster's "
        "time between steps included); peak GiB: largest RSS of the whole process tree "
        f"sampled every {SAMPLE_SECONDS * 1000:.0f} ms in the stage."
    )
    if args.json:
        args.json.write_text(
            json.dumps({"machine": info, "runs": [asdict(r) for r in runs]}, indent=1)
        )
        print(f"figures: {args.json}")
    if any(r.returncode for r in runs):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
