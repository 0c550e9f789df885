"""Which engine the warehouse lives in: ``duckdb`` (the embedded default),
``postgres`` (a server shared by a team and its BI tools) or ``spark`` (a local Spark
session, or a cluster, for data that does not fit one machine).

Chosen by ``--target`` on every ``insiders`` command, else ``$INSIDERS_TARGET``, else
DuckDB; ``profiles/profiles.yml`` reads the same variable for a dbt started by hand.
The name is checked where it enters: nothing else is ever passed on.
"""

from __future__ import annotations

import os

TARGET_ENV = "INSIDERS_TARGET"
DUCKDB = "duckdb"
POSTGRES = "postgres"
SPARK = "spark"
TARGETS: tuple[str, ...] = (DUCKDB, POSTGRES, SPARK)


class TargetError(ValueError):
    """An unknown target name; one line."""


def check_target(name: str) -> str:
    """``name`` if it is a known target, else :class:`TargetError`."""
    if name not in TARGETS:
        raise TargetError(f"unknown target {name!r}: one of {', '.join(TARGETS)}")
    return name


def resolve_target(name: str | None = None) -> str:
    """``name`` (``--target``), else ``$INSIDERS_TARGET``, else duckdb; checked."""
    chosen = name or os.environ.get(TARGET_ENV) or DUCKDB
    try:
        return check_target(chosen.strip().lower())
    except TargetError:
        where = "--target" if name else f"${TARGET_ENV}"
        raise TargetError(
            f"{where}: unknown target {chosen!r}: one of {', '.join(TARGETS)}"
        ) from None
