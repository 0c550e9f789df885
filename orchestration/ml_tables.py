"""The ``ml`` schema: what the Python steps read from and write back to the warehouse.

Its tables and columns are declared once, in :data:`ML_COLUMNS`; the DDL is generated
from it and every write is checked against it, so a frame that gained, lost or
misspelled a column fails in one line before anything is written. The tables are
created (empty) by :func:`ensure_ml_tables`, which the writers call themselves and the
dbt steps call before dbt builds views over the ``ml`` sources; the ``raw`` loader does
not know about them. A run's labels, candidates and embedding replace the previous
run's in ONE transaction: readers see the old run or the new one, and a run that fails
leaves the old one in place. Runs and centroids are kept as history; centroids let the
next run give clusters the same ids.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

import duckdb
import pandas as pd

# Every ml table and its columns, in order, with their DuckDB types: the ONE declaration
# of the schema. The DDL is generated from it, older warehouses gain the columns added
# since (ensure_ml_tables), and every writer checks its rows against it (write_tables).
ML_COLUMNS: dict[str, dict[str, str]] = {
    "customer_segments": {
        "customer_id": "varchar not null",
        "cluster_id": "integer not null",
        "cluster_name": "varchar not null",
        "is_insider": "boolean not null",
        "as_of": "date not null",
        "run_id": "varchar not null",
        "model": "varchar not null",
    },
    "model_selection": {
        "run_id": "varchar not null",
        "as_of": "date not null",
        "space": "varchar not null",
        "algorithm": "varchar not null",
        "k_requested": "integer",
        "k": "integer not null",
        "silhouette": "double",
        "silhouette_features": "double",
        "davies_bouldin": "double",
        "calinski_harabasz": "double",
        "smallest_cluster_share": "double",
        "is_eligible": "boolean not null",
        "is_chosen": "boolean not null",
    },
    "customer_embedding": {
        "customer_id": "varchar not null",
        "x": "double not null",
        "y": "double not null",
        "cluster_id": "integer not null",
        "as_of": "date not null",
        "run_id": "varchar not null",
    },
    "eligibility_rules": {
        "definition": "varchar not null",
        "run_id": "varchar not null",
        "as_of": "date not null",
        "rule_id": "integer not null",
        "rule": "varchar not null",
        "conditions": "json not null",
        "customers": "bigint not null",
        "insiders": "bigint not null",
        "precision": "double not null",
        "recall": "double not null",
    },
    "group_evidence": {
        "definition": "varchar not null",
        "run_id": "varchar not null",
        "as_of": "date not null",
        "metric": "varchar not null",
        "insiders": "bigint not null",
        "others": "bigint not null",
        "insiders_mean": "double not null",
        "others_mean": "double not null",
        "difference": "double not null",
        "ci_low": "double not null",
        "ci_high": "double not null",
        "confidence": "double not null",
        "mann_whitney_u": "double not null",
        "p_value": "double not null",
    },
    "insiders_definitions": {
        "definition": "varchar not null",
        "description": "varchar not null",
        "sort_order": "integer not null",
        "as_of": "date not null",
        "run_id": "varchar not null",
    },
    "definition_members": {
        "evaluation_date": "date not null",
        "definition": "varchar not null",
        "customer_id": "varchar not null",
        "member_rank": "integer not null",
        "as_of": "date not null",
        "run_id": "varchar not null",
    },
    "definition_evaluation": {
        "origin_date": "date not null",
        "horizon_end": "date not null",
        "definition": "varchar not null",
        "members": "bigint not null",
        "customers_known": "bigint not null",
        "horizon_revenue": "double not null",
        "total_horizon_revenue": "double not null",
        "share_of_horizon_revenue": "double",
        "share_low": "double",
        "share_high": "double",
        "confidence": "double not null",
        "as_of": "date not null",
        "run_id": "varchar not null",
    },
    "group_forecasts": {
        "origin_date": "date not null",
        "horizon_end": "date not null",
        "definition": "varchar not null",
        "customers": "bigint not null",
        "naive_revenue": "double not null",
        "trend_factor": "double not null",
        "seasonal_factor": "double not null",
        "season_observed": "boolean not null",
        "forecast_revenue": "double not null",
        "lower_bound": "double not null",
        "upper_bound": "double not null",
        "log_half_width": "double not null",
        "errors_behind_interval": "integer not null",
        "interval_method": "varchar not null",
        "model_revenue": "double",
        "actual_revenue": "double",
        "log_error": "double",
        "parameters": "json",
        "as_of": "date not null",
        "run_id": "varchar not null",
    },
    "customer_forecast": {
        "customer_id": "varchar not null",
        "probability_alive": "double not null",
        "expected_purchases": "double not null",
        "expected_spend": "double not null",
        "expected_revenue": "double not null",
        "forecast_start": "date not null",
        "forecast_end": "date not null",
        "as_of": "date not null",
        "run_id": "varchar not null",
    },
    "forecast_parameters": {
        "run_id": "varchar not null",
        "as_of": "date not null",
        "model": "varchar not null",
        "parameter": "varchar not null",
        "value": "double not null",
    },
    "cluster_centroids": {
        "run_id": "varchar not null",
        "as_of": "date not null",
        "cluster_id": "integer not null",
        "feature": "varchar not null",
        "value": "double not null",
    },
    "segmentation_runs": {
        "run_id": "varchar primary key",
        "as_of": "date not null",
        "created_at": "timestamp not null",
        "model": "varchar not null",
        "model_path": "varchar",
        "refit": "boolean not null",
        "config": "json",
        "chosen": "json",
        "stability_ari": "double",
        "customers": "bigint not null",
        "insiders": "bigint not null",
        "model_sha256": "varchar",
    },
}
# Comments on the ones that need one:
# - eligibility_rules, group_evidence: made for every definition of the Insiders, since
#   the rolling-origin evaluation chooses among them (older warehouses gain definition).
# - insiders_definitions ... customer_forecast: the rolling-origin evaluation
#   (orchestration/insiders_steps.py); definition_evaluation.confidence is the level of
#   the random groups' range (share_low, share_high).
# - forecast_parameters: the BG/NBD ("bg_nbd") and Gamma-Gamma ("gamma_gamma") MAP
#   estimates at full precision of the last analytics run that refitted (refit: true),
#   with its run_id and as_of; a daily run (refit: false) scores with them and keeps
#   that run's rows of the dates before its as_of. Written only by refitting runs.
# - segmentation_runs: one row per clustering run; model_path is the model's file NAME in
#   models/ beside the warehouse and model_sha256 the SHA-256 of its bytes
#   (models_py.model_store loads nothing else).

# Tables of the single-cut-off backtest the rolling-origin evaluation replaced.
RETIRED_TABLES: tuple[str, ...] = (
    "membership_evaluations",
    "backtest_groups",
    "backtest_members",
    "revenue_forecast",
)


# ML_COLUMNS' types are DuckDB's; PostgreSQL spells one differently.
_PG_TYPES = {"double": "double precision"}


def column_spec(spec: str, postgres: bool = False) -> str:
    """An ``ML_COLUMNS`` column spec (``double not null``), in PostgreSQL's words when
    ``postgres``."""
    if not postgres:
        return spec
    word, _, rest = spec.partition(" ")
    return f"{_PG_TYPES.get(word, word)} {rest}".strip()


def _create_table(table: str, postgres: bool = False) -> str:
    columns = ",\n    ".join(
        f"{name} {column_spec(spec, postgres)}" for name, spec in ML_COLUMNS[table].items()
    )
    return f"create table if not exists ml.{table} (\n    {columns}\n)"


def ensure_ml_tables(con: Any, postgres: bool = False) -> None:
    """Create the ``ml`` schema and tables, add the columns an older warehouse lacks and
    drop retired tables; a no-op on an up-to-date warehouse.

    Called by every ``ml`` writer and reader on its own write connection, and before
    dbt builds views over the ``ml`` sources, so that the loader of ``raw`` need not
    know about ``ml`` at all. Added columns are nullable (DuckDB cannot add a NOT NULL
    column to rows that exist); the writers fill them. ``con`` is a DuckDB connection,
    or with ``postgres`` a psycopg one (the same tables, in the caller's transaction).
    """
    existing: dict[str, set[str]] = {}
    for table, column in con.execute(
        """
        select table_name, column_name from information_schema.columns
        where table_schema = 'ml' and table_catalog = current_database()
        """
    ).fetchall():
        existing.setdefault(table, set()).add(column)
    con.execute("create schema if not exists ml")
    for table, columns in ML_COLUMNS.items():
        if table not in existing:
            con.execute(_create_table(table, postgres))
            continue
        for name, spec in columns.items():
            if name not in existing[table]:
                kind = column_spec(spec.split()[0], postgres)
                con.execute(f"alter table ml.{table} add column {name} {kind}")
    for table in RETIRED_TABLES:
        if table in existing:
            con.execute(f"drop table ml.{table}")


# The columns the clustering reads; the dbt contract on dim_customers guarantees them.
CUSTOMER_QUERY = "select * from marts.dim_customers order by customer_id"


@dataclass(frozen=True)
class SegmentationWrite:
    """Everything one run writes, already shaped as the ml tables' rows.

    ``model_path`` is the model's file name in the model directory (never a path) and
    ``model_sha256`` the SHA-256 of its bytes (``models_py.model_store``).
    """

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
    model_sha256: str | None = None


class MlSchemaError(ValueError):
    """Rows that do not fit the declared ``ml`` table; the message is one line."""


@dataclass(frozen=True)
class RecordedRun:
    """A clustering run as ``ml.segmentation_runs`` records it."""

    run_id: str
    as_of: date
    model_path: str | None
    model_sha256: str | None
    config: dict[str, Any]
    chosen: dict[str, Any]


def read_customers(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    return con.execute(CUSTOMER_QUERY).df()


def read_previous_centroids(con: duckdb.DuckDBPyConnection) -> pd.DataFrame | None:
    """The latest run's centroids, wide (cluster_id + one column per feature), or None."""
    ensure_ml_tables(con)
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


def _recorded(row: tuple[Any, ...] | None) -> RecordedRun | None:
    if row is None:
        return None
    run_id, as_of, model_path, sha, config, chosen = row
    return RecordedRun(
        run_id=run_id,
        as_of=as_of,
        model_path=model_path,
        model_sha256=sha,
        config=json.loads(config) if config else {},
        chosen=json.loads(chosen) if chosen else {},
    )


_RUN_COLUMNS = "run_id, as_of, model_path, model_sha256, config, chosen"


def latest_model_run(con: duckdb.DuckDBPyConnection) -> RecordedRun | None:
    """The latest run that recorded a model file (the one ``refit: false`` reuses)."""
    ensure_ml_tables(con)
    return _recorded(
        con.execute(
            f"""
            select {_RUN_COLUMNS} from ml.segmentation_runs
            where model_path is not null order by created_at desc limit 1
            """
        ).fetchone()
    )


def recorded_run(con: duckdb.DuckDBPyConnection, run_id: str) -> RecordedRun | None:
    """One run's record, or None."""
    ensure_ml_tables(con)
    return _recorded(
        con.execute(
            f"select {_RUN_COLUMNS} from ml.segmentation_runs where run_id = ?", [run_id]
        ).fetchone()
    )


def recent_model_names(con: duckdb.DuckDBPyConnection, runs: int) -> list[str]:
    """The model files of the last ``runs`` runs recorded (several runs may share one:
    a ``refit: false`` run records the model it reused)."""
    ensure_ml_tables(con)
    rows = con.execute(
        """
        select model_path from ml.segmentation_runs
        order by created_at desc limit ?
        """,
        [runs],
    ).fetchall()
    return [r[0] for r in rows if r[0]]


def write_segmentation(con: duckdb.DuckDBPyConnection, write: SegmentationWrite) -> None:
    """Replace the current run's tables and append to the history, in one transaction."""
    replaced, appended = segmentation_frames(write)
    write_tables(con, replace=replaced, append=appended)


def segmentation_frames(
    write: SegmentationWrite, customers: int | None = None, insiders: int | None = None
) -> tuple[dict[str, pd.DataFrame | None], dict[str, pd.DataFrame]]:
    """One run's rows, shaped as the ``ml`` tables: (tables replaced whole, rows
    appended to the history). ``customers`` and ``insiders`` count the run's labels
    when ``write.labels`` holds only some of them (Spark labels the rest where they
    are: ``orchestration.spark_segmentation``)."""
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
                "customers": len(labels) if customers is None else customers,
                "insiders": int(labels["is_insider"].sum()) if insiders is None else insiders,
                "model_sha256": write.model_sha256,
            }
        ]
    )
    return replaced, {"cluster_centroids": centroids, "segmentation_runs": run_row}


