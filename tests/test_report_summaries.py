"""The report's reads of the tables with a row per customer are summaries: a mirror
(PostgreSQL, Spark) sends only the rows the report shows, and they are the rows the
report would pick itself from the whole table (the same plot on every target)."""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd
import pytest

from models_py.report import MEMBERS_SHOWN, PLOT_POINTS, REPORT_SUMMARIES, plot_points


def _embedding(customers: int) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    ids = rng.permutation(customers) + 10_000
    return pd.DataFrame(
        {
            "customer_id": [f"C{i}" for i in ids],
            "x": rng.normal(size=customers),
            "y": rng.normal(size=customers),
            "cluster_id": rng.integers(0, 4, customers).astype("int32"),
            "as_of": pd.Timestamp("2011-12-10").date(),
            "run_id": "r",
        }
    )


@pytest.mark.parametrize("customers", [7, PLOT_POINTS, PLOT_POINTS + 1, 45_001])
def test_the_scatters_summary_is_the_points_the_report_plots(customers: int) -> None:
    embedding = _embedding(customers)
    con = duckdb.connect()
    con.execute("create schema ml")
    con.register("frame", embedding)
    con.execute("create table ml.customer_embedding as select * from frame")
    sent = con.execute(REPORT_SUMMARIES["ml.customer_embedding"]).df()
    plotted = plot_points(embedding)
    assert sorted(sent["customer_id"]) == sorted(plotted["customer_id"])
    assert len(plotted) <= PLOT_POINTS
    assert len(plotted) == -(-customers // -(-customers // PLOT_POINTS))  # every k-th
    assert list(sent.columns) == list(embedding.columns)


def test_the_members_summary_is_the_first_members_by_rank() -> None:
    con = duckdb.connect()
    con.execute("create schema insiders")
    con.execute(
        "create table insiders.members as select 'C' || (100 - i) as customer_id, "
        "i // 2 + 1 as member_rank from range(40) as t(i)"
    )
    sent = con.execute(REPORT_SUMMARIES["insiders.members"]).df()
    whole = con.execute("select * from insiders.members").df()
    expected = whole.sort_values(["member_rank", "customer_id"]).head(MEMBERS_SHOWN)
    assert sent["customer_id"].tolist() == expected["customer_id"].tolist()
