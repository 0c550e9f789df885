"""The ``insiders`` command line: load files, build the dbt project, make demo data, run
the whole graph, serve the dashboard."""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

from models_py.locations import WAREHOUSE_ENV, resolve_warehouse
from models_py.mapping import Mapping, resolve_mapping
from orchestration.postgres import PgWarehouse
from orchestration.spark import SparkWarehouse
from orchestration.targets import POSTGRES, SPARK, TARGET_ENV, TARGETS, resolve_target
from orchestration.warehouse import SOURCE_ENV, WarehouseError, check_warehouse, load_files

if TYPE_CHECKING:
    from dagster import AssetKey

    from orchestration.sessions import Warehouse


def _as_of(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {value!r}") from exc


def _definitions() -> dict[str, str]:
    from models_py.insiders_definitions import DEFINITIONS

    return DEFINITIONS


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--warehouse",
        default=argparse.SUPPRESS,
        help=(
            f"DuckDB warehouse file (default: ${WAREHOUSE_ENV}, "
            "else warehouse/insiders_warehouse.duckdb); with --target postgres, the "
            "local files (models, reports, BI snapshot) go in postgres/<database>/ beside it"
        ),
    )
    common.add_argument(
        "--target",
        choices=TARGETS,
        default=argparse.SUPPRESS,
        help=f"where the warehouse lives (default: ${TARGET_ENV}, else duckdb); postgres "
        "connects with libpq's PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE",
    )
    parser = argparse.ArgumentParser(
        prog="insiders",
        description="Find an online store's most valuable customers (the Insiders).",
        parents=[common],
    )
    sub = parser.add_subparsers(dest="command", required=True)
    writer = argparse.ArgumentParser(add_help=False)
    writer.add_argument(
        "--no-wait",
        dest="wait",
        action="store_false",
        help="if another run or load is writing the warehouse, exit at once naming it "
        "(default: wait for it to finish)",
    )
    writer.add_argument(
        "--verbose",
        action="store_true",
        help="print Dagster's event log and dbt's log too (default: one line per step)",
    )

    load = sub.add_parser(
        "load", parents=[common, writer], help="load transaction files or directories into raw"
    )
    load.add_argument(
        "paths",
        nargs="+",
        metavar="PATH",
        help="CSV (or .csv.gz) or Parquet files, directories of them, or table:SCHEMA.NAME "
        "(a table or view of the warehouse)",
    )
    load.add_argument("--mapping", help=_MAPPING_HELP)

    build = sub.add_parser(
        "build",
        parents=[common, writer],
        help="dbt build (models, seeds, tests) through the Dagster job, without the "
        "Python steps: their labels must still match the customers",
    )
    build.add_argument("--as-of", type=_as_of, help="compute customer features as of this date")
    build.add_argument("--select", help="dbt node selection, passed through (e.g. +dim_customers)")

    demo = sub.add_parser(
        "demo-data", parents=[common], help="write a synthetic data set (Kaggle layout)"
    )
    demo.add_argument("directory", type=Path, metavar="DIR")
    demo.add_argument("--customers", type=int, default=1000)
    demo.add_argument("--seed", type=int, default=42)
    demo.add_argument(
        "--layout", choices=("kaggle", "uci", "daily"), default="kaggle", help="file layout"
    )

    run = sub.add_parser(
        "run", parents=[common, writer], help="the main job: load the source, then build everything"
    )
    run.add_argument(
        "--source",
        type=Path,
        help="file or directory of order lines (CSV, .csv.gz, Parquet), or table:SCHEMA.NAME",
    )
    run.add_argument("--mapping", help=_MAPPING_HELP)
    run.add_argument("--as-of", type=_as_of)
    run.add_argument(
        "--definition",
        choices=tuple(_definitions()),
        help="force this definition of the Insiders (default: the one with the best "
        "rolling-origin evidence)",
    )
    refit = run.add_mutually_exclusive_group()
    refit.add_argument(
        "--refit",
        dest="refit",
        action="store_const",
        const=True,
        help="refit the clustering and re-evaluate the definitions now (default: monthly, "
        "when the data reach a new month; other runs score with the saved models)",
    )
    refit.add_argument(
        "--no-refit",
        dest="refit",
        action="store_const",
        const=False,
        help="score with the saved models even in a new month",
    )
    run.add_argument(
        "--full-refresh",
        action="store_true",
        help="rebuild dbt's incremental models from scratch (after editing their SQL)",
    )

    reader = sub.add_parser(
        "reader-role",
        parents=[common],
        help="PostgreSQL: create or update the read-only role BI tools use (marts and "
        "insiders only); it can log in with $INSIDERS_READER_PASSWORD when that is set",
    )
    reader.add_argument(
        "--role", default="insiders_reader", help="role name (default insiders_reader)"
    )

    dashboard = sub.add_parser(
        "dashboard",
        parents=[common],
        help="serve the marketing dashboard (Streamlit) over the published BI snapshot",
    )
    dashboard.add_argument("--port", type=int, default=8501, help="port (default 8501)")
    dashboard.add_argument(
        "--address",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1; 0.0.0.0 to share it on the network)",
    )
    dashboard.add_argument(
        "--snapshot",
        type=Path,
        help="BI snapshot file (default: $INSIDERS_BI_SNAPSHOT, else "
        "bi/insiders_bi.duckdb beside the warehouse, or in $INSIDERS_BI_DIR)",
    )
    return parser


