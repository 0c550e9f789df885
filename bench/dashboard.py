"""Benchmark: the dashboard's page loads in a real browser, over a full-data snapshot.

    .venv/bin/python bench/dashboard.py --snapshot warehouse/bi/insiders_bi.duckdb [--rounds 5]

Starts `insiders dashboard` on loopback and opens each page in Debian's headless Chromium
(Playwright), ``--rounds`` times, in a fresh browser context each round (a new Streamlit
session: cached reads are shared across sessions, so round 1 reads the snapshot and the
later rounds mostly do not). Prints the time from navigation until Streamlit is idle.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from bench.browser import chromium, new_page, serve_dashboard, wait_until_idle  # noqa: E402

PAGES = {"Overview": "", "Clusters": "/clusters", "Insiders": "/insiders", "Movement": "/movement"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--snapshot", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    timings: dict[str, list[float]] = {name: [] for name in PAGES}
    log = REPO_ROOT / "bench" / "results" / "dashboard-server.log"
    with serve_dashboard(args.snapshot.resolve(), log) as url, chromium() as browser:
        for _ in range(args.rounds):
            with new_page(browser) as page:
                for name, path in PAGES.items():
                    started = time.perf_counter()
                    page.goto(url + path)
                    page.get_by_role("heading", name=name, exact=True).first.wait_for()
                    wait_until_idle(page, settle_seconds=0)
                    timings[name].append(time.perf_counter() - started)
    print(f"snapshot {args.snapshot}, {args.rounds} rounds (first round, then median of the rest)")
    for name, values in timings.items():
        rest = statistics.median(values[1:]) if len(values) > 1 else float("nan")
        print(f"{name:<10} first {values[0]:.2f} s   then {rest:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
