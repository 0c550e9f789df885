"""Reading the BI snapshot: pure data access, no Streamlit.

The pipeline publishes the BI-facing tables to a separate DuckDB file and renames a new
file over it after every successful run (``orchestration.bi_snapshot``). The dashboard
reads only that file, read-only, so it never contends with a run that holds the
warehouse. Two consequences shape this module:

- Every read opens the file, reads, and closes it again. A connection kept open would
  pin the old file (its inode lives on after the rename) and the dashboard would never
  see a new run.
- Every read attaches the file to a fresh in-memory database instead of calling
  ``duckdb.connect(path)``. DuckDB caches database instances per path inside a process:
  while any other connection to the path is open (another browser session reading at
  the same moment), ``duckdb.connect(path, read_only=True)`` hands back that cached
  instance, i.e. the *old* file, even after a new one was renamed over it. A private
  in-memory database that attaches the path opens whatever file the path names now.

``fingerprint`` identifies the file behind the path (inode, mtime, size); callers use it
as a cache key, so a replaced snapshot is read on the next rerun without a restart.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any, NamedTuple

import duckdb
import pandas as pd

from models_py.locations import DUCKDB_CONFIG, SCHEMA_VERSION, resolve_snapshot

# The oldest snapshot schema this dashboard reads: version 2 lacks ``insiders.answers``
# and the ``is_synthetic`` flags, which the pages treat as optional (no answers, with a
# message; no banner), so a dashboard updated before the next run still shows it.
OLDEST_SCHEMA_VERSION = 2

# The catalog name the snapshot file is attached under (see ``Snapshot.connect``).
_CATALOG = "snapshot"
INFO_TABLE = "main.snapshot_info"

# The columns the dashboard reads from each published table. A snapshot lacking any of
# them was published by an older schema: the dashboard says so instead of failing on a
# page. Columns the dashboard only shows when present (``trend_factor``) are not listed.
REQUIRED_COLUMNS: dict[str, tuple[str, ...]] = {
    "insiders.kpis": (
        "as_of",
        "insiders",
        "customers",
        "share_of_customers",
        "share_of_all_revenue",
        "share_of_customer_revenue",
    ),
    "insiders.members": (
        "customer_id",
        "cluster_id",
        "cluster_name",
        "country",
        "recency_days",
        "frequency",
        "monetary",
        "member_since",
        "expected_revenue_next_months",
    ),
    "insiders.cluster_profile": (
        "cluster_id",
        "cluster_name",
        "is_insider",
        "customers",
        "share_of_customers",
        "share_of_revenue",
        "mean_recency_days",
        "mean_frequency",
        "mean_monetary",
        "recency_vs_base",
        "frequency_vs_base",
        "monetary_vs_base",
    ),
    "insiders.cluster_actions": ("cluster_id", "cluster_name", "recommended_action", "why"),
    "insiders.eligibility_rules": (
        "rule_id",
        "rule",
        "conditions",
        "customers",
        "insiders",
        "precision",
        "recall",
    ),
    "insiders.evidence": (
        "evidence_id",
        "evidence_kind",
        "metric",
        "customer_group",
        "insiders",
        "insiders_mean",
        "others_mean",
        "difference",
        "ci_low",
        "ci_high",
        "p_value",
    ),
    "insiders.definition_evaluation": (
        "origin_date",
        "horizon_end",
        "definition",
        "description",
        "sort_order",
        "is_baseline_random",
        "members",
        "horizon_revenue",
        "share_of_horizon_revenue",
        "share_low",
        "share_high",
        "ratio_to_top_past_revenue",
    ),
    "insiders.definition_choice": (
        "definition",
        "description",
        "sort_order",
        "origins",
        "origins_evaluated",
        "mean_ratio",
        "min_ratio",
        "max_ratio",
        "origins_below_top_past_revenue",
        "mean_share",
        "qualifies",
        "evidence_rank",
        "is_chosen",
        "chosen_by",
    ),
    "insiders.revenue_forecast": (
        "customer_group",
        "definition",
        "customers",
        "period_start",
        "period_end",
        "expected_revenue",
        "lower_bound",
        "upper_bound",
        "naive_revenue",
        "model_revenue",
        "evaluation_origins",
        "origins_covered",
        "median_abs_relative_error",
        "naive_median_abs_relative_error",
        "model_median_abs_relative_error",
    ),
    "insiders.forecast_evaluation": (
        "origin_date",
        "horizon_end",
        "definition",
        "customers",
        "forecast_revenue",
        "lower_bound",
        "upper_bound",
        "naive_revenue",
        "model_revenue",
        "actual_revenue",
        "relative_error",
        "naive_relative_error",
        "model_relative_error",
        "interval_covers_actual",
        "interval_width_ratio",
    ),
    "insiders.customer_forecast": (
        "customer_id",
        "probability_alive",
        "expected_purchases",
        "expected_revenue",
        "forecast_start",
        "forecast_end",
    ),
    "insiders.membership_history": (
        "customer_id",
        "membership_number",
        "valid_from",
        "valid_to",
        "entry_reason",
        "exit_reason",
    ),
    "insiders.membership_movement": (
        "evaluation_date",
        "members",
        "entered",
        "left_program",
        "stayed",
    ),
    "insiders.monthly_revenue": ("month_start", "insiders_revenue", "others_revenue"),
    "marts.dim_customers": ("customer_id", "country"),
    "ml.customer_embedding": ("customer_id", "x", "y", "cluster_id"),
    "ml.model_selection": ("space", "algorithm", "k", "silhouette", "is_chosen"),
}

# Tables a page shows only when the snapshot has them: a snapshot published before they
# existed is still shown, and the page says what it lacks. One present without these
# columns is a problem like any required table's.
OPTIONAL_COLUMNS: dict[str, tuple[str, ...]] = {
    "insiders.answers": ("question_number", "question", "answer"),
}
READABLE = (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS)

# A stable order for every table (the dashboard shows rows in this order).
ORDER_BY: dict[str, str] = {
    "insiders.kpis": "as_of desc",
    "insiders.members": "monetary desc, customer_id",
    "insiders.cluster_profile": "cluster_id",
    "insiders.cluster_actions": "cluster_id",
    "insiders.eligibility_rules": "rule_id",
    "insiders.evidence": "evidence_id",
    "insiders.definition_evaluation": "origin_date, sort_order, definition",
    "insiders.definition_choice": "evidence_rank, definition",
    "insiders.revenue_forecast": "customer_group desc",
    "insiders.forecast_evaluation": "origin_date, definition",
    "insiders.customer_forecast": "customer_id",
    "insiders.membership_history": "customer_id, membership_number",
    "insiders.membership_movement": "evaluation_date",
    "insiders.monthly_revenue": "month_start",
    "marts.dim_customers": "customer_id",
    "ml.customer_embedding": "customer_id",
    "ml.model_selection": "is_chosen desc, silhouette desc nulls last, space, algorithm, k",
    "insiders.answers": "question_number",
}

# Tables with a ``customer_id`` that ``Snapshot.customer_rows`` may read one customer from.
CUSTOMER_TABLES = (
    "insiders.members",
    "insiders.membership_history",
    "insiders.customer_forecast",
    "marts.dim_customers",
)


class Fingerprint(NamedTuple):
    """Which file a path names right now: a renamed-in snapshot has a new inode."""

    inode: int
    mtime_ns: int
    size: int


class SnapshotChangedError(RuntimeError):
    """A new snapshot replaced the file between the caller's ``fingerprint`` and the
    read: the caller should start over with the new one rather than mix two runs."""


@dataclass(frozen=True)
class SnapshotInfo:
    """``main.snapshot_info``: which run a snapshot shows and which schema it has."""

    snapshot_id: str
    run_id: str
    as_of: date | None
    published_at: datetime | None
    schema_version: int | None
    table_rows: dict[str, int]
    # Made from synthetic demo data: every page says so (``snapshot_info.is_synthetic``,
    # else ``insiders.kpis.is_synthetic``; False when neither exists, as in snapshots
    # published before the flag).
    is_synthetic: bool = False
    # The optional tables (``OPTIONAL_COLUMNS``) this snapshot has.
    optional_tables: frozenset[str] = frozenset()


@dataclass(frozen=True)
class MemberFilter:
    """The Insiders page's filters; every field is bound as a query parameter."""

    search: str = ""
    countries: tuple[str, ...] = ()
    cluster_ids: tuple[int, ...] = ()
    min_monetary: float | None = None