_MAPPING_HELP = (
    "how the files' columns map onto order lines: a YAML mapping file or a preset "
    "(uci, kaggle, daily, shopify, woocommerce); default $INSIDERS_MAPPING, else the "
    "preset each file's header fits"
)


def _load(
    warehouse: Warehouse, paths: list[str], wait: bool = True, mapping: Mapping | None = None
) -> int:
    """Load, then print one line per file (loaded, skipped with why, failed with why)
    and the counts; rc 1 if a file failed, 2 if the warehouse is no warehouse, 3 if
    another writer holds it and ``wait`` is off.

    Like a run, a load holds the warehouse lock and writes a work copy that replaces
    the warehouse when it is done (``orchestration.run_control``): a reader holding the
    file does not make it fail, and a killed load changes nothing."""
    from orchestration import run_control
    from orchestration.warehouse import check_warehouse

    notify = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    try:
        if isinstance(warehouse, PgWarehouse):  # one transaction: no work copy needed
            from orchestration.postgres import PgWriterLock

            lock = PgWriterLock("insiders load")
            lock.acquire(wait=wait, notify=notify)
            try:
                report = load_files(warehouse, paths, mapping)
            finally:
                lock.release()
        elif isinstance(warehouse, SparkWarehouse):  # the ledger is the commit point
            from orchestration.sessions import lock_anchor

            spark_lock = run_control.WarehouseLock(lock_anchor(warehouse), "insiders load")
            spark_lock.acquire(wait=wait, notify=notify)
            try:
                report = load_files(warehouse, paths, mapping)
            finally:
                spark_lock.release()
        else:
            check_warehouse(warehouse)
            with run_control.writing(warehouse, "insiders load", wait=wait, notify=notify) as work:
                report = load_files(work, paths, mapping)
    except WarehouseError as exc:
        print(f"insiders: error: {exc}", file=sys.stderr)
        return 2
    except run_control.WarehouseBusy as exc:
        print(f"insiders: error: {exc}", file=sys.stderr)
        return 3
    note = report.synthetic_note()
    if note:
        print(note)
    for raw_file in report.loaded:
        synthetic = ", SYNTHETIC demo data" if raw_file.synthetic else ""
        print(f"loaded  {raw_file.path} ({raw_file.layout}, {raw_file.encoding}{synthetic})")
    for path, why in report.skipped:
        print(f"skipped {path}: {why}")
    for error in report.failed:
        print(f"insiders: error: {error}", file=sys.stderr)
    print(report.summary())
    return 1 if report.failed else 0


def _build(
    warehouse: Warehouse,
    as_of: date | None,
    select: str | None = None,
    wait: bool = True,
    verbose: bool = False,
) -> int:
    """``dbt build`` of the project (or of ``--select``), run by Dagster like every run:
    the same dbt step, lock and all-or-nothing publication as ``insiders run``."""
    from dagster_dbt import build_dbt_asset_selection

    from orchestration.definitions import build_definitions, insiders_dbt_assets

    defs = build_definitions(_path(warehouse), target=_target(warehouse))
    selection = build_dbt_asset_selection([insiders_dbt_assets], dbt_select=select or "fqn:*")
    keys = sorted(selection.resolve(defs.resolve_asset_graph()))
    if not keys:
        print(f"insiders: error: --select {select!r} selects no dbt model", file=sys.stderr)
        return 2
    return run_job(
        warehouse,
        None,
        as_of,
        asset_selection=keys,
        wait=wait,
        verbose=verbose,
        unit_tests=True,
    )


