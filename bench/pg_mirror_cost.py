"""What the Python steps pay on PostgreSQL to copy their relations into DuckDB.

    PGDATABASE=<a database a run has built> .venv/bin/python bench/pg_mirror_cost.py [--repeat 2]

On PostgreSQL each Python step (clustering, analytics, report, snapshot) starts by
copying what it reads into an in-memory DuckDB (``orchestration.pg_mirror.pull``:
``COPY (select ...) TO STDOUT`` as CSV into a temporary file, read by DuckDB's CSV
reader) and ends by writing back the ``ml`` tables it changed. On DuckDB the step reads
the warehouse file in place: this copy is PostgreSQL's own cost. This times each pull
of the clustering's and the analytics' reads (the relations the steps name, plus the
analytics' monthly revenue query, computed by the server) on a database a run has
built, and how much of it is the server's ``COPY`` and how much DuckDB's read, so the
stage times of ``bench/scale.py --target postgres`` can be split. Read-only: nothing
is written to PostgreSQL.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # run as a script: bench/ is sys.path[0], not the root
    sys.path.insert(0, str(REPO_ROOT))

import duckdb  # noqa: E402

from models_py.locations import DUCKDB_CONFIG  # noqa: E402
from orchestration.insiders_steps import (  # noqa: E402
    EVALUATION_DATES,
    EVALUATION_FEATURES,
    MONTHLY_REVENUE,
    PURCHASE_HISTORIES,
    SCORES,
)
from orchestration.ml_tables import ML_COLUMNS  # noqa: E402
from orchestration.pg_mirror import pull  # noqa: E402
from orchestration.postgres import connect  # noqa: E402

# What each step reads besides ml.* (orchestration/segmentation_asset.py,
# orchestration/insiders_steps.py).
STEP_READS: dict[str, list[tuple[str, str | None]]] = {
    "clustering": [("marts.dim_customers", None)],
    "analytics": [
        (EVALUATION_DATES, None),
        (EVALUATION_FEATURES, None),
        (SCORES, None),
        (PURCHASE_HISTORIES, None),
        ("monthly_revenue", MONTHLY_REVENUE),
    ],
}


def copy_seconds(pg, relation: str, query: str | None) -> float:
    """The server's ``COPY ... TO STDOUT`` of the relation alone, read and dropped."""
    source = query or relation
    if query is None:
        schema, _, name = relation.partition(".")
        source = f'select * from {schema}."{name}"'
    start = time.perf_counter()
    with pg.cursor().copy(f"copy ({source}) to stdout (format csv)") as cp:
        for _ in cp:
            pass
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args(argv)
    pg = connect(application="bench")
    for round_ in range(1, args.repeat + 1):
        print(f"round {round_}:")
        for step, reads in STEP_READS.items():
            total_pull = total_copy = 0.0
            with tempfile.TemporaryDirectory(prefix="insiders-mirror-cost-") as tmp:
                duck = duckdb.connect(config=DUCKDB_CONFIG)
                items = [(f"ml.{t}", None) for t in ML_COLUMNS] + reads
                for relation, query in items:
                    start = time.perf_counter()
                    rows = pull(pg, duck, relation, Path(tmp), query)
                    seconds = time.perf_counter() - start
                    copy = copy_seconds(pg, relation, query)
                    total_pull, total_copy = total_pull + seconds, total_copy + copy
                    if rows or seconds > 0.05:
                        print(
                            f"  {step:<10} {relation:<50} {rows:>10,} rows  pull {seconds:6.2f} s"
                            f"  (COPY alone {copy:5.2f} s)"
                        )
                duck.close()
            pg.commit()
            print(
                f"  {step}: pulls {total_pull:.2f} s, of which the server's COPY {total_copy:.2f} s"
            )
    pg.close()


if __name__ == "__main__":
    main()
