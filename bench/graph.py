"""Benchmark: the whole Dagster graph on the full data, and the clustering sweep alone.

    .venv/bin/python bench/graph.py [--data DIR]

1. `insiders run --source DIR` (default configuration) into a fresh warehouse, in a
   fresh process, twice.
2. The clustering alone on marts.dim_customers, in one fresh process with an empty
   numba cache: the default spaces; all four spaces including UMAP's first-fit
   compilation; all four again, compiled; then labelling 1,000,000 customers.
Prints wall time and peak RSS. Target: the whole graph <= 60 s.
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
import numpy as np
from models_py.clustering import ClusteringConfig, fit_segmentation, label_with_model
from models_py.locations import DUCKDB_CONFIG
con = duckdb.connect(sys.argv[1], read_only=True, config=DUCKDB_CONFIG)
customers = con.execute("select * from marts.dim_customers").df()
con.close()
out = {}
segmenters = {}
for label, config in (
    ("default spaces (scaled, pca)", ClusteringConfig()),
    ("all spaces, first UMAP fit in this process (numba compiles)",
     ClusteringConfig(spaces=("scaled", "pca", "umap", "tree"))),
    ("all spaces, UMAP already compiled",
     ClusteringConfig(spaces=("scaled", "pca", "umap", "tree"))),
):
    start = time.perf_counter()
    result = fit_segmentation(customers, config)
    out[label] = {"seconds": time.perf_counter() - start, "timings": result.timings,
                  "chosen": result.chosen, "stability_ari": result.stability_ari}
    segmenters.setdefault(config.spaces, result.segmenter)
# Labelling at scale: 1,000,000 customers (the real ones, repeated with new ids), with
# the default model and with the UMAP one (whose transform dominates).
big = customers.sample(n=1_000_000, replace=True, random_state=0).reset_index(drop=True)
big["customer_id"] = np.char.add("c", np.arange(len(big)).astype(str))
for spaces, segmenter in segmenters.items():
    start = time.perf_counter()
    labels = label_with_model(big, segmenter)
    out[f"label 1,000,000 customers ({segmenter.algorithm} on {segmenter.chosen['space']})"] = {
        "seconds": time.perf_counter() - start, "rows": len(labels)}
print(json.dumps(out, default=str))
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
        for label in ("first run", "second run"):
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
        wall, peak, out = child(
            [str(BIN / "python"), "-c", SWEEP, str(work / "second.duckdb")], env
        )
        print(f"clustering alone, one fresh process: {wall:.1f} s, peak RSS {peak:.1f} MiB")
        for label, detail in json.loads(out.strip().splitlines()[-1]).items():
            phases = ", ".join(f"{k} {v:.1f}" for k, v in detail.get("timings", {}).items())
            print(f"  {label}: {detail['seconds']:.1f} s" + (f" ({phases})" if phases else ""))
            if "chosen" in detail:
                chosen = detail["chosen"]
                print(
                    f"    chosen {chosen['algorithm']} k={chosen['k']} on {chosen['space']}, "
                    f"silhouette {chosen['silhouette']:.3f} (features "
                    f"{chosen['silhouette_features']:.3f}), stability ARI "
                    f"{detail['stability_ari']:.3f}"
                )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
