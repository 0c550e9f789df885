"""Dagster resources: the warehouse connection, opened only while a step needs it."""

from __future__ import annotations

from pathlib import Path

import duckdb
from dagster import ConfigurableResource

from orchestration.warehouse import connect


class WarehouseResource(ConfigurableResource):
    """The DuckDB warehouse file. Steps open it briefly: one writer process at a time."""

    path: str

    def connect(self, read_only: bool = False) -> duckdb.DuckDBPyConnection:
        return connect(Path(self.path), read_only=read_only)
