"""The whole Insiders graph in Dagster: load files, dbt, clustering, write-back.

``dagster dev -m orchestration.definitions`` shows it; ``insiders run`` executes the
same job headless. Assets stay thin: they read through resources, call
``models_py``, write, and report metadata.

DuckDB allows one writer process: the job uses the in-process executor (one step at a
time), every Python step opens the warehouse only while it writes, and dbt runs in this
same process (``orchestration.dbt_runner``) while no Python step holds a connection,
closing its own when it is done. The libraries of a step (scikit-learn, pandas, pymc,
Jinja2) are imported by that step, not here.
"""

import functools
import hashlib
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path

from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetSelection,
    AssetSpec,
    Config,
    DefaultSensorStatus,
    Definitions,
    Failure,
    LoggerDefinition,
    MaterializeResult,
    MetadataValue,
    RunRequest,
    ScheduleDefinition,
    SensorEvaluationContext,
    SkipReason,
    define_asset_job,
    in_process_executor,
    multi_asset,
    sensor,
)
from dagster_dbt import DagsterDbtTranslator, dbt_assets, get_asset_key_for_model
from dagster_dbt.asset_utils import (
    get_manifest_and_translator_from_dbt_assets,
    get_subset_selection_for_context,
)
from dagster_dbt.core.dbt_cli_event import DbtCoreCliEventMessage
from pydantic import Field

from models_py.mapping import MappingError, resolve_mapping
from models_py.model_store import ModelStoreError, models_dir
from models_py.published import REPORT_TABLES
from models_py.settings import RANDOM_GROUPS_CONFIDENCE
from orchestration.bi_snapshot import SNAPSHOT_TABLES, publish_snapshot
from orchestration.dbt_runner import asset_graph_manifest, dbt_target_path
from orchestration.dbt_runner import invoke as invoke_dbt
from orchestration.refit_policy import (
    AS_OF_READ,
    clustering_refitted,
    customers_as_of,
    monthly_refit,
)
from orchestration.resources import BiSnapshotResource, BuildSettings, WarehouseResource
from orchestration.run_control import fail_dead_runs
from orchestration.segmentation_asset import (
    NoCustomersError,
    SegmentationConfig,
    run_segmentation,
)
from orchestration.warehouse import SOURCE_ENV, WarehouseError, discover_files, load_files

JOB_NAME = "insiders_job"


class InsidersDbtTranslator(DagsterDbtTranslator):
    """Asset keys are the warehouse's own names: ``marts/dim_customers``, ``raw/...``."""

    def get_asset_key(self, dbt_resource_props):  # type: ignore[override]
        if dbt_resource_props["resource_type"] == "source":
            return super().get_asset_key(dbt_resource_props)
        return AssetKey([dbt_resource_props["schema"], dbt_resource_props["name"]])

    def get_group_name(self, dbt_resource_props):  # type: ignore[override]
        return dbt_resource_props.get("schema") or "dbt"

    def get_asset_spec(self, manifest, unique_id, project):  # type: ignore[override]
        """dbt's lineage, plus two ordering-only dependencies (see RUN_AFTER)."""
        spec = super().get_asset_spec(manifest, unique_id, project)
        props = self.get_resource_props(manifest, unique_id)
        after = RUN_AFTER.get(props["resource_type"], RUN_AFTER.get(props["name"], ()))
        return spec.merge_attributes(deps=list(after)) if after else spec


# Dagster runs the dbt op as one step per stretch of dbt assets between Python assets,
# and each step is a dbt invocation (0.6 s and more each). Two stretches need not be
# their own: the seeds (no upstream, so a step before the loader) go with the staging
# models after the loader, and the staging view over the clustering's labels goes with
# the other ml views after the analytics. Two dbt steps a run instead of four.
RUN_AFTER: dict[str, tuple[AssetKey, ...]] = {
    "seed": (AssetKey(["raw", "transactions"]),),
    "stg_ml__customer_segments": (AssetKey(["ml", "definition_evaluation"]),),
}


# --- ingestion ----------------------------------------------------------------------

RAW_TABLES = {
    "transactions": "Parsed invoice lines, one row per source line.",
    "quarantined_rows": "Records that could not be parsed, with file, line and reason.",
    "loaded_files": "One row per loaded file: hash, layout, reconciling line counts.",
}


