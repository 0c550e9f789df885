"""Where the warehouse and the BI snapshot live: the names both sides agree on, once.

The pipeline (``orchestration``) writes the warehouse and publishes the BI snapshot; the
dashboard reads only the snapshot and must not import ``orchestration`` (Dagster, dbt and
the loader have no business in a read-only web app). So the file names, environment
variables, default paths and the snapshot's schema version they share live here, in a
module that imports nothing but the standard library, and both sides import them.

The functions are pure path arithmetic: they read the environment but touch no file.
"""

from __future__ import annotations

import os
from pathlib import Path

# The warehouse file: ``--warehouse``, else this variable, else the default (relative to
# the current directory). Not "insiders.duckdb": DuckDB names the catalog after the
# file, and a catalog "insiders" would make the schema reference insiders.members
# ambiguous.
WAREHOUSE_ENV = "INSIDERS_WAREHOUSE"
DEFAULT_WAREHOUSE = Path("warehouse") / "insiders_warehouse.duckdb"
# The warehouse's schemas: a warehouse file may not be named like one of them.
SCHEMAS: tuple[str, ...] = ("raw", "staging", "intermediate", "marts", "ml", "insiders", "main")

# The configuration of every DuckDB connection the project opens: never install or load
# an extension behind our back (there may be no internet, and a file that is not DuckDB
# must not make DuckDB fetch a scanner for it), and a memory limit, so that SQL larger
# than it spills to disk (``<warehouse>.tmp`` beside the warehouse file, DuckDB's
# default) instead of taking the machine's memory (DuckDB's own default is 80% of RAM).
# profiles/profiles.yml passes the same to dbt as ``config_options``: DuckDB refuses a
# second connection to a file in one process with another configuration, memory limit
# included. The limit is read once, when this module is imported.
MEMORY_LIMIT_ENV = "INSIDERS_DUCKDB_MEMORY_LIMIT"
DEFAULT_MEMORY_LIMIT = "4GB"
DUCKDB_CONFIG: dict[str, bool | str] = {
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "memory_limit": os.environ.get(MEMORY_LIMIT_ENV) or DEFAULT_MEMORY_LIMIT,
}

# The BI snapshot: ``<bi dir>/insiders_bi.duckdb`` and ``<bi dir>/parquet/`` (a link to the
# current version), the BI directory being ``$INSIDERS_BI_DIR`` or ``bi/`` beside the
# warehouse; readers may name another snapshot file with ``$INSIDERS_BI_SNAPSHOT``.
SNAPSHOT_FILE = "insiders_bi.duckdb"
PARQUET_LINK = "parquet"
BI_DIR_ENV = "INSIDERS_BI_DIR"
SNAPSHOT_ENV = "INSIDERS_BI_SNAPSHOT"

# Bumped whenever the published tables change: the publisher writes it into
# ``main.snapshot_info`` and the dashboard refuses (with a message) a snapshot whose
# version it cannot read. 3: insiders.answers published; snapshot_info.is_synthetic;
# insiders.kpis.is_synthetic.
SCHEMA_VERSION = 3


def resolve_warehouse(path: str | os.PathLike[str] | None = None) -> Path:
    """``path`` (``--warehouse``), else ``$INSIDERS_WAREHOUSE``, else the default file,
    made absolute.

    Refuses a file named like one of the warehouse's schemas (``insiders.duckdb``):
    DuckDB would name its catalog ``insiders`` and ``insiders.members`` would become
    ambiguous for every reader.
    """
    chosen = Path(path or os.environ.get(WAREHOUSE_ENV) or DEFAULT_WAREHOUSE)
    if chosen.stem.lower() in SCHEMAS:
        raise ValueError(
            f"{chosen}: a warehouse file may not be named like a schema "
            f"({', '.join(SCHEMAS)}): DuckDB would make '{chosen.stem}.<table>' ambiguous"
        )
    return chosen.expanduser().resolve()


def resolve_bi_dir(warehouse: Path, bi_dir: str | os.PathLike[str] | None = None) -> Path:
    """``bi_dir``, else ``$INSIDERS_BI_DIR``, else ``bi/`` beside the warehouse file."""
    chosen = bi_dir or os.environ.get(BI_DIR_ENV)
    return Path(chosen).expanduser().resolve() if chosen else warehouse.parent / "bi"


def resolve_snapshot(warehouse: Path | None = None) -> Path:
    """The snapshot file a reader opens: ``$INSIDERS_BI_SNAPSHOT``, else
    ``insiders_bi.duckdb`` in the BI directory of ``warehouse`` (else of the warehouse
    ``resolve_warehouse`` names), i.e. the file ``insiders run`` publishes.

    Raises ``ValueError`` for a warehouse named like a schema (see ``resolve_warehouse``).
    """
    chosen = os.environ.get(SNAPSHOT_ENV)
    if chosen:
        return Path(chosen).expanduser()
    return resolve_bi_dir(warehouse or resolve_warehouse()) / SNAPSHOT_FILE
