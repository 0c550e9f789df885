"""The Dagster graph: definitions, real materialisations, write-back, sensor."""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import pandas as pd
import pytest
from dagster import AssetKey, DagsterInstance, RunRequest, SkipReason, build_sensor_context

from models_py.demo_data import write_demo_data
from orchestration.ml_tables import SegmentationWrite, write_segmentation
from orchestration.warehouse import connect
from tests.conftest import (
    copy_warehouse,
    customers_without_one_segment,
    environ_restored,
    query,
    scalar,
)

SMALL = {
    "spaces": ["scaled", "pca"],
    "algorithms": ["kmeans", "gmm", "ward"],
    "k_max": 8,
    "bootstrap_runs": 3,
}


def run_job(
    warehouse: Path,
    source: Path | None,
    segmentation: dict | None = None,
    settings: dict[str, str] | None = None,
):
    """Execute the real Dagster job in this process (``settings``: the run config of the
    resource ``settings``, as the launchpad gives it). Whatever the job sets in
    ``os.environ`` is undone afterwards: module fixtures call this too."""
    from orchestration.definitions import JOB_NAME, build_definitions

    job = build_definitions(str(warehouse)).resolve_job_def(JOB_NAME)
    run_config: dict = {
        "ops": {
            "raw_transactions": {"config": {"source": str(source) if source else ""}},
            "customer_segmentation": {"config": segmentation or SMALL},
        }
    }
    if settings:
        run_config["resources"] = {"settings": {"config": settings}}
    with environ_restored():
        return job.execute_in_process(
            run_config=run_config, instance=DagsterInstance.ephemeral(), raise_on_error=False
        )


def failure_messages(result) -> str:
    """Every failure event of a run with its error, as one text to search."""
    lines = []
    for event in result.all_events:
        if event.is_failure:
            lines.append(event.message or "")
            error = getattr(event.event_specific_data, "error", None)
            if error is not None:
                lines.append(error.to_string())
    return "\n".join(lines)


@pytest.fixture(scope="module")
def demo_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_demo_data(
        tmp_path_factory.mktemp("src"), customers=250, seed=3, layout="kaggle"
    ).path


@pytest.fixture(scope="module")
def first_run(demo_source: Path, tmp_path_factory: pytest.TempPathFactory):
    warehouse = tmp_path_factory.mktemp("wh") / "warehouse.duckdb"
    result = run_job(warehouse, demo_source)
    assert result.success
    return warehouse, result


def test_definitions_hold_the_whole_graph():
    from orchestration.definitions import JOB_NAME, defs

    graph = defs.resolve_asset_graph()
    keys = {key.to_user_string() for key in graph.get_all_asset_keys()}
    assert {
        "raw/transactions",
        "staging/stg_online_retail__transactions",
        "marts/dim_customers",
        "ml/customer_segments",
        "ml/model_selection",
        "ml/customer_embedding",
    } <= keys
    segments = graph.get(AssetKey(["ml", "customer_segments"]))
    assert AssetKey(["marts", "dim_customers"]) in segments.parent_keys
    staging = graph.get(AssetKey(["staging", "stg_online_retail__transactions"]))
    assert AssetKey(["raw", "transactions"]) in staging.parent_keys
    # dbt tests are asset checks.
    checks = {c.name for c in graph.asset_check_keys}
    assert "primary_key_dim_customers_customer_id" in checks
    assert defs.resolve_job_def(JOB_NAME) is not None
    assert defs.resolve_schedule_def("monthly_refresh").cron_schedule == "0 6 1 * *"


