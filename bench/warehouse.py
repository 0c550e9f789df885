"""Benchmark: `insiders load` and `insiders build` on the full Online Retail data.

Each step runs as its own `insiders` process, the way a user runs it, into a fresh
warehouse; wall time and the process's peak resident memory are printed. Usage:

    .venv/bin/python bench/warehouse.py [--data DIR] [--repeat N]

Targets on a 2-core machine: load <= 3 s, build <= 15 s.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data" / "online-retail" / "by-day"
INSIDERS = Path(sys.executable).parent / "insiders"


def timed(args: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Run one command; return (wall seconds, peak RSS MiB of that child).

    Called in a fresh helper process per step, so the children's high-water mark
    is this command's alone.
    """
    start = time.perf_counter()
    completed = subprocess.run(args, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if completed.returncode != 0:
        sys.stderr.write(completed.stdout[-4000:] + completed.stderr[-4000:])
        raise SystemExit(f"failed: {' '.join(args)}")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return wall, peak


def measure_once(data: Path, workdir: Path) -> dict[str, tuple[float, float]]:
    warehouse = workdir / "warehouse.duckdb"
    env = dict(os.environ, INSIDERS_WAREHOUSE=str(warehouse))
    results = {}
    for name, args in (
        ("load", [str(INSIDERS), "load", str(data)]),
        ("build", [str(INSIDERS), "build"]),
    ):
        probe = subprocess.run(
            [sys.executable, __file__, "--_child", *args],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if probe.returncode != 0:
            sys.stderr.write(probe.stdout[-4000:] + probe.stderr[-4000:])
            raise SystemExit(f"{name} failed")
        wall, peak = (float(x) for x in probe.stdout.split())
        results[name] = (wall, peak)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--_child", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._child:
        wall, peak = timed(args._child, dict(os.environ))
        print(f"{wall:.3f} {peak:.1f}")
        return

    lines = sum(1 for f in args.data.glob("*.csv") for _ in f.open("rb")) - len(
        list(args.data.glob("*.csv"))
    )
    print(f"data: {args.data} ({lines:,} lines)   cores: {os.cpu_count()}   runs: {args.repeat}")
    runs = []
    for _ in range(args.repeat):
        workdir = Path(tempfile.mkdtemp(prefix="insiders-bench-"))
        try:
            runs.append(measure_once(args.data, workdir))
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    for step, target in (("load", 3.0), ("build", 15.0)):
        walls = [r[step][0] for r in runs]
        peaks = [r[step][1] for r in runs]
        verdict = "ok" if statistics.median(walls) <= target else "OVER TARGET"
        print(
            f"insiders {step:<5}  wall median {statistics.median(walls):6.2f} s "
            f"(min {min(walls):.2f}, max {max(walls):.2f})   "
            f"peak RSS {max(peaks):7.1f} MiB   target <= {target:.0f} s: {verdict}"
        )


if __name__ == "__main__":
    main()
