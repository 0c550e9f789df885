"""Benchmark: the rolling-origin evaluation on the full data, and its per-origin tables.

    .venv/bin/python bench/rolling_evaluation.py [--data DIR]

1. ``insiders run --source DIR`` into a fresh warehouse (fresh process, timed).
2. The evaluation step alone (``run_rolling_evaluation``: the clustering refitted at
   every monthly date, BG/NBD + Gamma-Gamma at every origin and at the as-of, every
   definition's members, shares and group forecasts), timed in this process on that
   warehouse: what the evaluation costs the graph. Target: under 30 s.
3. The per-origin tables from the marts of that one run: each definition's ratio to the
   top customers by past net revenue, the chosen definition, and the forecast against
   the naive one with the interval.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb

from models_py.locations import DUCKDB_CONFIG

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data" / "online-retail" / "by-day"
BIN = Path(sys.executable).parent


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        warehouse = Path(tmp) / "warehouse.duckdb"
        start = time.perf_counter()
        subprocess.run(
            [
                str(BIN / "insiders"),
                "run",
                "--warehouse",
                str(warehouse),
                "--source",
                str(args.data),
            ],
            check=True,
            capture_output=True,
        )
        print(f"whole graph (insiders run, fresh warehouse): {time.perf_counter() - start:.1f} s")

        from models_py.settings import RANDOM_GROUPS_CONFIDENCE
        from orchestration.insiders_steps import run_rolling_evaluation

        start = time.perf_counter()
        metadata = run_rolling_evaluation(
            warehouse, 1000, RANDOM_GROUPS_CONFIDENCE, 42, logging.getLogger("bench")
        )
        print(
            f"rolling-origin evaluation step alone: {time.perf_counter() - start:.1f} s "
            f"(of which the per-date decisions {metadata['seconds_evaluating']} s)"
        )
        print_tables(warehouse)


def print_tables(warehouse: Path) -> None:
    con = duckdb.connect(str(warehouse), read_only=True, config=DUCKDB_CONFIG)
    try:
        ratios = con.execute(
            """
            pivot (
                select origin_date, definition, round(ratio_to_top_past_revenue, 3) as ratio
                from insiders.definition_evaluation where definition != 'random'
            ) on definition using first(ratio) order by origin_date
            """
        ).df()
        print("\nratio to the top customers by past net revenue, per origin (3-month horizon):")
        print(ratios.astype({"origin_date": str}).to_markdown(index=False, floatfmt=".3f"))
        choice = con.execute(
            """
            select definition, round(mean_ratio, 4) as mean_ratio, round(min_ratio, 4) as min_ratio,
                origins_below_top_past_revenue as below, qualifies, is_chosen, chosen_by
            from insiders.definition_choice order by sort_order
            """
        ).df()
        print("\n" + choice.to_markdown(index=False))
        forecast = con.execute(
            """
            select origin_date, customers, cast(round(forecast_revenue) as bigint) as forecast,
                cast(round(lower_bound) as bigint) as lower,
                cast(round(upper_bound) as bigint) as upper,
                cast(round(naive_revenue) as bigint) as naive,
                cast(round(model_revenue) as bigint) as bg_nbd,
                cast(round(actual_revenue) as bigint) as actual,
                round(relative_error, 3) as error,
                round(naive_relative_error, 3) as naive_error, interval_covers_actual as covered,
                round(interval_width_ratio, 3) as width
            from insiders.forecast_evaluation order by origin_date
            """
        ).df()
        print("\nthe chosen Insiders' revenue forecast, per origin:")
        table = forecast.astype({"origin_date": str})
        print(table.to_markdown(index=False, floatfmt=".3f", intfmt=","))
        print(
            f"median |error|: forecast {statistics.median(forecast['error'].abs()):.3f}, "
            f"naive {statistics.median(forecast['naive_error'].abs()):.3f}; "
            f"covered {int(forecast['covered'].sum())}/{len(forecast)}; "
            f"max width {forecast['width'].max():.3f}"
        )
    finally:
        con.close()


if __name__ == "__main__":
    main()