def _reader_role(warehouse: Warehouse, role: str) -> int:
    """``insiders reader-role``: the read-only role of BI tools (``orchestration.pg_roles``)."""
    from orchestration.pg_roles import READER_PASSWORD_ENV, grant_reader
    from orchestration.postgres import errors_in_one_line

    if not isinstance(warehouse, PgWarehouse):
        print(
            "insiders: error: reader-role is for --target postgres; DuckDB's readers "
            "open the BI snapshot, read-only",
            file=sys.stderr,
        )
        return 2
    try:
        with warehouse.connect() as con, errors_in_one_line():
            lines = grant_reader(con, role, os.environ.get(READER_PASSWORD_ENV) or None)
    except ValueError as exc:
        print(f"insiders: error: {exc}", file=sys.stderr)
        return 2
    for line in lines:
        print(line)
    return 0


def _demo(directory: Path, customers: int, seed: int, layout: str) -> int:
    from models_py.demo_data import write_demo_data

    written = write_demo_data(directory, customers=customers, seed=seed, layout=layout)
    print(
        f"wrote {written.path}: {written.lines} lines, {written.customers} customers, "
        f"{written.bad_lines} deliberately bad lines (synthetic data, seed {seed})"
    )
    return 0


def _run(
    warehouse: Warehouse,
    source: Path | None,
    as_of: date | None,
    definition: str | None = None,
    wait: bool = True,
    verbose: bool = False,
    refit: bool | None = None,
    full_refresh: bool = False,
    mapping: str | None = None,
) -> int:
    """The main job, executed by Dagster: the same graph `dagster dev` shows.

    With no data anywhere (no ``--source``, no ``$INSIDERS_SOURCE``, nothing loaded),
    it runs on synthetic demo data, in a warehouse of its own (``demo/`` beside the
    real one), so demo rows can never mix with the store's.
    """
    if source is None and not os.environ.get(SOURCE_ENV) and _nothing_loaded(warehouse):
        if isinstance(warehouse, PgWarehouse | SparkWarehouse):
            print(
                f"insiders: error: nothing is loaded in {warehouse.describe()} and no "
                "--source given: give --source PATH (the synthetic demo runs on DuckDB)",
                file=sys.stderr,
            )
            return 2
        demo_warehouse = warehouse.parent / "demo" / warehouse.name
        source = demo_warehouse.parent / "demo-data"
        print(
            "#" * 72
            + "\n# No data loaded yet and no --source given: using SYNTHETIC demo data"
            + f"\n# written to {source}, in a separate warehouse {demo_warehouse}."
            + "\n# Figures below are NOT real. Load your own: insiders run --source PATH"
            + f"\n# Dashboard of the demo: insiders dashboard --warehouse {demo_warehouse}\n"
            + "#" * 72
        )
        _demo(source, customers=1000, seed=42, layout="kaggle")
        warehouse = demo_warehouse
        mapping = "kaggle"  # the demo's own layout, whatever $INSIDERS_MAPPING says
    return run_job(
        warehouse,
        source,
        as_of,
        definition,
        wait=wait,
        verbose=verbose,
        refit=refit,
        full_refresh=full_refresh,
        mapping=mapping,
    )


def _nothing_loaded(warehouse: Warehouse) -> bool:
    from orchestration.warehouse import connect

    if isinstance(warehouse, PgWarehouse):
        from orchestration.pg_mirror import relation_exists

        with warehouse.connect() as con:
            if not relation_exists(con, "raw.loaded_files"):
                return True
            return con.execute("select count(*) from raw.loaded_files").fetchone()[0] == 0
    if isinstance(warehouse, SparkWarehouse):
        spark = warehouse.session()
        if not spark.catalog.tableExists("raw.loaded_files"):
            return True
        return spark.table("raw.loaded_files").limit(1).count() == 0
    if not warehouse.exists() or warehouse.stat().st_size == 0:
        return True
    con = connect(warehouse, read_only=True)
    try:
        return con.execute("select count(*) from raw.loaded_files").fetchone()[0] == 0
    finally:
        con.close()


