"""The clustering step behind the ``customer_segmentation`` asset: wiring only.

Reads ``marts.dim_customers``, the previous run's centroids and, with ``refit: false``,
the last recorded model (through ``models_py.model_store``, which loads only a checked
file of the model directory); calls ``models_py.clustering.segment``; saves a new
model; writes ``ml.*`` in one transaction; keeps the last ``keep_models`` runs' models;
and returns the metadata Dagster shows. No clustering is computed here.
"""

from __future__ import annotations

import base64
import dataclasses
import logging
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_args, get_origin, get_type_hints

import duckdb
import pandas as pd
import pydantic
from dagster import Config, MetadataValue

from models_py.clustering import ClusteringConfig
from models_py.model_store import load_model, models_dir, prune_models, save_model, save_plot
from orchestration.ml_tables import (
    SegmentationWrite,
    latest_model_run,
    read_customers,
    read_previous_centroids,
    recent_model_names,
    write_segmentation,
)
from orchestration.sessions import Warehouse, open_warehouse
from orchestration.spark import SparkWarehouse

if TYPE_CHECKING:
    from models_py.clustering import Segmentation
    from orchestration.ml_tables import RecordedRun

DEFAULT_KEEP_MODELS = 3


def _clustering_fields() -> dict[str, Any]:
    """Every ClusteringConfig field as a pydantic field (tuples become lists: Dagster's
    config has lists), with the dataclass's own default."""
    hints = get_type_hints(ClusteringConfig)
    fields: dict[str, Any] = {}
    for field in dataclasses.fields(ClusteringConfig):
        annotation, default = hints[field.name], field.default
        if default is dataclasses.MISSING and field.default_factory is not dataclasses.MISSING:
            default = field.default_factory()
        if get_origin(annotation) is tuple:
            annotation, default = list[get_args(annotation)[0]], list(default)
        fields[field.name] = (annotation, default)
    return fields


# Derived from the dataclass, so a new clustering setting is one edit (in config.py).
_ClusteringSettings: type[Config] = pydantic.create_model(
    "ClusteringSettings", __base__=Config, __module__=__name__, **_clustering_fields()
)


class SegmentationConfig(_ClusteringSettings):  # type: ignore[misc, valid-type]
    """Run configuration of the clustering (recorded with every run): every field of
    ``models_py.clustering.ClusteringConfig``, plus ``refit`` (false: score with the last
    recorded model) and ``keep_models`` (the models of the last N recorded runs are
    kept in ``models/``; older ones and unrecorded ones are removed)."""

    refit: bool = True
    keep_models: int = DEFAULT_KEEP_MODELS

    def clustering_config(self) -> ClusteringConfig:
        """The validated dataclass (raises ``ValueError`` naming a bad setting)."""
        return ClusteringConfig(
            **{f.name: getattr(self, f.name) for f in dataclasses.fields(ClusteringConfig)}
        )


class NoCustomersError(ValueError):
    """``marts.dim_customers`` has no customer to cluster; the message says why in one
    line (the Dagster asset raises it as a ``dagster.Failure`` with that description)."""