def snapshot_path(warehouse: Path | None = None) -> Path:
    """``$INSIDERS_BI_SNAPSHOT``, else ``insiders_bi.duckdb`` in the BI directory of the
    warehouse (``$INSIDERS_BI_DIR``, else ``bi/`` beside ``warehouse``, else beside
    ``$INSIDERS_WAREHOUSE`` or the default warehouse): the same file ``insiders run``
    publishes (``models_py.locations``, shared with the publisher).

    Raises ``ValueError`` for a warehouse named like a schema.
    """
    return resolve_snapshot(warehouse)


def fingerprint(path: Path) -> Fingerprint | None:
    """The file's identity, or None if there is no file (no snapshot published yet)."""
    try:
        stat = path.stat()
    except (FileNotFoundError, NotADirectoryError):
        return None
    return Fingerprint(stat.st_ino, stat.st_mtime_ns, stat.st_size)


def _literal(path: Path) -> str:
    """A path as a SQL string literal: ATTACH takes no parameters. The path comes from
    the environment or configuration, never from the page."""
    return "'" + str(path).replace("'", "''") + "'"


def _checked_name(name: str, allowed: Sequence[str]) -> str:
    """Table names are interpolated into SQL, so only names from a fixed list pass."""
    if name not in allowed:
        raise ValueError(f"{name}: not a table the dashboard reads")
    return name