def run_job(
    warehouse: Warehouse,
    source: Path | None,
    as_of: date | None,
    definition: str | None = None,
    asset_selection: Sequence[AssetKey] | None = None,
    wait: bool = True,
    verbose: bool = False,
    refit: bool | None = None,
    full_refresh: bool = False,
    unit_tests: bool = False,
    mapping: str | None = None,
) -> int:
    """Execute the Dagster job (or the selected assets of it) in this process; print
    one line per step as it finishes, then what it materialised (``verbose``: Dagster's
    event log and dbt's log as well). ``refit``: None refits monthly
    (``orchestration.refit_policy``), True now, False never. ``unit_tests``: run
    dbt's unit tests too (``insiders build`` does)."""
    import time

    from orchestration import run_control
    from orchestration.dbt_runner import VERBOSE_ENV
    from orchestration.postgres import PgWriterLock

    if not wait:  # one line at once, before Dagster starts and logs the same as an error
        try:
            from orchestration.sessions import lock_anchor

            probe = (
                PgWriterLock("a probe")
                if isinstance(warehouse, PgWarehouse)
                else run_control.WarehouseLock(lock_anchor(warehouse), "a probe")
            )
            probe.acquire(wait=False)
            probe.release()
        except run_control.WarehouseBusy as exc:
            print(f"insiders: error: {exc}", file=sys.stderr)
            return 3
    started = time.perf_counter()
    os.environ[WAREHOUSE_ENV] = _path(warehouse)
    os.environ[TARGET_ENV] = _target(warehouse)
    if verbose:
        os.environ[VERBOSE_ENV] = "1"
    from dagster import AssetKey, DagsterInstance, colored_console_logger

    from orchestration.definitions import JOB_NAME, build_definitions
    from orchestration.progress import ProgressHandler, progress_logger

    progress = ProgressHandler()
    loggers = {"progress": progress_logger(progress)}
    if verbose:
        loggers["console"] = colored_console_logger
    job = build_definitions(
        _path(warehouse), loggers=loggers, target=_target(warehouse)
    ).resolve_job_def(JOB_NAME)
    run_config: dict = {
        "resources": {
            "settings": {
                "config": {
                    "as_of": as_of.isoformat() if as_of else "",
                    "insiders_definition": definition or "",
                    "full_refresh": full_refresh,
                    "unit_tests": unit_tests,
                }
            },
            "warehouse": {
                "config": {"path": _path(warehouse), "wait": wait, "target": _target(warehouse)}
            },
        },
    }
    # Only these loggers: Dagster's console logger would print ~700 lines of events.
    run_config["loggers"] = {name: {} for name in loggers}
    if verbose:  # the whole event log, as `dagster dev` shows it
        run_config["loggers"]["console"] = {"config": {"log_level": "DEBUG"}}
    ops: dict = {}
    if asset_selection is None or AssetKey(["raw", "transactions"]) in asset_selection:
        ops["raw_transactions"] = {
            "config": {"source": str(source) if source else "", "mapping": mapping or ""}
        }
    for op, key in (
        ("customer_segmentation", AssetKey(["ml", "customer_segments"])),
        ("insiders_analytics", AssetKey(["ml", "definition_evaluation"])),
    ):
        if asset_selection is None or key in asset_selection:
            ops[op] = {"config": {"refit": refit}}
    if ops:
        run_config["ops"] = ops
    instance = (
        DagsterInstance.get() if os.environ.get("DAGSTER_HOME") else DagsterInstance.ephemeral()
    )
    result = job.execute_in_process(
        run_config=run_config,
        instance=instance,
        raise_on_error=False,
        asset_selection=list(asset_selection) if asset_selection is not None else None,
    )
    materialized = [
        e.asset_key.to_user_string()
        for e in result.get_asset_materialization_events()
        if e.asset_key is not None
    ]
    print(
        f"run {result.run_id}: {len(materialized)} assets materialized in "
        f"{time.perf_counter() - started:.1f} s"
    )
    unpublished = (
        None
        if isinstance(warehouse, PgWarehouse | SparkWarehouse)
        else run_control.failed_copy(warehouse, result.run_id)
    )
    if (
        result.success and unpublished is not None and unpublished.exists()
    ):  # Dagster counts a failed teardown a success
        print(
            f"insiders: error: the run's results could not be published: {warehouse} is "
            f"left as the last complete run made it; this run's copy is {unpublished}",
            file=sys.stderr,
        )
        return 1
    if not result.success:
        for line in _failures(result.all_events):
            if f"insiders: error: {line}" not in progress.failures:  # printed as it failed
                print(f"insiders: error: {line}", file=sys.stderr)
        return 1
    for event in result.get_asset_materialization_events():
        meta = event.materialization.metadata
        if event.asset_key.to_user_string() == "insiders/report" and "html" in meta:
            _print_answer(warehouse)
            print(f"report: {meta['html'].value}")
    return 0


