"""Benchmark: a daily run, one new daily file on top of a complete warehouse.

    .venv/bin/python bench/daily.py [--source DIR] [--repeat 3] [--work DIR]

1. A source folder with every daily file of ``--source`` but the newest, run whole
   (``insiders run``: load, fit, evaluate; the monthly run), once.
2. ``--repeat`` times: a copy of that warehouse folder, the newest file added to the
   source, ``insiders run`` again (the daily run: one file loaded, dbt's line marts
   incremental, customers scored with the saved models), measured: wall time of the
   whole command, its peak RSS and the seconds of each step it prints.

Target (issue 12): the daily run in 20 s or less on the real data.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SOURCE = REPO_ROOT.parent / "shared" / "data" / "online-retail" / "by-day"
INSIDERS = str(Path(sys.executable).parent / "insiders")
STEP = re.compile(r"^(\S+)\s+([0-9]+\.[0-9]) s\b")


def run(warehouse: Path, source: Path) -> tuple[float, float, dict[str, float], str]:
    """``insiders run``: wall seconds, peak RSS of the largest process (GiB), the
    seconds each step printed, and the output."""
    started = time.monotonic()
    process = subprocess.Popen(
        [INSIDERS, "run", "--warehouse", str(warehouse), "--source", str(source)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output = process.stdout.read() if process.stdout else ""
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.monotonic() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"insiders run failed:\n{output}")
    steps: dict[str, float] = {}
    for line in output.splitlines():
        match = STEP.match(line)
        if match:
            steps[match.group(1)] = float(match.group(2))
    return seconds, usage.ru_maxrss / 1024**2, steps, output


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--work", type=Path, help="working folder (default: a tmp folder)")
    args = parser.parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="insiders-daily-"))
    files = sorted(args.source.glob("*.csv"))
    newest = files[-1]
    base_source = work / "source"
    base_source.mkdir(parents=True)
    for path in files[:-1]:
        (base_source / path.name).symlink_to(path.resolve())
    base = work / "base" / "insiders_warehouse.duckdb"
    seconds, peak, _, _ = run(base, base_source)
    print(f"monthly run (all but {newest.name}): {seconds:.1f} s, peak {peak:.2f} GiB")
    (base_source / newest.name).symlink_to(newest.resolve())
    for attempt in range(1, args.repeat + 1):
        folder = work / f"daily-{attempt}"
        shutil.copytree(base.parent, folder, symlinks=True)
        seconds, peak, steps, output = run(folder / base.name, base_source)
        if "from 1 new files" not in output:
            raise SystemExit(f"the daily run did not load exactly one file:\n{output}")
        listed = ", ".join(f"{name} {value:.1f}" for name, value in steps.items())
        print(
            f"daily run {attempt} (+{newest.name}): {seconds:.1f} s, peak {peak:.2f} GiB; "
            f"steps: {listed}; steps total {sum(steps.values()):.1f} s"
        )
        shutil.rmtree(folder)
    if args.work is None:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
