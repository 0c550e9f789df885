"""The ``ml`` schema: what the clustering reads from and writes back to the warehouse.

The tables exist from the first connection on (empty), so that dbt models over the
``ml`` sources build before any clustering has run. A run's labels, candidates and
embedding replace the previous run's in ONE transaction: readers see the old run or
the new one, and a run that fails leaves the old one in place. Runs and centroids
are kept as history; centroids let the next run give clusters the same ids.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

import duckdb
import pandas as pd

ML_DDL = """
create schema if not exists ml;
create table if not exists ml.customer_segments (
    customer_id varchar not null,
    cluster_id integer not null,
    cluster_name varchar not null,
    is_insider boolean not null,
    as_of date not null,
    run_id varchar not null,
    model varchar not null
);
create table if not exists ml.model_selection (
    run_id varchar not null,
    as_of date not null,
    space varchar not null,
    algorithm varchar not null,
    k_requested integer,
    k integer not null,
    silhouette double,
    silhouette_features double,
    davies_bouldin double,
    calinski_harabasz double,
    smallest_cluster_share double,
    is_eligible boolean not null,
    is_chosen boolean not null
);
create table if not exists ml.customer_embedding (
    customer_id varchar not null,
    x double not null,
    y double not null,
    cluster_id integer not null,
    as_of date not null,
    run_id varchar not null
);
create table if not exists ml.eligibility_rules (
    definition varchar not null,
    run_id varchar not null,
    as_of date not null,
    rule_id integer not null,
    rule varchar not null,
    conditions json not null,
    customers bigint not null,
    insiders bigint not null,
    precision double not null,
    recall double not null
);
create table if not exists ml.group_evidence (
    definition varchar not null,
    run_id varchar not null,
    as_of date not null,
    metric varchar not null,
    insiders bigint not null,
    others bigint not null,
    insiders_mean double not null,
    others_mean double not null,
    difference double not null,
    ci_low double not null,
    ci_high double not null,
    confidence double not null,
    mann_whitney_u double not null,
    p_value double not null
);
-- Entry rules and evidence are made for every definition of the Insiders since the
-- rolling-origin evaluation chooses among them; older warehouses gain the column.
alter table ml.eligibility_rules add column if not exists definition varchar;
alter table ml.group_evidence add column if not exists definition varchar;
-- The rolling-origin evaluation (orchestration/insiders_steps.py). Tables of the
-- single-cut-off backtest it replaced are dropped from older warehouses.
drop table if exists ml.membership_evaluations;
drop table if exists ml.backtest_groups;
drop table if exists ml.backtest_members;
drop table if exists ml.revenue_forecast;
create table if not exists ml.insiders_definitions (
    definition varchar not null,
    description varchar not null,
    sort_order integer not null,
    as_of date not null,
    run_id varchar not null
);
create table if not exists ml.definition_members (
    evaluation_date date not null,
    definition varchar not null,
    customer_id varchar not null,
    member_rank integer not null,
    as_of date not null,
    run_id varchar not null
);
create table if not exists ml.definition_evaluation (
    origin_date date not null,
    horizon_end date not null,
    definition varchar not null,
    members bigint not null,
    customers_known bigint not null,
    horizon_revenue double not null,
    total_horizon_revenue double not null,
    share_of_horizon_revenue double,
    share_low double,
    share_high double,
    as_of date not null,
    run_id varchar not null
);
create table if not exists ml.group_forecasts (
    origin_date date not null,
    horizon_end date not null,
    definition varchar not null,
    customers bigint not null,
    naive_revenue double not null,
    trend_factor double not null,
    seasonal_factor double not null,
    season_observed boolean not null,
    forecast_revenue double not null,
    lower_bound double not null,
    upper_bound double not null,
    log_half_width double not null,
    errors_behind_interval integer not null,
    interval_method varchar not null,
    model_revenue double,
    actual_revenue double,
    log_error double,
    parameters json,
    as_of date not null,
    run_id varchar not null
);
create table if not exists ml.customer_forecast (
    customer_id varchar not null,
    probability_alive double not null,
    expected_purchases double not null,
    expected_spend double not null,
    expected_revenue double not null,
    forecast_start date not null,
    forecast_end date not null,
    as_of date not null,
    run_id varchar not null
);
create table if not exists ml.cluster_centroids (
    run_id varchar not null,
    as_of date not null,
    cluster_id integer not null,
    feature varchar not null,
    value double not null
);
create table if not exists ml.segmentation_runs (
    run_id varchar primary key,
    as_of date not null,
    created_at timestamp not null,
    model varchar not null,
    model_path varchar,
    refit boolean not null,
    config json,
    chosen json,
    stability_ari double,
    customers bigint not null,
    insiders bigint not null
);
"""

# The columns the clustering reads; the dbt contract on dim_customers guarantees them.
CUSTOMER_QUERY = "select * from marts.dim_customers order by customer_id"


@dataclass(frozen=True)
class SegmentationWrite:
    """Everything one run writes, already shaped as the ml tables' rows."""

    run_id: str
    as_of: date
    model: str
    model_path: str | None
    refit: bool
    labels: pd.DataFrame
    candidates: pd.DataFrame | None
    embedding: pd.DataFrame
    centroids: pd.DataFrame
    config: dict[str, Any]
    chosen: dict[str, Any]
    stability_ari: float | None