def _path(warehouse: Warehouse) -> str:
    """The ``--warehouse`` path of the resources: the DuckDB file, or on PostgreSQL a
    path whose folder is the local files' folder (``WarehouseResource.anchor``)."""
    if isinstance(warehouse, PgWarehouse):
        return str(warehouse.local.parent.parent / "insiders_warehouse.duckdb")
    if isinstance(warehouse, SparkWarehouse):
        return str(warehouse.local.parent / "insiders_warehouse.duckdb")
    return str(warehouse)


def _target(warehouse: Warehouse) -> str:
    from orchestration.sessions import target_name

    return target_name(warehouse)


def _failures(events: Sequence) -> list[str]:
    """One line per failed step: the step's own one-line description (a Dagster
    ``Failure``), else the innermost error's message, not Dagster's wrapper."""
    lines = []
    for event in events:
        if not event.is_step_failure:
            continue
        data = event.step_failure_data
        user = data.user_failure_data if data is not None else None
        if user is not None and user.description:
            text = user.description
        elif data is not None and data.error is not None:
            error = data.error
            while error.cause is not None:
                error = error.cause
            text = error.message.strip()
        else:
            text = event.message or "failed"
        lines.append(f"{event.step_key}: {text.splitlines()[0] if text else 'failed'}")
    if not lines:  # failed before any step: a resource could not start (a busy warehouse)
        for event in events:
            error = getattr(event.event_specific_data, "error", None)
            while error is not None and error.cause is not None:
                error = error.cause
            if error is not None and error.message.strip():
                lines.append(error.message.strip().splitlines()[0])
    return (
        lines[:1]
        if lines and not any(e.is_step_failure for e in events)
        else lines or ["the run failed (see the log above)"]
    )


def _print_answer(warehouse: Warehouse) -> None:
    """One line: who the Insiders are, by which definition, and what they bring."""
    from orchestration.sessions import open_warehouse

    with open_warehouse(warehouse, ["insiders.kpis", "insiders.definition_choice"]) as con:
        row = con.execute(
            """
            select kpis.insiders, kpis.customers, kpis.share_of_customers,
                kpis.share_of_customer_revenue, choice.definition, choice.chosen_by,
                choice.mean_ratio
            from insiders.kpis as kpis
            cross join insiders.definition_choice as choice
            where choice.is_chosen
            """
        ).fetchone()
    if row is None:
        return
    insiders, customers, share, revenue, definition, chosen_by, ratio = row
    how = "forced" if chosen_by == "forced" else "chosen by rolling-origin evidence"
    evidence = f", {ratio:.3f}x the top spenders' next-months revenue" if ratio else ""
    print(
        f"Insiders: {insiders} of {customers} customers ({share:.1%}), {revenue:.1%} of "
        f"customer revenue; definition {definition} ({how}{evidence})"
    )


def exposure_warning(address: str, port: int) -> str | None:
    """The loud line for a dashboard listening beyond this machine, or None on loopback.

    The dashboard has no authentication: on any other address (``0.0.0.0``, a LAN
    address, a host name) whoever can reach the port reads the customer answers.
    """
    host = address.strip().strip("[]")
    if host.lower() == "localhost":
        return None
    try:
        if ipaddress.ip_address(host).is_loopback:
            return None
    except ValueError:
        pass  # a host name other than localhost, or an empty address (every interface)
    return (
        f"insiders: WARNING: no authentication: anyone who can reach {address}:{port} sees "
        "the customer answers; put it behind a reverse proxy with authentication, see README"
    )