def test_whole_graph_materialises_and_labels_every_customer(first_run):
    warehouse, result = first_run
    materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert {
        "raw/transactions",
        "marts/dim_customers",
        "ml/customer_segments",
        "insiders/members",
        "insiders/kpis",
        "insiders/cluster_profile",
        "insiders/cluster_actions",
        "insiders/eligibility_rules",
        "insiders/evidence",
        "ml/definition_members",
        "ml/definition_evaluation",
        "ml/group_forecasts",
        "ml/customer_forecast",
        "insiders/definition_evaluation",
        "insiders/definition_choice",
        "insiders/forecast_evaluation",
        "insiders/membership_history",
        "insiders/membership_movement",
        "insiders/revenue_forecast",
        "insiders/customer_forecast",
        "bi/snapshot",
        "insiders/report",
    } <= materialized
    checks = result.get_asset_check_evaluations()
    assert checks and all(c.passed for c in checks)
    customers = scalar(warehouse, "select count(*) from marts.dim_customers")
    assert customers > 100
    assert customers_without_one_segment(warehouse) == 0
    assert scalar(warehouse, "select count(*) from ml.customer_segments") == customers
    assert scalar(warehouse, "select count(*) from ml.customer_embedding") == customers
    assert scalar(warehouse, "select count(*) from ml.model_selection where is_chosen") == 1
    rules = query(warehouse, "select precision, recall from insiders.eligibility_rules")
    assert rules and all(0 <= p <= 1 and 0 < r <= 1 for p, r in rules)
    evidence = query(
        warehouse,
        "select metric, difference, ci_low, ci_high from insiders.evidence "
        "where evidence_kind = 'insiders_vs_rest'",
    )
    assert {m for m, *_ in evidence} == {"monetary", "frequency"}
    assert all(low <= diff <= high for _, diff, low, high in evidence)
    # dbt models downstream of the clustering ran after it, in the same run: the members
    # are the chosen definition's members at the as-of, as many as the Insiders cluster.
    chosen = query(warehouse, "select definition from insiders.definition_choice where is_chosen")
    assert len(chosen) == 1
    assert scalar(warehouse, "select count(*) from insiders.members") == scalar(
        warehouse, "select count(*) from ml.customer_segments where is_insider"
    )
    assert scalar(
        warehouse,
        "select count(*) from insiders.members join ml.definition_members using (customer_id) "
        "where evaluation_date = definition_members.as_of and definition_members.definition = ?",
        [chosen[0][0]],
    ) == scalar(warehouse, "select count(*) from insiders.members")
    assert (
        scalar(
            warehouse,
            "select count(distinct cluster_id) from ml.customer_segments where is_insider",
        )
        == 1
    )
    meta = {
        e.asset_key.to_user_string(): e.materialization.metadata
        for e in result.get_asset_materialization_events()
    }["ml/customer_segments"]
    for key in (
        "space",
        "algorithm",
        "k",
        "silhouette",
        "silhouette_features",
        "stability_ari",
        "clusters",
        "insiders_share_of_customers",
        "insiders_share_of_revenue",
        "embedding_plot",
    ):
        assert key in meta, key
    assert 0 < meta["insiders_share_of_customers"].value < 1
    report = {
        e.asset_key.to_user_string(): e.materialization.metadata
        for e in result.get_asset_materialization_events()
    }["insiders/report"]
    assert report["questions_answered"].value == 9
    assert "## 8. What guarantees they are better than the rest?" in report["report"].value
    assert Path(report["html"].value).is_file()


def test_the_graph_runs_python_steps_after_the_dbt_models_they_read():
    from orchestration.definitions import defs

    graph = defs.resolve_asset_graph()

    def parents(*path: str) -> set[str]:
        return {k.to_user_string() for k in graph.get(AssetKey(list(path))).parent_keys}

    assert {
        "ml/customer_segments",
        "intermediate/int_customer_features__evaluations",
        "intermediate/int_customer_scores__evaluations",
        "intermediate/int_customer_purchase_histories",
    } <= parents("ml", "definition_evaluation")
    assert "ml/definition_members" in parents("staging", "stg_ml__definition_members")
    assert "insiders/definition_choice" in parents("insiders", "customer_membership")
    assert "insiders/customer_membership" in parents("insiders", "members")
    assert "insiders/revenue_forecast" in parents("insiders", "report")
    # The BI snapshot is the last step: every published table, and the report, before it.
    assert {
        "insiders/members",
        "insiders/kpis",
        "marts/dim_customers",
        "ml/customer_embedding",
        "ml/model_selection",
        "insiders/report",
    } <= parents("bi", "snapshot")
    assert not graph.get(AssetKey(["bi", "snapshot"])).child_keys


def test_scoring_with_the_saved_model_keeps_the_labels(first_run, demo_source):
    warehouse, _ = first_run
    before = query(warehouse, "select customer_id, cluster_id from ml.customer_segments order by 1")
    candidates = scalar(warehouse, "select count(*) from ml.model_selection")
    result = run_job(warehouse, demo_source, {**SMALL, "refit": False})
    assert result.success
    after = query(warehouse, "select customer_id, cluster_id from ml.customer_segments order by 1")
    assert after == before
    assert scalar(warehouse, "select count(*) from ml.model_selection") == candidates
    assert query(warehouse, "select refit from ml.segmentation_runs order by created_at") == [
        (True,),
        (False,),
    ]


def published_answer(warehouse: Path) -> dict[str, object]:
    """Everything a reader of the last complete run sees, to compare before and after a
    failed run: every ``ml`` and ``insiders`` table row for row, the BI snapshot (file
    bytes and the Parquet version it links to) and the report files."""
    from models_py.locations import SNAPSHOT_FILE

    tables = [
        f"{schema}.{name}"
        for schema, name in query(
            warehouse,
            "select table_schema, table_name from information_schema.tables "
            "where table_schema in ('ml', 'insiders') and table_type = 'BASE TABLE' "
            "order by all",
        )
    ]
    answer: dict[str, object] = {
        t: query(warehouse, f"select * from {t} order by all") for t in tables
    }
    bi = warehouse.parent / "bi"
    answer["bi snapshot bytes"] = (bi / SNAPSHOT_FILE).read_bytes()
    answer["bi parquet link"] = (bi / "parquet").readlink()
    for report in sorted((warehouse.parent / "reports").glob("insiders_report.*")):
        answer[f"report {report.name}"] = report.read_bytes()
    return answer


