"""Benchmark: the two Python steps of the graph alone, on a copy of a built warehouse.

    .venv/bin/python bench/python_steps.py WAREHOUSE [--runs 2] [--steps seg,refit,daily]

WAREHOUSE is a warehouse a complete ``insiders run`` left (dbt built, clustering and
analytics run once), e.g. the real data's or a scaled one (``bench/scale_data.py``, then
``insiders run --source``). Each step runs in a fresh process on a fresh copy, as in the
graph, and prints its wall time, the part spent importing its libraries, and the peak
RSS of the process:

* ``seg``: ``run_segmentation`` (``customer_segmentation``, refit: the whole sweep);
* ``refit``: ``run_rolling_evaluation`` (``insiders_analytics``, the monthly run: every
  definition at every date, BG/NBD + Gamma-Gamma at every origin);
* ``daily``: ``run_rolling_evaluation(refit=False)`` after a refit on the same copy (the
  daily run: the as-of decided again with the saved fit).

Targets (issue 12, real data, 2 cores): each step 5 s or less after its imports, the
daily run 2 s or less; memory roughly linear in the customers.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

# Run in the child: import, then the step; print one JSON line of figures.
CHILD = """
import json, logging, resource, sys, time
from pathlib import Path
started = time.perf_counter()
step, warehouse, models = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
import pymc_marketing.clv  # noqa: F401  (what the analytics step imports when it runs)
from orchestration.insiders_steps import run_rolling_evaluation
from orchestration.segmentation_asset import SegmentationConfig, run_segmentation
imported = time.perf_counter()
log = logging.getLogger("bench")
if step == "seg":
    run_segmentation(warehouse, SegmentationConfig(), "bench", log, models=models)
elif step == "refit":
    run_rolling_evaluation(warehouse, 1000, log=log)
else:
    run_rolling_evaluation(warehouse, 1000, log=log, refit=False)
done = time.perf_counter()
print(json.dumps({
    "import_s": round(imported - started, 2),
    "step_s": round(done - imported, 2),
    "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
}))
"""


def run_step(step: str, warehouse: Path, models: Path) -> dict[str, float]:
    """One step in a fresh Python process; its figures."""
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", CHILD, step, str(warehouse), str(models)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"step {step} failed:\n{done.stderr[-3000:]}")
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    figures["wall_s"] = round(time.perf_counter() - started, 2)
    return figures


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("warehouse", type=Path)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--steps", default="seg,refit,daily")
    args = parser.parse_args(argv)
    steps = args.steps.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        for run in range(1, args.runs + 1):
            copy = Path(tmp) / "warehouse.duckdb"
            shutil.copyfile(args.warehouse, copy)
            for step in steps:
                if step == "daily" and "refit" not in steps:
                    run_step("refit", copy, Path(tmp) / "models")  # a refit to score with
                figures = run_step(step, copy, Path(tmp) / "models")
                print(
                    f"run {run} {step:6s} step {figures['step_s']:6.2f} s"
                    f"  (imports {figures['import_s']:5.2f} s, process {figures['wall_s']:6.2f} s)"
                    f"  peak RSS {figures['peak_rss_mb']:5d} MB",
                    flush=True,
                )
    print(f"machine: {resource.getpagesize()} B pages; see BENCHMARKS.md for the machine")


if __name__ == "__main__":
    main()