class LoadConfig(Config):
    """Where the order lines are, and how to read them."""

    source: str = Field(
        default="",
        description="A file or directory of CSV (.csv.gz) or Parquet files, or "
        "table:SCHEMA.NAME (default $INSIDERS_SOURCE)",
    )
    mapping: str = Field(
        default="",
        description="A YAML mapping file or a preset (uci, kaggle, daily, shopify, "
        "woocommerce); default $INSIDERS_MAPPING, else the preset each file's header fits",
    )


def one_line_errors(step: Callable[..., Iterator]) -> Callable[..., Iterator]:
    """A warehouse the step cannot use (PostgreSQL unreachable, a wrong password, missing
    privileges, a path that is no DuckDB database) fails the step with its one line,
    as a Dagster ``Failure``, not with a stack trace: it is the user's to fix."""

    @functools.wraps(step)
    def wrapped(*args: object, **kwargs: object) -> Iterator:
        try:
            yield from step(*args, **kwargs)
        except WarehouseError as error:
            raise Failure(description=str(error)) from None

    return wrapped


@multi_asset(
    name="raw_transactions",
    specs=[
        AssetSpec(AssetKey(["raw", table]), description=text, group_name="raw")
        for table, text in RAW_TABLES.items()
    ],
)
@one_line_errors
def raw_transactions(
    context: AssetExecutionContext, config: LoadConfig, warehouse: WarehouseResource
):
    """Load new or changed transaction files into ``raw`` (idempotent per file content)."""
    source = config.source or os.environ.get(SOURCE_ENV, "")
    if not source:
        context.log.warning(f"no source (op config 'source' or ${SOURCE_ENV}): nothing to load")
    try:
        mapping = resolve_mapping(config.mapping)
    except MappingError as error:  # a wrong mapping loads nothing
        raise Failure(description=str(error)) from None
    report = load_files(warehouse.file, [source] if source else [], mapping)
    for error in report.failed:
        context.log.error(str(error))
    note = report.synthetic_note()
    if note:
        context.log.warning(note)
    for path, why in report.skipped:
        context.log.info(f"skipped {path}: {why}")
    context.log.info(report.summary())
    if report.failed:
        raise Failure(
            description=f"{len(report.failed)} file(s) failed to load; the others were loaded",
            metadata={"errors": "\n".join(str(e) for e in report.failed)},
        )
    metadata = {
        "source": source,
        "mapping": mapping.source if mapping else "preset per file header",
        "files_loaded": len(report.loaded),
        "files_skipped": len(report.skipped),
        "rows_loaded": report.rows_loaded,
        "rows_quarantined": report.rows_quarantined,
    }
    for table in RAW_TABLES:
        yield MaterializeResult(asset_key=AssetKey(["raw", table]), metadata=metadata)


# --- dbt -----------------------------------------------------------------------------


@dbt_assets(
    manifest=asset_graph_manifest(),
    dagster_dbt_translator=InsidersDbtTranslator(),
)
@one_line_errors
def insiders_dbt_assets(
    context: AssetExecutionContext,
    warehouse: WarehouseResource,
    settings: BuildSettings,
):
    """``dbt build`` of the selected models, seeds and tests (tests become asset checks),
    in this process with a manifest parsed once per run (``orchestration.dbt_runner``).

    Dagster splits this op into several steps around the clustering (dbt -> Python ->
    dbt). "buildable" indirect selection runs each test in the step where all its
    parents exist, not in the first step that selects one of them.
    """
    # Dagster may run a dbt step (seeds) before the loader: make sure the file, its
    # folder and the Python-owned source tables exist before dbt opens it.
    warehouse.prepare()
    manifest, translator, _ = get_manifest_and_translator_from_dbt_assets([context.assets_def])
    selection, indirect = get_subset_selection_for_context(
        context=context,
        manifest=manifest,
        select="fqn:*",
        exclude=None,
        selector=None,
        dagster_dbt_translator=translator,
        current_dbt_indirect_selection_env="buildable",
    )
    # One target folder per warehouse, reused by every invocation, beside the
    # warehouse rather than in the source tree; dbt's logs go there too.
    target = dbt_target_path(warehouse.anchor)
    outcome = invoke_dbt(
        "build",
        warehouse.file,
        settings.dbt_vars(),
        [*selection, "--indirect-selection", indirect or "buildable", *settings.dbt_flags()],
        target=target,
    )
    context.log.info(
        f"dbt: {outcome.seconds:.1f} s in all, {outcome.parse_seconds:.1f} s of it reading "
        f"the project, {outcome.elapsed:.1f} s running the nodes"
    )
    for raw_event in outcome.events:
        yield from DbtCoreCliEventMessage(
            raw_event=raw_event, event_history_metadata={}
        ).to_default_asset_events(
            manifest=manifest, dagster_dbt_translator=translator, context=context
        )
    if not outcome.success:
        raise Failure(
            description="dbt build failed: "
            + "; ".join(outcome.failures[:3])
            + (f" (and {len(outcome.failures) - 3} more)" if len(outcome.failures) > 3 else ""),
            metadata={"failures": "\n".join(outcome.failures), "dbt_log": str(target)},
        )


