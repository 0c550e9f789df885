"""Benchmark: the whole Dagster graph on the full data, and the clustering sweep alone.

    .venv/bin/python bench/graph.py [--data DIR]

1. `insiders run --source DIR` into a fresh warehouse, in a fresh process, with an
   empty numba cache (includes UMAP's first-fit compilation), then again with the
   cache warm (NUMBA_CACHE_DIR kept between the two processes).
2. The model-selection sweep alone (`fit_segmentation` on marts.dim_customers) in a
   fresh process, cold and warm numba cache.
Prints wall time and peak RSS of each. Target: the whole graph <= 60 s.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data" / "online-retail" / "by-day"
BIN = Path(sys.executable).parent

SWEEP = """
import json, sys, time
import duckdb
t0 = time.perf_counter()
from models_py.clustering import ClusteringConfig, fit_segmentation
con = duckdb.connect(sys.argv[1], read_only=True)
customers = con.execute("select * from marts.dim_customers").df()
con.close()
t1 = time.perf_counter()
result = fit_segmentation(customers, ClusteringConfig())
t2 = time.perf_counter()
print(json.dumps({"import_and_read": t1 - t0, "fit_segmentation": t2 - t1,
                  "timings": result.timings, "chosen": result.chosen,
                  "stability_ari": result.stability_ari}, default=str))
"""


def child(args: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """Run in a fresh helper so RUSAGE_CHILDREN is this command's own peak."""
    probe = subprocess.run(
        [sys.executable, __file__, "--_child", *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if probe.returncode != 0:
        sys.stderr.write(probe.stdout[-3000:] + probe.stderr[-3000:])
        raise SystemExit(f"failed: {' '.join(args)}")
    head, _, out = probe.stdout.partition("\n")
    wall, peak = (float(x) for x in head.split())
    return wall, peak, out


def main() -> None:
    parser = argparse.ArgumentParser(description="whole-graph benchmark")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--_child", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._child:
        start = time.perf_counter()
        done = subprocess.run(args._child, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - start
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        print(f"{wall:.3f} {peak:.1f}")
        print(done.stdout[-2000:])
        sys.stderr.write(done.stderr[-3000:])
        raise SystemExit(done.returncode)

    work = Path(tempfile.mkdtemp(prefix="insiders-graph-"))
    cache = work / "numba-cache"
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache))
    try:
        print(f"data: {args.data}   cores: {os.cpu_count()}")
        for label in ("cold numba cache", "warm numba cache"):
            warehouse = work / f"{label.split()[0]}.duckdb"
            run_env = dict(env, INSIDERS_WAREHOUSE=str(warehouse))
            wall, peak, _ = child(
                [str(BIN / "insiders"), "run", "--source", str(args.data)], run_env
            )
            verdict = "ok" if wall <= 60 else "OVER TARGET"
            print(
                f"whole graph ({label}): {wall:6.1f} s, peak RSS {peak:7.1f} MiB  "
                f"(target <= 60 s: {verdict})"
            )
        shutil.rmtree(cache, ignore_errors=True)
        for label in ("cold numba cache", "warm numba cache"):
            wall, peak, out = child(
                [str(BIN / "python"), "-c", SWEEP, str(work / "warm.duckdb")], env
            )
            detail = json.loads(out.strip().splitlines()[-1])
            print(
                f"sweep alone ({label}): {wall:6.1f} s, peak RSS {peak:7.1f} MiB; "
                f"fit_segmentation {detail['fit_segmentation']:.1f} s, phases "
                + ", ".join(f"{k} {v:.1f}" for k, v in detail["timings"].items())
            )
            print(f"  chosen: {detail['chosen']}; stability ARI {detail['stability_ari']}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