def read_customers(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    return con.execute(CUSTOMER_QUERY).df()


def read_previous_centroids(con: duckdb.DuckDBPyConnection) -> pd.DataFrame | None:
    """The latest run's centroids, wide (cluster_id + one column per feature), or None."""
    long = con.execute(
        """
        select cluster_id, feature, value
        from ml.cluster_centroids
        where run_id = (
            select run_id from ml.segmentation_runs order by created_at desc limit 1
        )
        """
    ).df()
    if long.empty:
        return None
    wide = long.pivot(index="cluster_id", columns="feature", values="value").reset_index()
    wide.columns.name = None
    return wide


def latest_model_path(con: duckdb.DuckDBPyConnection) -> str | None:
    row = con.execute(
        """
        select model_path from ml.segmentation_runs
        where model_path is not null order by created_at desc limit 1
        """
    ).fetchone()
    return row[0] if row else None


def write_segmentation(con: duckdb.DuckDBPyConnection, write: SegmentationWrite) -> None:
    """Replace the current run's tables and append to the history, in one transaction."""
    stamp = {"run_id": write.run_id, "as_of": write.as_of}
    labels = write.labels.assign(model=write.model, **stamp)
    # Current-run tables: replaced whole. None means "this run has none: keep the old".
    replaced: dict[str, pd.DataFrame | None] = {
        "customer_segments": labels,
        "customer_embedding": write.embedding.merge(
            write.labels[["customer_id", "cluster_id"]], on="customer_id", how="left"
        ).assign(**stamp),
        "model_selection": None
        if write.candidates is None
        else write.candidates.rename(
            columns={
                "min_cluster_share": "smallest_cluster_share",
                "eligible": "is_eligible",
                "chosen": "is_chosen",
            }
        ).assign(**stamp),
    }
    centroids = write.centroids.melt(
        id_vars="cluster_id", var_name="feature", value_name="value"
    ).assign(**stamp)
    run_row = pd.DataFrame(
        [
            {
                "run_id": write.run_id,
                "as_of": write.as_of,
                "created_at": pd.Timestamp.now(),
                "model": write.model,
                "model_path": write.model_path,
                "refit": write.refit,
                "config": json.dumps(write.config, default=str),
                "chosen": json.dumps(write.chosen, default=str),
                "stability_ari": write.stability_ari,
                "customers": len(labels),
                "insiders": int(labels["is_insider"].sum()),
            }
        ]
    )
    write_tables(
        con,
        replace=replaced,
        append={"cluster_centroids": centroids, "segmentation_runs": run_row},
    )


def write_tables(
    con: duckdb.DuckDBPyConnection,
    replace: Mapping[str, pd.DataFrame | None],
    append: Mapping[str, pd.DataFrame] | None = None,
) -> None:
    """In ONE transaction: replace whole ``ml`` tables and append rows to others.

    A frame's columns are taken in the table's order (extra columns are ignored, a
    missing one fails before anything is written); ``None`` keeps a table as it is.
    Readers see the old tables or the new ones; a failure leaves the old ones.
    """
    plan = [(t, f, True) for t, f in replace.items() if f is not None]
    plan += [(t, f, False) for t, f in (append or {}).items()]
    registered = []
    try:
        for table, frame, _ in plan:
            columns = [d[0] for d in con.execute(f"select * from ml.{table} limit 0").description]
            missing = [c for c in columns if c not in frame.columns]
            if missing:
                raise ValueError(f"ml.{table}: the new rows lack {', '.join(missing)}")
            con.register(f"new_{table}", frame[columns])
            registered.append(f"new_{table}")
        con.execute("begin transaction")
        try:
            for table, _, whole in plan:
                if whole:
                    con.execute(f"delete from ml.{table}")
                con.execute(f"insert into ml.{table} select * from new_{table}")
            con.execute("commit")
        except BaseException:
            con.execute("rollback")
            raise
    finally:
        for name in registered:
            con.unregister(name)