DIM_CUSTOMERS = get_asset_key_for_model([insiders_dbt_assets], "dim_customers")

# --- clustering ----------------------------------------------------------------------


class RunSegmentationConfig(SegmentationConfig):
    """The clustering's settings; ``refit``: true (the default here) fits a new model,
    false scores with the last saved one, null refits monthly
    (``orchestration.refit_policy``: what ``insiders run`` and the file sensor use)."""

    refit: bool | None = True  # type: ignore[assignment]


ML_TABLES = {
    "customer_segments": "One row per customer of marts.dim_customers: cluster and Insider flag.",
    "model_selection": "One row per candidate (space x algorithm x K) with its scores.",
    "customer_embedding": "2-D coordinates per customer, for plots.",
}


@multi_asset(
    name="customer_segmentation",
    specs=[
        AssetSpec(AssetKey(["ml", table]), description=text, group_name="ml", deps=[DIM_CUSTOMERS])
        for table, text in ML_TABLES.items()
    ],
)
@one_line_errors
def customer_segmentation(
    context: AssetExecutionContext,
    config: RunSegmentationConfig,
    warehouse: WarehouseResource,
    settings: BuildSettings,
):
    """Cluster the customers of ``marts.dim_customers`` (or score them with the saved
    model) and write the labels to ``ml``."""
    refit = config.refit
    if refit is None:  # monthly: refit in a new month, else score with the saved model
        with warehouse.session(reads=[AS_OF_READ]) as con:
            decision = monthly_refit(con, customers_as_of(con))
        context.log.info(f"refit: {decision.refit} ({decision.reason})")
        refit = decision.refit
    try:
        metadata = run_segmentation(
            warehouse=warehouse.file,
            config=SegmentationConfig(**{**config.model_dump(), "refit": refit}),
            run_id=context.run.run_id,
            log=context.log,
            as_of=settings.dbt_vars().get("as_of"),
            # The real warehouse's folder: during a run, warehouse.file is a work copy.
            models=models_dir(warehouse.anchor),
        )
    except (NoCustomersError, ModelStoreError) as error:
        raise Failure(description=str(error)) from None
    for table in ML_TABLES:
        yield MaterializeResult(asset_key=AssetKey(["ml", table]), metadata=metadata)


# --- downstream of the clustering: membership over time, backtest, forecast ----------

CUSTOMER_SEGMENTS = AssetKey(["ml", "customer_segments"])


def _models(*names: str) -> list[AssetKey]:
    return [get_asset_key_for_model([insiders_dbt_assets], name) for name in names]


ANALYTICS_TABLES = {
    "insiders_definitions": "The candidate definitions of the Insiders, in words.",
    "definition_members": "Every definition's members at every monthly re-evaluation date, "
    "chosen with the data before the date.",
    "definition_evaluation": "At every rolling-origin evaluation origin, each definition's "
    "(and random groups') share of the horizon's net revenue.",
    "group_forecasts": "Each definition's group's revenue over the horizon: last-horizon "
    "level, trend and seasonal factors, an interval from earlier origins' errors, and the "
    "actual once the horizon is over.",
    "customer_forecast": "Per customer at the as-of: probability alive, expected purchases, "
    "spend and revenue over the horizon (BG/NBD + Gamma-Gamma, pymc-marketing).",
    "eligibility_rules": "Per definition, readable entry rules (depth-3 tree on the "
    "features) with their precision and recall.",
    "group_evidence": "Per definition, its members against the rest: bootstrap CI and "
    "Mann-Whitney per metric.",
}


