"""Dagster resources: the warehouse connection, opened only while a step needs it."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import duckdb
from dagster import ConfigurableResource

from orchestration.bi_snapshot import resolve_bi_dir
from orchestration.warehouse import connect


class WarehouseResource(ConfigurableResource):
    """The DuckDB warehouse file. Steps open it briefly: one writer process at a time."""

    path: str

    def connect(self, read_only: bool = False) -> duckdb.DuckDBPyConnection:
        return connect(Path(self.path), read_only=read_only)


class BuildSettings(ConfigurableResource):
    """Settings of the whole run, shared by every dbt step of it.

    ``as_of`` (YYYY-MM-DD): compute customer features as of this date; empty: the day
    after the last invoice. ``insiders_definition``: force this definition of the
    Insiders (one of ``models_py.insiders_definitions.DEFINITIONS``) instead of the one
    with the best rolling-origin evidence; empty: automatic. A resource, not op config,
    because Dagster may run the dbt assets as several steps in one run, and they must
    all agree.
    """

    as_of: str = ""
    insiders_definition: str = ""

    def dbt_vars(self) -> dict[str, str]:
        """The dbt vars of the run, each checked where it enters."""
        from models_py.insiders_definitions import DEFINITIONS

        out: dict[str, str] = {}
        if self.as_of:
            try:
                out["as_of"] = date.fromisoformat(self.as_of.strip()).isoformat()
            except ValueError:
                raise ValueError(
                    f"settings.as_of: not a date (YYYY-MM-DD): {self.as_of!r}"
                ) from None
        if self.insiders_definition:
            if self.insiders_definition not in DEFINITIONS:
                raise ValueError(
                    f"settings.insiders_definition: unknown definition "
                    f"{self.insiders_definition!r}; one of {', '.join(DEFINITIONS)}"
                )
            out["insiders_definition"] = self.insiders_definition
        return out


class BiSnapshotResource(ConfigurableResource):
    """Where the BI snapshot is published: ``directory``, else ``$INSIDERS_BI_DIR``,
    else ``bi/`` beside the warehouse file."""

    directory: str = ""

    def resolve(self, warehouse: Path) -> Path:
        return resolve_bi_dir(warehouse, self.directory or None)