class FailsOnTheSecondInsert:
    """A real warehouse connection that fails the clustering's write-back half way: the
    first ``insert into ml.*`` runs (so one table is already replaced inside the
    transaction), the second raises. Records what it saw, so the test can prove the
    failure happened after the write had started."""

    def __init__(self, con: duckdb.DuckDBPyConnection, seen: dict[str, object]) -> None:
        self._con = con
        self._seen = seen

    def execute(self, sql: str, *args, **kwargs):
        if sql.lstrip().lower().startswith("insert into ml."):
            inserts = self._seen.setdefault("inserts", [])
            inserts.append(sql)
            if len(inserts) == 2:
                # Inside the transaction: the first table already holds the new rows.
                first = inserts[0].split()[2]
                self._seen["first_table"] = first
                self._seen["first_table_run_ids"] = self._con.execute(
                    f"select distinct run_id from {first}"
                ).fetchall()
                raise duckdb.IOException("simulated disk failure while writing ml tables")
        return self._con.execute(sql, *args, **kwargs)

    def __getattr__(self, name: str):
        return getattr(self._con, name)


def test_a_clustering_that_fails_while_writing_leaves_the_previous_answer(
    first_run, demo_source, monkeypatch
):
    """The clustering fails AFTER it started writing ml.* (one table already replaced in
    its transaction): the run fails, and the labels, every ml and insiders table, the
    BI snapshot and the report are exactly what the previous run published."""
    import orchestration.sessions as sessions  # how every Python step opens the warehouse

    warehouse, _ = first_run
    before = published_answer(warehouse)
    seen: dict[str, object] = {}
    real_connect = sessions.connect
    monkeypatch.setattr(
        sessions,
        "connect",
        lambda *a, **k: FailsOnTheSecondInsert(real_connect(*a, **k), seen),
    )
    result = run_job(warehouse, demo_source)
    assert not result.success
    assert "simulated disk failure while writing ml tables" in failure_messages(result)
    # The failure came after the write started: a first table held this run's rows.
    assert "first_table" in seen, "the clustering no longer writes ml.* with inserts: adapt"
    assert seen["first_table_run_ids"] == [(result.run_id,)], seen
    failed_steps = {e.step_key for e in result.all_events if e.event_type_value == "STEP_FAILURE"}
    assert failed_steps == {"customer_segmentation"}
    after = published_answer(warehouse)
    assert after.keys() == before.keys()
    for key in before:
        assert after[key] == before[key], f"{key} changed after a failed run"


def test_write_back_is_one_transaction(first_run):
    warehouse, _ = first_run
    before = query(warehouse, "select * from ml.customer_segments order by customer_id")
    runs = scalar(warehouse, "select count(*) from ml.segmentation_runs")
    labels = pd.DataFrame(
        {
            "customer_id": ["a", "b"],
            "cluster_id": [0, 1],
            "cluster_name": ["Insiders", None],  # violates NOT NULL after the delete
            "is_insider": [True, False],
        }
    )
    write = SegmentationWrite(
        run_id="broken",
        as_of=pd.Timestamp("2011-12-10").date(),
        model="test",
        model_path=None,
        refit=True,
        labels=labels,
        candidates=None,
        embedding=pd.DataFrame({"customer_id": ["a", "b"], "x": [0.0, 1.0], "y": [0.0, 1.0]}),
        centroids=pd.DataFrame({"cluster_id": [0, 1], "monetary": [1.0, 2.0]}),
        config={},
        chosen={},
        stability_ari=None,
    )
    con = connect(warehouse)
    try:
        with pytest.raises(Exception, match="NOT NULL"):
            write_segmentation(con, write)
    finally:
        con.close()
    assert query(warehouse, "select * from ml.customer_segments order by customer_id") == before
    assert scalar(warehouse, "select count(*) from ml.segmentation_runs") == runs