class AnalyticsConfig(Config):
    """Random groups drawn per origin for the baseline, the central share of their
    draws reported, and the seed of every draw and fit."""

    random_groups: int = 1000
    confidence: float = RANDOM_GROUPS_CONFIDENCE
    seed: int = 42
    # true: re-evaluate every definition at every origin and refit the forecasts; false:
    # keep the last evaluation and score the current customers with its saved fits;
    # null: refit when this run's clustering refitted (monthly, see refit_policy).
    refit: bool | None = True


@multi_asset(
    name="insiders_analytics",
    specs=[
        AssetSpec(
            AssetKey(["ml", table]),
            description=text,
            group_name="ml",
            deps=[
                CUSTOMER_SEGMENTS,
                *_models(
                    "int_customer_features__evaluations",
                    "int_customer_scores__evaluations",
                    "int_evaluation_dates",
                    "int_customer_purchase_histories",
                ),
            ],
        )
        for table, text in ANALYTICS_TABLES.items()
    ],
)
@one_line_errors
def insiders_analytics(
    context: AssetExecutionContext, config: AnalyticsConfig, warehouse: WarehouseResource
):
    """The rolling-origin evaluation: every candidate definition of the Insiders at every
    monthly date, scored on the revenue after each origin, and the groups' forecasts.
    dbt then chooses the definition (``insiders.definition_choice``) and builds the marts.
    """
    refit = config.refit
    if refit is None:
        with warehouse.session(reads=[AS_OF_READ]) as con:
            refit = clustering_refitted(con, context.run.run_id)
            if refit is None:  # the clustering did not run in this run
                refit = monthly_refit(con, customers_as_of(con)).refit
    from orchestration.insiders_steps import run_rolling_evaluation  # pandas, pymc: here

    metadata = run_rolling_evaluation(
        warehouse.file,
        config.random_groups,
        config.confidence,
        config.seed,
        context.log,
        refit=refit,
    )
    for key in ("shares_of_horizon_revenue", "current_forecasts"):
        if key in metadata:
            metadata[key] = MetadataValue.md(metadata[key])
    for table in ANALYTICS_TABLES:
        yield MaterializeResult(asset_key=AssetKey(["ml", table]), metadata=metadata)


# --- the report ---------------------------------------------------------------------


@multi_asset(
    name="insiders_report",
    specs=[
        AssetSpec(
            AssetKey(["insiders", "report"]),
            description="The nine questions answered in plain words, with figures and charts "
            "(HTML and Markdown beside the warehouse, in reports/).",
            group_name="insiders",
            deps=[
                *_models(*(t for _, t in REPORT_TABLES if t != "customer_embedding")),
                AssetKey(["ml", "customer_embedding"]),
            ],
        )
    ],
)
@one_line_errors
def insiders_report(context: AssetExecutionContext, warehouse: WarehouseResource):
    """Write the report and show it in the asset's metadata."""
    from orchestration.report_asset import write_report

    paths, report = write_report(warehouse.file, warehouse.anchor.parent / "reports")
    context.log.info(f"report written to {paths['html']}")
    yield MaterializeResult(
        asset_key=AssetKey(["insiders", "report"]),
        metadata={
            "report": MetadataValue.md(report.markdown_inline),
            "html": MetadataValue.path(str(paths["html"])),
            "markdown": MetadataValue.path(str(paths["markdown"])),
            "questions_answered": len(report.answers),
        },
    )


# --- the BI snapshot ----------------------------------------------------------------


def _snapshot_inputs() -> list[AssetKey]:
    """Asset keys of the published tables (dbt models by name, ml tables as they are),
    and the report: the snapshot is the run's last step, published only when all the
    rest succeeded."""
    return [
        *(
            AssetKey(["ml", table]) if schema == "ml" else _models(table)[0]
            for schema, table in SNAPSHOT_TABLES
        ),
        AssetKey(["insiders", "report"]),
    ]