def run_segmentation(
    warehouse: Warehouse,
    config: SegmentationConfig,
    run_id: str,
    log: logging.Logger | Any,
    as_of: date | str | None = None,
    models: Path | None = None,
) -> dict[str, Any]:
    """Fit or score, write ``ml.*`` atomically, prune old models; Dagster metadata.

    ``as_of``: the run's setting (empty: the day after the last invoice), used only to
    say why there is no customer. ``models``: the model directory (default ``models/``
    beside ``warehouse``; pass the real warehouse's when ``warehouse`` is a work copy).
    """
    # scikit-learn is imported by this step's own helpers (fit_or_score, finish).

    if isinstance(warehouse, SparkWarehouse):
        from orchestration.spark_segmentation import run_segmentation_on_spark

        return run_segmentation_on_spark(warehouse, config, run_id, log, as_of, models)
    clustering = config.clustering_config()  # a bad setting fails before any reading
    if config.keep_models < 1:
        raise ValueError(f"keep_models must be at least 1, got {config.keep_models}")
    directory = models or models_dir(warehouse)
    with open_warehouse(warehouse, reads=["marts.dim_customers"]) as con:
        customers = _customers(con)
        previous = read_previous_centroids(con)
        saved_run = None if config.refit else latest_model_run(con)
    if isinstance(customers, bool):
        with open_warehouse(warehouse, reads=["raw.transactions"]) as con:
            raise NoCustomersError(_why_no_customers(con, _as_date(as_of), built=customers))

    outcome, model_path, sha256 = fit_or_score(
        customers, clustering, previous, saved_run, config.refit, directory, run_id, log
    )
    as_of_customers = pd.Timestamp(customers["as_of"].max()).date()

    with open_warehouse(warehouse, write=True) as con:
        write_segmentation(
            con, segmentation_write(outcome, run_id, as_of_customers, model_path, sha256)
        )
        keep = recent_model_names(con, config.keep_models)
    return finish(outcome, directory, model_path, keep, config.keep_models, as_of_customers, log)


def segmentation_write(
    outcome: Segmentation, run_id: str, as_of: date, model_path: str, sha256: str | None
) -> SegmentationWrite:
    """What a run writes to ``ml``, from its fit's (or scoring's) outcome; shared by the
    DuckDB/PostgreSQL step and the Spark one."""
    return SegmentationWrite(
        run_id=run_id,
        as_of=as_of,
        model=outcome.model_name,
        model_path=model_path,
        model_sha256=sha256,
        refit=outcome.refitted,
        labels=outcome.labels,
        candidates=outcome.candidates,
        embedding=outcome.embedding,
        centroids=outcome.centroids,
        config=outcome.config.to_dict(),
        chosen=outcome.chosen,
        stability_ari=outcome.stability_ari,
    )


def fit_or_score(
    customers: pd.DataFrame,
    clustering: ClusteringConfig,
    previous: pd.DataFrame | None,
    saved_run: RecordedRun | None,
    refit: bool,
    directory: Path,
    run_id: str,
    log: logging.Logger | Any,
) -> tuple[Segmentation, str, str | None]:
    """Score with the last run's saved model (``refit`` off and one recorded), else fit
    and save a new one: (the outcome, the model's file name, its SHA-256). Shared by
    the DuckDB/PostgreSQL step and the Spark one (which passes its sample)."""
    from models_py.clustering import segment

    saved, model_path, sha256 = None, "", None
    if saved_run is not None and saved_run.model_path:
        log.info(f"refit: false, scoring with the model of run {saved_run.run_id}")
        model_path, sha256 = saved_run.model_path, saved_run.model_sha256
        saved = load_model(directory, model_path, sha256, saved_run.run_id)
    elif not refit:
        log.warning("refit: false, but no run has recorded a model yet: fitting one")
    outcome = segment(customers, clustering, previous_centroids=previous, saved=saved)
    if outcome.refitted:
        stored = save_model(outcome.segmenter, directory, run_id)
        model_path, sha256 = stored.name, stored.sha256
        log.info(f"fitted {outcome.model_name} in {outcome.timings.get('total', 0):.1f} s")
    return outcome, model_path, sha256


def finish(
    outcome: Segmentation,
    directory: Path,
    model_path: str,
    keep: list[str],
    keep_models: int,
    as_of: date,
    log: logging.Logger | Any,
) -> dict[str, Any]:
    """The plot saved beside the model, models beyond the last ``keep_models`` runs'
    removed; the Dagster metadata."""
    from models_py.clustering import embedding_png

    plot = embedding_png(outcome.embedding, outcome.labels)
    plot_path = save_plot(directory, model_path, plot)
    for removed in prune_models(directory, keep):
        log.info(f"removed {removed} (not among the last {keep_models} runs' models)")
    return _metadata(outcome, as_of, plot, plot_path)


