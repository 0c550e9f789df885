"""Streamlit helpers shared by the pages: the snapshot's states, cached reads, formats.

Every page starts with ``open_snapshot()``. It shows one message and stops the page
when there is nothing to show (no snapshot yet, a snapshot from an older schema, a
read error), so the pages below it only deal with data. Reads are cached on the
snapshot's fingerprint: a snapshot renamed over the old one has a new fingerprint, so
the next rerun reads it, with no restart and no stale cache.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import duckdb
import pandas as pd
import streamlit as st

from dashboard.snapshot import (
    Fingerprint,
    MemberFilter,
    Snapshot,
    SnapshotChangedError,
    SnapshotInfo,
    fingerprint,
    snapshot_path,
)

T = TypeVar("T")

# Cached reads are keyed on the fingerprint, so the time to live only bounds memory
# held for snapshots that were replaced since.
_TTL_SECONDS = 600
# Session state: the fingerprint a rerun was requested for (see ``_snapshot_changed``),
# and the fingerprint the current run shows (read by the sidebar's watcher).
_RERUN_KEY = "_dashboard_rerun_for"
SHOWN_KEY = "_dashboard_shown_fingerprint"

RUN_COMMAND = "insiders run"
# Shown at the top of every page of a snapshot made from synthetic demo data, so no one
# mistakes the demo's figures for the store's.
SYNTHETIC_BANNER = "Synthetic demo data: these figures are not real."


@st.cache_data(ttl=_TTL_SECONDS, max_entries=16, show_spinner=False)
def _problems(path: str, key: Fingerprint) -> list[str]:
    return Snapshot(Path(path), key).problems()


@st.cache_data(ttl=_TTL_SECONDS, max_entries=16, show_spinner=False)
def _info(path: str, key: Fingerprint) -> SnapshotInfo | None:
    return Snapshot(Path(path), key).info()


@st.cache_data(ttl=_TTL_SECONDS, max_entries=64, show_spinner=False)
def _table(path: str, key: Fingerprint, name: str) -> pd.DataFrame:
    return Snapshot(Path(path), key).read_table(name)


@st.cache_data(ttl=_TTL_SECONDS, max_entries=256, show_spinner=False)
def _members(
    path: str,
    key: Fingerprint,
    search: str,
    countries: tuple[str, ...],
    cluster_ids: tuple[int, ...],
    min_monetary: float | None,
) -> pd.DataFrame:
    member_filter = MemberFilter(search, countries, cluster_ids, min_monetary)
    return Snapshot(Path(path), key).members(member_filter)


@st.cache_data(ttl=_TTL_SECONDS, max_entries=256, show_spinner=False)
def _customer_rows(path: str, key: Fingerprint, name: str, customer_id: str) -> pd.DataFrame:
    return Snapshot(Path(path), key).customer_rows(name, customer_id)


def first_line(exc: BaseException) -> str:
    """An exception as one line for the page (DuckDB's messages run over several)."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _snapshot_changed(path: Path) -> NoReturn:
    """A new snapshot arrived in the middle of this run: start the run over so the page
    shows one snapshot, not a mix. If the same file keeps failing the check, say so
    rather than rerun forever."""
    now = fingerprint(path)
    if now is not None and st.session_state.get(_RERUN_KEY) != now:
        st.session_state[_RERUN_KEY] = now
        st.rerun()
    st.error("The BI snapshot changed while it was being read. Reload the page.")
    st.stop()


def _guard(path: Path, what: str, read: Callable[[], T]) -> T:
    """Run one read; a DuckDB or file error becomes one line on the page, not a trace."""
    try:
        return read()
    except SnapshotChangedError:
        _snapshot_changed(path)
    except (duckdb.Error, OSError) as exc:
        st.error(f"Could not read {what} from the BI snapshot at {path}: {first_line(exc)}")
        st.stop()


@dataclass(frozen=True)
class OpenSnapshot:
    """The snapshot a page run shows: every read goes through the same fingerprint."""

    path: Path
    key: Fingerprint
    info: SnapshotInfo

    def has(self, name: str) -> bool:
        """Whether the snapshot has an optional table (``OPTIONAL_COLUMNS``): a snapshot
        published before the table existed lacks it."""
        return name in self.info.optional_tables

    def table(self, name: str) -> pd.DataFrame:
        """A published table (``schema.table``), read once per snapshot."""
        return _guard(self.path, name, lambda: _table(str(self.path), self.key, name))

    def members(self, member_filter: MemberFilter) -> pd.DataFrame:
        """The Insiders matching the page's filters (bound as query parameters)."""
        return _guard(
            self.path,
            "insiders.members",
            lambda: _members(
                str(self.path),
                self.key,
                member_filter.search,
                tuple(member_filter.countries),
                tuple(member_filter.cluster_ids),
                member_filter.min_monetary,
            ),
        )

    def customer_rows(self, name: str, customer_id: str) -> pd.DataFrame:
        """One customer's rows of a table with a ``customer_id``."""
        return _guard(
            self.path,
            name,
            lambda: _customer_rows(str(self.path), self.key, name, customer_id),
        )


def resolve_path() -> Path:
    """The snapshot path, or a one-line error and a stopped page if it cannot be named."""
    try:
        return snapshot_path()
    except ValueError as exc:
        st.error(f"Cannot locate the BI snapshot: {first_line(exc)}")
        st.stop()


def open_snapshot() -> OpenSnapshot:
    """The snapshot, checked; or one message for why there is none, and a stopped page.

    States: no file yet (say where and which command publishes one), a file from
    another schema (say what is wrong and that a run publishes a new one), a file DuckDB
    cannot read (one line of error). A snapshot made from synthetic demo data gets the
    synthetic banner first, above everything the page shows.
    """
    path = resolve_path()
    key = fingerprint(path)
    if key is None:
        st.info(
            f"No BI snapshot yet: there is no file at `{path}`. "
            f"`{RUN_COMMAND}` builds the warehouse and publishes one; this page shows it "
            "as soon as the run succeeds (set `INSIDERS_BI_SNAPSHOT` to read another file)."
        )
        st.stop()
    problems = _guard(path, "the schema", lambda: _problems(str(path), key))
    if problems:
        st.warning(
            f"The BI snapshot at `{path}` comes from an older schema, which this dashboard "
            f"cannot show: {'; '.join(problems)}. "
            f"`{RUN_COMMAND}` publishes a new one."
        )
        st.stop()
    info = _guard(path, "snapshot_info", lambda: _info(str(path), key))
    if info is None:  # problems() reports this; kept for the type checker
        st.warning(f"The BI snapshot has no snapshot_info. `{RUN_COMMAND}` publishes a new one.")
        st.stop()
    st.session_state.pop(_RERUN_KEY, None)
    if info.is_synthetic:
        st.warning(SYNTHETIC_BANNER, icon=":material/warning:")
    return OpenSnapshot(path=path, key=key, info=info)


def empty(message: str) -> None:
    """The state of an empty table: a plain message where the data would be."""
    st.info(message)


# Formats. Money is in pounds (the store's invoices are in GBP).


def is_missing(value: Any) -> bool:
    """None, NaN, NaT or pandas' NA."""
    if value is None:
        return True
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def fmt_int(value: Any) -> str:
    return "—" if is_missing(value) else f"{int(value):,}"


def fmt_share(value: Any) -> str:
    return "—" if is_missing(value) else f"{float(value):.1%}"


def fmt_money(value: Any) -> str:
    return "—" if is_missing(value) else f"£{float(value):,.0f}"


def fmt_number(value: Any, digits: int = 1) -> str:
    return "—" if is_missing(value) else f"{float(value):,.{digits}f}"


def fmt_date(value: Any) -> str:
    """A date (or timestamp at midnight) as ``YYYY-MM-DD``."""
    if is_missing(value):
        return "—"
    if isinstance(value, pd.Timestamp | datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def months_between(start: Any, end: Any) -> int | None:
    """Whole months from ``start`` to ``end`` (the forecast's horizon), or None."""
    if is_missing(start) or is_missing(end):
        return None
    start, end = pd.Timestamp(start), pd.Timestamp(end)
    months = (end.year - start.year) * 12 + end.month - start.month
    return months if months > 0 else max(1, math.ceil((end - start).days / 30))


def cluster_label(cluster_id: Any, cluster_name: Any) -> str:
    """``3 · Lapsed one-timers``: the id keeps clusters with one name apart."""
    return f"{cluster_id} · {cluster_name}"