def check_columns(table: str, frame: pd.DataFrame) -> list[str]:
    """The declared columns of ``ml.<table>``, if ``frame`` has exactly those (any order);
    otherwise one line naming the table and the missing and undeclared columns."""
    if table not in ML_COLUMNS:
        raise MlSchemaError(f"ml.{table} is not declared in ML_COLUMNS")
    declared = list(ML_COLUMNS[table])
    missing = [c for c in declared if c not in frame.columns]
    extra = [str(c) for c in frame.columns if c not in ML_COLUMNS[table]]
    if missing or extra:
        problems = []
        if missing:
            problems.append(f"lack {', '.join(missing)}")
        if extra:
            problems.append(f"have undeclared {', '.join(extra)}")
        raise MlSchemaError(f"ml.{table}: the new rows {' and '.join(problems)}")
    return declared


def write_tables(
    con: duckdb.DuckDBPyConnection,
    replace: Mapping[str, pd.DataFrame | None],
    append: Mapping[str, pd.DataFrame] | None = None,
) -> None:
    """In ONE transaction: replace whole ``ml`` tables and append rows to others.

    Every frame must have exactly the table's declared columns (:func:`check_columns`),
    checked before anything is written; ``None`` keeps a table as it is. Columns are
    inserted by name, so an older warehouse whose added columns sit elsewhere takes the
    same rows. Readers see the old tables or the new ones; a failure leaves the old ones.
    """
    plan = [(t, f, True) for t, f in replace.items() if f is not None]
    plan += [(t, f, False) for t, f in (append or {}).items()]
    checked = [(table, frame, whole, check_columns(table, frame)) for table, frame, whole in plan]
    ensure_ml_tables(con)
    registered = []
    try:
        for table, frame, _, columns in checked:
            con.register(f"new_{table}", frame[columns])
            registered.append(f"new_{table}")
        con.execute("begin transaction")
        try:
            for table, _, whole, columns in checked:
                if whole:
                    con.execute(f"delete from ml.{table}")
                names = ", ".join(f'"{c}"' for c in columns)
                con.execute(f"insert into ml.{table} ({names}) select {names} from new_{table}")
            con.execute("commit")
        except BaseException:
            con.execute("rollback")
            raise
    finally:
        for name in registered:
            con.unregister(name)