def test_sensor_requests_a_run_when_files_appear_or_change(tmp_path, monkeypatch):
    from orchestration.definitions import new_transaction_files

    source = tmp_path / "drop"
    source.mkdir()
    monkeypatch.setenv("INSIDERS_SOURCE", str(source))
    (source / "a.csv").write_text("x")
    first = new_transaction_files(build_sensor_context())
    assert isinstance(first, RunRequest)
    context = build_sensor_context(cursor=first.run_key)
    assert isinstance(new_transaction_files(context), SkipReason)
    (source / "b.csv").write_text("y")
    again = new_transaction_files(build_sensor_context(cursor=first.run_key))
    assert isinstance(again, RunRequest) and again.run_key != first.run_key
    monkeypatch.setenv("INSIDERS_SOURCE", str(tmp_path / "missing"))
    assert isinstance(new_transaction_files(build_sensor_context()), SkipReason)


def test_an_analyst_can_force_a_definition(first_run, tmp_path):
    """dbt var insiders_definition (what settings.config.insiders_definition and
    `insiders run --definition` pass) makes that definition's members the Insiders,
    and the choice and the report say it was forced."""
    from orchestration.dbt_runner import run_dbt
    from orchestration.report_asset import write_report

    warehouse, _ = first_run
    forced = tmp_path / "forced.duckdb"
    shutil.copyfile(warehouse, forced)
    assert run_dbt(
        "build",
        forced,
        {"insiders_definition": "rfm_champions"},
        ["--select", "definition_choice+"],
    )
    assert query(
        forced, "select definition, chosen_by from insiders.definition_choice where is_chosen"
    ) == [("rfm_champions", "forced")]
    members = {r[0] for r in query(forced, "select customer_id from insiders.members")}
    picked = {
        r[0]
        for r in query(
            forced,
            "select customer_id from ml.definition_members "
            "where evaluation_date = as_of and definition = 'rfm_champions'",
        )
    }
    assert members == picked and members
    _, report = write_report(forced)
    assert "forced" in report.markdown_inline.lower()


def test_a_forced_definition_is_checked_where_it_enters(first_run, tmp_path):
    from orchestration.dbt_runner import run_dbt
    from orchestration.resources import BuildSettings

    assert BuildSettings(insiders_definition="rfm_champions").dbt_vars() == {
        "insiders_definition": "rfm_champions"
    }
    assert BuildSettings().dbt_vars() == {}
    with pytest.raises(ValueError, match="unknown definition"):
        BuildSettings(insiders_definition="x'; drop table ml.customer_segments; --").dbt_vars()
    warehouse, _ = first_run
    copy = tmp_path / "checked.duckdb"
    shutil.copyfile(warehouse, copy)
    # In dbt itself: text that is not a name never reaches SQL, and a name that is no
    # evaluated definition chooses nothing, which the build refuses.
    for value in ("x'; drop table ml.customer_segments; --", "no_such_definition"):
        assert not run_dbt(
            "build", copy, {"insiders_definition": value}, ["--select", "definition_choice+"]
        )
    assert scalar(copy, "select count(*) from ml.customer_segments") > 0
    with pytest.raises(SystemExit):
        from orchestration.cli import main

        main(["run", "--warehouse", str(copy), "--definition", "no_such_definition"])


HOSTILE_VALUES = (
    "2011-01-01'); create table main.pwned as select 1; --",
    "1; create table main.pwned(x int)",
)


def pwned_tables(folder: Path) -> list[tuple[str, str, str]]:
    """Tables named ``pwned`` in any DuckDB file under ``folder`` (the warehouse and any
    copy a run made of it), each opened read-write as the pipeline opens it."""
    found = []
    for path in sorted(folder.rglob("*.duckdb")):
        con = duckdb.connect(str(path))
        try:
            found += con.execute(
                "select ?, table_schema, table_name from information_schema.tables "
                "where table_name = 'pwned'",
                [str(path)],
            ).fetchall()
        finally:
            con.close()
    return found


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("as_of", "settings.as_of: not a date (YYYY-MM-DD)"),
        ("insiders_definition", "settings.insiders_definition: unknown definition"),
    ],
)
@pytest.mark.parametrize("value", HOSTILE_VALUES)
def test_a_hostile_run_setting_never_reaches_sql(first_run, tmp_path, setting, message, value):
    """settings.config.as_of / insiders_definition from the launchpad: SQL text in them
    fails the run with one clear line before any dbt step runs, and creates nothing."""
    warehouse, _ = first_run
    copy = copy_warehouse(warehouse, tmp_path / "wh" / "warehouse.duckdb")
    before = query(copy, "select * from insiders.members order by all")
    result = run_job(copy, None, settings={setting: value})
    assert not result.success
    assert message in failure_messages(result)
    assert value in failure_messages(result)  # the value is named, as given
    # No dbt step got as far as running dbt: nothing of the graph was materialised.
    materialised = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert materialised <= {"raw/transactions", "raw/quarantined_rows", "raw/loaded_files"}
    assert pwned_tables(tmp_path) == []
    assert query(copy, "select * from insiders.members order by all") == before
