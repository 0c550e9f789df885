"""When a run refits its models and when it scores with the saved ones.

Fitting is the expensive part of a run (the clustering's model selection, the
rolling-origin re-evaluation of every definition of the Insiders, the BG/NBD and
Gamma-Gamma fits at every origin), and a day of new data does not change what was
learnt from a year of it. So the models are refitted monthly: when the data's as-of
date is in another month than the last fit's, when no fit exists yet, or on demand
(``insiders run --refit``, the ``monthly_refresh`` schedule, ``refit: true`` in the
launchpad). Any other run scores the customers of the new data with the saved models.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import duckdb


@dataclass(frozen=True)
class RefitDecision:
    refit: bool
    reason: str


def monthly_refit(con: duckdb.DuckDBPyConnection, as_of: date | None) -> RefitDecision:
    """Refit when there is no saved fit, or ``as_of`` is in another month than the
    as-of of the last fit; else score with it."""
    row = con.execute(
        """
        select cast(as_of as date), run_id from ml.segmentation_runs
        where refit and coalesce(model_path, '') <> ''
        order by created_at desc limit 1
        """
    ).fetchone()
    if row is None:
        return RefitDecision(True, "no saved model yet")
    fitted_as_of, run_id = row
    if as_of is None:
        return RefitDecision(True, "no customers' as-of date to compare with the last fit")
    if (as_of.year, as_of.month) != (fitted_as_of.year, fitted_as_of.month):
        return RefitDecision(
            True, f"as-of {as_of} is in another month than the last fit's ({fitted_as_of})"
        )
    return RefitDecision(
        False,
        f"scoring with the model fitted as of {fitted_as_of} (run {run_id}); models are "
        "refitted monthly, or now with --refit",
    )


# What the refit decision reads of the customers (``open_warehouse`` reads): their
# as-of, one row computed by the warehouse, not every customer copied to a mirror.
AS_OF_READ = ("marts.dim_customers", "select max(as_of) as as_of from marts.dim_customers")


def customers_as_of(con: duckdb.DuckDBPyConnection) -> date | None:
    """The as-of date of ``marts.dim_customers`` (None when it is empty or missing)."""
    try:
        value = con.execute("select max(as_of) from marts.dim_customers").fetchone()[0]
    except duckdb.CatalogException:
        return None
    return value if value is None or isinstance(value, date) else value.date()


def clustering_refitted(con: duckdb.DuckDBPyConnection, run_id: str) -> bool | None:
    """Whether the clustering of run ``run_id`` refitted (None: it did not run)."""
    row = con.execute(
        "select refit from ml.segmentation_runs where run_id = ? order by created_at desc limit 1",
        [run_id],
    ).fetchone()
    return None if row is None else bool(row[0])