@multi_asset(
    name="bi_snapshot",
    specs=[
        AssetSpec(
            AssetKey(["bi", "snapshot"]),
            description="The BI-facing tables (insiders.*, marts.dim_customers, "
            "ml.customer_embedding, ml.model_selection) in a read-only DuckDB file and "
            "Parquet files, replaced atomically: what the dashboard and BI tools read, "
            "never the warehouse the pipeline writes.",
            group_name="bi",
            deps=_snapshot_inputs(),
        )
    ],
)
@one_line_errors
def bi_snapshot(
    context: AssetExecutionContext, warehouse: WarehouseResource, bi: BiSnapshotResource
):
    """Publish the snapshot of this run (only reached when everything upstream succeeded)."""
    published = publish_snapshot(warehouse.file, bi.resolve(warehouse.anchor), context.run.run_id)
    context.log.info(f"BI snapshot {published.snapshot_id} published to {published.path}")
    yield MaterializeResult(
        asset_key=AssetKey(["bi", "snapshot"]),
        metadata={
            "snapshot_id": published.snapshot_id,
            "duckdb": MetadataValue.path(str(published.path)),
            "parquet": MetadataValue.path(str(published.parquet_dir)),
            "as_of": published.as_of or "",
            "rows": MetadataValue.json(published.rows),
        },
    )


# --- jobs, schedule, sensor ----------------------------------------------------------

insiders_job = define_asset_job(
    JOB_NAME,
    selection=AssetSelection.all(),
    description="Load new files, build the dbt project, cluster the customers, answer the "
    "nine questions, write the report and publish the BI snapshot.",
)

monthly_refresh = ScheduleDefinition(
    name="monthly_refresh",
    job=insiders_job,
    cron_schedule="0 6 1 * *",
    description="Re-evaluate the Insiders on the first of every month: refit the "
    "clustering, re-evaluate every definition and refit the forecasts.",
    run_config={
        "ops": {
            "customer_segmentation": {"config": {"refit": True}},
            "insiders_analytics": {"config": {"refit": True}},
        }
    },
)

# A daily run: score with the saved models unless the month changed (refit_policy).
MONTHLY_REFIT_CONFIG = {
    "customer_segmentation": {"config": {"refit": None}},
    "insiders_analytics": {"config": {"refit": None}},
}


def source_fingerprint(source: str) -> str:
    """Hash of the source's file listing (path, size, mtime): changes when files do."""
    listing = [
        (str(p), p.stat().st_size, p.stat().st_mtime_ns)
        for p in discover_files([source])
        if isinstance(p, Path)
    ]
    return hashlib.sha256(json.dumps(listing).encode()).hexdigest()


@sensor(
    job=insiders_job,
    minimum_interval_seconds=60,
    default_status=DefaultSensorStatus.STOPPED,
    description=f"Start a run when files appear or change under ${SOURCE_ENV}.",
)
def new_transaction_files(context: SensorEvaluationContext):
    source = os.environ.get(SOURCE_ENV, "")
    if not source or not Path(source).exists():
        return SkipReason(f"${SOURCE_ENV} is not set or does not exist")
    fingerprint = source_fingerprint(source)
    if fingerprint == context.cursor:
        return SkipReason("no new or changed files")
    context.update_cursor(fingerprint)
    return RunRequest(run_key=fingerprint, run_config={"ops": MONTHLY_REFIT_CONFIG})


@sensor(
    minimum_interval_seconds=60,
    default_status=DefaultSensorStatus.RUNNING,
    description="Mark failed the runs whose process died (kill -9, a lost machine): "
    "they stay STARTED in Dagster's storage and would hold the one-run queue for ever.",
)
def dead_runs(context: SensorEvaluationContext):
    failed = fail_dead_runs(context.instance)
    return SkipReason(
        f"marked failed: {', '.join(failed)}" if failed else "no dead run (nothing to do)"
    )


def build_definitions(
    warehouse: str | None = None,
    loggers: dict[str, LoggerDefinition] | None = None,
    target: str | None = None,
) -> Definitions:
    """The one Definitions object; ``warehouse`` overrides $INSIDERS_WAREHOUSE,
    ``target`` $INSIDERS_TARGET (duckdb or postgres), and ``loggers`` replace Dagster's
    console logger (the CLI's progress lines)."""
    from models_py.locations import resolve_warehouse
    from orchestration.targets import resolve_target

    return Definitions(
        assets=[
            raw_transactions,
            insiders_dbt_assets,
            customer_segmentation,
            insiders_analytics,
            insiders_report,
            bi_snapshot,
        ],
        jobs=[insiders_job],
        schedules=[monthly_refresh],
        sensors=[new_transaction_files, dead_runs],
        resources={
            "warehouse": WarehouseResource(
                path=str(resolve_warehouse(warehouse)), target=resolve_target(target)
            ),
            "settings": BuildSettings(),
            "bi": BiSnapshotResource(),
        },
        executor=in_process_executor,
        loggers=loggers,
    )


defs = build_definitions()