def _as_date(value: date | str | None) -> date | None:
    if value is None or isinstance(value, date):
        return value
    return date.fromisoformat(value) if value.strip() else None


def _customers(con: duckdb.DuckDBPyConnection) -> pd.DataFrame | bool:
    """``marts.dim_customers``, or whether it exists when it has no customer (the
    caller then says why, reading ``raw``)."""
    if _exists(con, "marts", "dim_customers"):
        customers = read_customers(con)
        return customers if not customers.empty else True
    return False


def _exists(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> bool:
    return bool(
        con.execute(
            """
            select count(*) from information_schema.tables
            where table_catalog = current_database() and table_schema = ? and table_name = ?
            """,
            [schema, table],
        ).fetchone()[0]
    )


def _why_no_customers(con: duckdb.DuckDBPyConnection, as_of: date | None, built: bool) -> str:
    """One line: nothing loaded, dbt not built, as_of not after the first invoice, or
    (otherwise) every line excluded; the dates come from the warehouse."""
    rows, first = 0, None
    if _exists(con, "raw", "transactions"):
        rows, first = con.execute(
            "select count(*), cast(min(InvoiceDate) as date) from raw.transactions"
        ).fetchone()
    return why_no_customers(rows, first, as_of, built)


def why_no_customers(rows: int, first: date | None, as_of: date | None, built: bool) -> str:
    """Why there is no customer, from the lines loaded and the first invoice's date."""
    if not rows:
        return "no transactions loaded: run `insiders load PATH` first"
    if not built:
        return "marts.dim_customers does not exist: build the dbt project first (`insiders build`)"
    if as_of is not None and as_of < first:
        return (
            f"as_of {as_of} is before the first invoice ({first}): "
            "no customer had bought anything by then"
        )
    if as_of is not None and as_of == first:
        return (
            f"as_of {as_of} is the day of the first invoice: customer features count only "
            "the days before it, and no customer had bought anything by then"
        )
    return (
        f"marts.dim_customers is empty although raw.transactions holds {rows} rows: no line "
        "of an identified customer is kept before as_of"
        + (f" {as_of}" if as_of else "")
        + " (check the exclusion rules and var guest_policy, then rebuild dbt)"
    )


def _metadata(outcome: Segmentation, as_of: date, plot: bytes, plot_path: Path) -> dict[str, Any]:
    """What Dagster shows: the chosen model, its scores, the clusters and the picture."""
    chosen, profile, labels = outcome.chosen, outcome.profile, outcome.labels
    insiders = profile[profile["is_insider"]].iloc[0]
    table = profile[
        [
            "cluster_id",
            "cluster_name",
            "customers",
            "share_of_customers",
            "share_of_revenue",
            "mean_recency_days",
            "mean_frequency",
            "mean_monetary",
        ]
    ]
    metadata: dict[str, Any] = {
        "as_of": str(as_of),
        "model": outcome.model_name,
        "refit": outcome.refitted,
        "space": chosen.get("space"),
        "algorithm": chosen.get("algorithm"),
        "k": int(chosen.get("k", 0)),
        "silhouette": _float(chosen.get("silhouette")),
        "silhouette_features": _float(chosen.get("silhouette_features")),
        "stability_ari": _float(outcome.stability_ari),
        "customers": len(labels),
        "insiders": int(labels["is_insider"].sum()),
        "insiders_share_of_customers": float(insiders["share_of_customers"]),
        "insiders_share_of_revenue": float(insiders["share_of_revenue"]),
        "clusters": MetadataValue.md(table.to_markdown(index=False, floatfmt=".3f")),
        "embedding_plot": MetadataValue.md(
            f"![embedding](data:image/png;base64,{base64.b64encode(plot).decode()})"
        ),
        "embedding_plot_path": MetadataValue.path(str(plot_path)),
        "seconds": MetadataValue.json({k: round(v, 2) for k, v in outcome.timings.items()}),
    }
    return {k: v for k, v in metadata.items() if v is not None}


def _float(value: Any) -> float | None:
    return None if value is None else float(value)