class Snapshot:
    """One snapshot file. Holds no connection: each method opens the file and closes it.

    ``expected`` is the fingerprint the caller computed (and keyed its cache on); a read
    that finds another file behind the path raises ``SnapshotChangedError``.
    """

    def __init__(self, path: Path, expected: Fingerprint | None = None) -> None:
        self.path = path
        self.expected = expected

    def exists(self) -> bool:
        """Whether a snapshot has been published at the path."""
        return self.path.is_file()

    def fingerprint(self) -> Fingerprint | None:
        return fingerprint(self.path)

    @contextmanager
    def connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A short-lived read-only connection (see the module docstring for why it is an
        attach to an in-memory database), with the snapshot as the default catalog."""
        if not self.exists():
            raise FileNotFoundError(f"{self.path}: no BI snapshot")
        con = duckdb.connect(":memory:", config=DUCKDB_CONFIG)
        try:
            con.execute(f"attach {_literal(self.path)} as {_CATALOG} (read_only)")
            con.execute(f"use {_CATALOG}")
            if self.expected is not None and fingerprint(self.path) != self.expected:
                raise SnapshotChangedError(f"{self.path}: replaced by a newer snapshot")
            yield con
        finally:
            con.close()

    def _columns(self, con: duckdb.DuckDBPyConnection) -> dict[str, set[str]]:
        rows = con.execute(
            """
            select table_schema || '.' || table_name, column_name
            from information_schema.columns
            where table_catalog = ?
            """,
            [_CATALOG],
        ).fetchall()
        columns: dict[str, set[str]] = {}
        for table, column in rows:
            columns.setdefault(table, set()).add(column)
        return columns

    def info(self) -> SnapshotInfo | None:
        """The snapshot's ``snapshot_info`` row, or None if it has none (an older
        publisher) or it is empty."""
        with self.connect() as con:
            return self._info(con, self._columns(con))

    def _info(
        self, con: duckdb.DuckDBPyConnection, columns: dict[str, set[str]]
    ) -> SnapshotInfo | None:
        present = columns.get(INFO_TABLE, set())
        wanted = ("snapshot_id", "run_id", "as_of", "published_at", "schema_version")
        if not set(wanted) <= present:
            return None
        row = con.execute(
            f"select {', '.join(wanted)}, "
            f"{'table_rows' if 'table_rows' in present else 'null'} from {INFO_TABLE} limit 1"
        ).fetchone()
        if row is None:
            return None
        snapshot_id, run_id, as_of, published_at, version, table_rows = row
        try:
            rows = {str(k): int(v) for k, v in json.loads(table_rows or "{}").items()}
        except (TypeError, ValueError, AttributeError):
            rows = {}
        return SnapshotInfo(
            snapshot_id=str(snapshot_id),
            run_id=str(run_id),
            as_of=as_of,
            published_at=published_at,
            schema_version=int(version) if version is not None else None,
            table_rows=rows,
            is_synthetic=self._is_synthetic(con, columns),
            optional_tables=frozenset(
                table
                for table, required in OPTIONAL_COLUMNS.items()
                if set(required) <= columns.get(table, set())
            ),
        )

    @staticmethod
    def _is_synthetic(con: duckdb.DuckDBPyConnection, columns: dict[str, set[str]]) -> bool:
        """Whether the snapshot says it was made from synthetic demo data: its
        ``snapshot_info.is_synthetic``, else any ``insiders.kpis.is_synthetic``. A snapshot
        with neither column predates the flag and is not called synthetic."""
        for table in (INFO_TABLE, "insiders.kpis"):
            if "is_synthetic" in columns.get(table, set()):
                row = con.execute(f"select bool_or(is_synthetic) from {table}").fetchone()
                return bool(row is not None and row[0])
        return False

    def problems(self) -> list[str]:
        """Why this dashboard cannot read the snapshot (empty: it can).

        An old snapshot stays in place until the next successful run publishes a new
        one, so the dashboard may meet a file from an older schema; each problem is a
        sentence for the page.
        """
        problems: list[str] = []
        with self.connect() as con:
            columns = self._columns(con)
            info = self._info(con, columns)
        if info is None:
            problems.append("it has no snapshot_info (it was published by an older version)")
        elif not OLDEST_SCHEMA_VERSION <= (info.schema_version or 0) <= SCHEMA_VERSION:
            newer = info.schema_version is not None and info.schema_version > SCHEMA_VERSION
            problems.append(
                f"its schema version is {info.schema_version}; this dashboard reads "
                f"versions {OLDEST_SCHEMA_VERSION} to {SCHEMA_VERSION}"
                + (" (the snapshot is newer: update the dashboard)" if newer else "")
            )
        for table, required in (*REQUIRED_COLUMNS.items(), *OPTIONAL_COLUMNS.items()):
            present = columns.get(table)
            if present is None:
                if table in REQUIRED_COLUMNS:
                    problems.append(f"table {table} is missing")
                continue
            missing = [c for c in required if c not in present]
            if missing:
                problems.append(f"table {table} lacks column(s) {', '.join(missing)}")
        return problems

    def read_table(self, name: str) -> pd.DataFrame:
        """A whole published table, in the stable order of ``ORDER_BY``."""
        name = _checked_name(name, READABLE)
        with self.connect() as con:
            return con.execute(f"select * from {name} order by {ORDER_BY[name]}").df()

    def members(self, member_filter: MemberFilter) -> pd.DataFrame:
        """The Insiders matching the filter; every value is a query parameter.

        ``search`` matches a part of the customer id, case-insensitively (``contains``,
        not ``like``: a ``%`` or ``_`` typed on the page means itself). Empty
        ``countries`` or ``cluster_ids`` and a None ``min_monetary`` do not filter.
        """
        params: dict[str, Any] = {
            "search": member_filter.search.strip(),
            "countries": list(member_filter.countries),
            "cluster_ids": [int(c) for c in member_filter.cluster_ids],
            "min_monetary": member_filter.min_monetary,
        }
        with self.connect() as con:
            return con.execute(
                f"""
                select * from insiders.members
                where ($search = '' or contains(lower(customer_id), lower($search)))
                    and (len($countries::varchar[]) = 0
                        or list_contains($countries::varchar[], country))
                    and (len($cluster_ids::integer[]) = 0
                        or list_contains($cluster_ids::integer[], cluster_id))
                    and ($min_monetary::double is null or monetary >= $min_monetary::double)
                order by {ORDER_BY["insiders.members"]}
                """,
                params,
            ).df()

    def customer_rows(self, name: str, customer_id: str) -> pd.DataFrame:
        """One customer's rows of a table with a ``customer_id`` (a parameter)."""
        name = _checked_name(name, CUSTOMER_TABLES)
        with self.connect() as con:
            return con.execute(
                f"select * from {name} where customer_id = ? order by {ORDER_BY[name]}",
                [customer_id],
            ).df()