def _dashboard(warehouse: Warehouse, port: int, address: str, snapshot: Path | None) -> int:
    """Replace this process with ``streamlit run`` on the dashboard (one process to stop).

    The dashboard opens only the snapshot, read-only: it never contends with a run.
    """
    import dashboard
    from dashboard.snapshot import snapshot_path
    from models_py.locations import SNAPSHOT_ENV

    path = snapshot or snapshot_path(warehouse)
    os.environ[SNAPSHOT_ENV] = str(path.expanduser().resolve())
    app = Path(dashboard.__file__).resolve().parent / "app.py"
    warning = exposure_warning(address, port)
    if warning:
        print(warning, file=sys.stderr, flush=True)
    print(f"dashboard on http://{address}:{port} reading {os.environ[SNAPSHOT_ENV]}", flush=True)
    command = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(app),
        "--server.port",
        str(port),
        "--server.address",
        address,
        "--server.headless",
        "true",
        "--browser.gatherUsageStats",
        "false",
        "--client.toolbarMode",
        "viewer",
    ]
    os.execv(sys.executable, command)
    return 0  # not reached: execv replaces the process


def main(argv: list[str] | None = None) -> int:
    """The ``insiders`` command. rc 2 for a bad argument or warehouse, in one line."""
    for stream in (sys.stdout, sys.stderr):
        # A file name that is not UTF-8, or a terminal that is not, must not turn one
        # line of output into a UnicodeEncodeError traceback.
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="backslashreplace")
    args = _parser().parse_args(argv)
    try:
        target = resolve_target(getattr(args, "target", None))
        path = resolve_warehouse(getattr(args, "warehouse", None))
        warehouse: Warehouse = path
        if target == POSTGRES:
            from orchestration.postgres import local_folder

            warehouse = PgWarehouse(local_folder(path))
            if args.command in ("load", "build", "run", "reader-role"):
                warehouse.connect().close()  # one line if the server cannot be used
        elif target == SPARK:
            from orchestration.spark import local_folder as spark_folder

            warehouse = SparkWarehouse(spark_folder(path))
            if args.command in ("load", "build", "run"):
                warehouse.session()  # one line if Spark cannot start or reach its catalog
        elif args.command in ("load", "build", "run"):
            check_warehouse(path)
        mapping = resolve_mapping(getattr(args, "mapping", None))
    except ValueError as exc:  # MappingError too: a wrong mapping loads nothing
        print(f"insiders: error: {exc}", file=sys.stderr)
        return 2
    if args.command == "load":
        return _load(warehouse, args.paths, args.wait, mapping)
    if args.command == "build":
        return _build(warehouse, args.as_of, args.select, args.wait, args.verbose)
    if args.command == "demo-data":
        return _demo(args.directory, args.customers, args.seed, args.layout)
    if args.command == "reader-role":
        return _reader_role(warehouse, args.role)
    if args.command == "dashboard":
        return _dashboard(warehouse, args.port, args.address, args.snapshot)
    return _run(
        warehouse,
        args.source,
        args.as_of,
        args.definition,
        args.wait,
        args.verbose,
        args.refit,
        args.full_refresh,
        args.mapping,
    )


def run_cli() -> None:
    """The console script: :func:`main`, then exit without the interpreter's teardown.

    After a run, Python spends 3-4 s freeing what dbt, pymc, PyTensor and scikit-learn
    built (measured on the real data: the last line printed at 29.0 s, the process
    gone at 33.0 s), and that teardown does nothing a user needs: every file the run
    writes is closed, every DuckDB connection closed, Dagster's storage committed. So
    the streams and the logging handlers are flushed and the process ends at once.
    Tests call :func:`main`, which returns normally.
    """
    import atexit
    import contextlib
    import logging

    code = main()
    # What exit would run first (0.01 s): multiprocessing's finalizers (the semaphores
    # tqdm and joblib registered), joblib's workers, logging's flush. Only the
    # interpreter's teardown after them is skipped.
    atexit._run_exitfuncs()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe: nothing to say
            stream.flush()
    os._exit(code)


if __name__ == "__main__":
    run_cli()
