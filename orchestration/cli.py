"""The ``insiders`` command line: load files, build the dbt project, make demo data, run
the whole graph, serve the dashboard."""

from __future__ import annotations

import argparse
import os
import sys
from datetime import date
from pathlib import Path

from orchestration.warehouse import SOURCE_ENV, WAREHOUSE_ENV, load_files, resolve_warehouse


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
            "else warehouse/insiders_warehouse.duckdb)"
        ),
    )
    parser = argparse.ArgumentParser(
        prog="insiders",
        description="Find an online store's most valuable customers (the Insiders).",
        parents=[common],
    )
    sub = parser.add_subparsers(dest="command", required=True)

    load = sub.add_parser(
        "load", parents=[common], help="load transaction files or directories into raw"
    )
    load.add_argument("paths", nargs="+", metavar="PATH")

    build = sub.add_parser("build", parents=[common], help="dbt build: models, seeds and tests")
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
        "run", parents=[common], help="the main job: load the source, then build everything"
    )
    run.add_argument("--source", type=Path, help="file or directory of transaction files")
    run.add_argument("--as-of", type=_as_of)
    run.add_argument(
        "--definition",
        choices=tuple(_definitions()),
        help="force this definition of the Insiders (default: the one with the best "
        "rolling-origin evidence)",
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


def _load(warehouse: Path, paths: list[str]) -> int:
    report = load_files(warehouse, paths)
    for raw_file in report.loaded:
        print(f"loaded  {raw_file.path} ({raw_file.layout}, {raw_file.encoding})")
    for path, why in report.skipped:
        print(f"skipped {path}: {why}")
    for error in report.failed:
        print(f"insiders: error: {error}", file=sys.stderr)
    print(report.summary())
    return 1 if report.failed else 0


def _build(warehouse: Path, as_of: date | None, select: str | None = None) -> int:
    from orchestration.dbt_runner import dbt_vars, run_dbt

    extra = ["--select", select] if select else []
    return 0 if run_dbt("build", warehouse, dbt_vars(as_of), extra) else 1


def _demo(directory: Path, customers: int, seed: int, layout: str) -> int:
    from models_py.demo_data import write_demo_data

    written = write_demo_data(directory, customers=customers, seed=seed, layout=layout)
    print(
        f"wrote {written.path}: {written.lines} lines, {written.customers} customers, "
        f"{written.bad_lines} deliberately bad lines (synthetic data, seed {seed})"
    )
    return 0


def _run(
    warehouse: Path, source: Path | None, as_of: date | None, definition: str | None = None
) -> int:
    """The main job, executed by Dagster: the same graph `dagster dev` shows."""
    from orchestration.warehouse import connect

    if source is None and not os.environ.get(SOURCE_ENV):
        con = connect(warehouse)
        try:
            files = con.execute("select count(*) from raw.loaded_files").fetchone()[0]
        finally:
            con.close()
        if files == 0:
            source = warehouse.parent / "demo-data"
            print(
                "#" * 72
                + "\n# No data loaded yet and no --source given: using SYNTHETIC demo data"
                + f"\n# written to {source}. Figures below are NOT real."
                + "\n# Load your own: insiders run --source PATH\n"
                + "#" * 72
            )
            _demo(source, customers=1000, seed=42, layout="kaggle")
    return run_job(warehouse, source, as_of, definition)


def run_job(
    warehouse: Path, source: Path | None, as_of: date | None, definition: str | None = None
) -> int:
    """Execute the Dagster job in this process; print what it materialised."""
    os.environ[WAREHOUSE_ENV] = str(warehouse)
    from dagster import DagsterInstance

    from orchestration.definitions import JOB_NAME, build_definitions

    job = build_definitions(str(warehouse)).resolve_job_def(JOB_NAME)
    run_config = {
        "ops": {"raw_transactions": {"config": {"source": str(source) if source else ""}}},
        "resources": {
            "settings": {
                "config": {
                    "as_of": as_of.isoformat() if as_of else "",
                    "insiders_definition": definition or "",
                }
            }
        },
    }
    instance = (
        DagsterInstance.get() if os.environ.get("DAGSTER_HOME") else DagsterInstance.ephemeral()
    )
    result = job.execute_in_process(run_config=run_config, instance=instance, raise_on_error=False)
    materialized = [
        e.asset_key.to_user_string()
        for e in result.get_asset_materialization_events()
        if e.asset_key is not None
    ]
    print(f"run {result.run_id}: {len(materialized)} assets materialized")
    for event in result.get_asset_materialization_events():
        meta = event.materialization.metadata
        if event.asset_key.to_user_string() == "insiders/report" and "html" in meta:
            _print_answer(warehouse)
            print(f"report: {meta['html'].value}")
    if not result.success:
        for event in result.all_events:
            if event.is_failure:
                print(f"insiders: error: {event.message}", file=sys.stderr)
        return 1
    return 0


def _print_answer(warehouse: Path) -> None:
    """One line: who the Insiders are, by which definition, and what they bring."""
    from orchestration.warehouse import connect

    con = connect(warehouse, read_only=True)
    try:
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
    finally:
        con.close()
    if row is None:
        return
    insiders, customers, share, revenue, definition, chosen_by, ratio = row
    how = "forced" if chosen_by == "forced" else "chosen by rolling-origin evidence"
    evidence = f", {ratio:.3f}x the top spenders' next-months revenue" if ratio else ""
    print(
        f"Insiders: {insiders} of {customers} customers ({share:.1%}), {revenue:.1%} of "
        f"customer revenue; definition {definition} ({how}{evidence})"
    )


def _dashboard(warehouse: Path, port: int, address: str, snapshot: Path | None) -> int:
    """Replace this process with ``streamlit run`` on the dashboard (one process to stop).

    The dashboard opens only the snapshot, read-only: it never contends with a run.
    """
    import dashboard
    from dashboard.snapshot import snapshot_path
    from orchestration.bi_snapshot import SNAPSHOT_ENV

    path = snapshot or snapshot_path(warehouse)
    os.environ[SNAPSHOT_ENV] = str(path.expanduser().resolve())
    app = Path(dashboard.__file__).resolve().parent / "app.py"
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
    args = _parser().parse_args(argv)
    try:
        warehouse = resolve_warehouse(getattr(args, "warehouse", None))
    except ValueError as exc:
        print(f"insiders: error: {exc}", file=sys.stderr)
        return 2
    if args.command == "load":
        return _load(warehouse, args.paths)
    if args.command == "build":
        return _build(warehouse, args.as_of, args.select)
    if args.command == "demo-data":
        return _demo(args.directory, args.customers, args.seed, args.layout)
    if args.command == "dashboard":
        return _dashboard(warehouse, args.port, args.address, args.snapshot)
    return _run(warehouse, args.source, args.as_of, args.definition)


if __name__ == "__main__":
    sys.exit(main())
