"""The Spark target's edges, as a hostile user meets them: each test states a contract
the Spark branch breaks (when written, every test here failed: each docstring is the
bug report, with the line at fault).

Cost (measured on 2 busy cores, about 3.5 min in all): one module-scoped Spark
warehouse (one local session) for the in-process tests; the command-line tests start
``insiders`` in a subprocess, most of which fail before a JVM is up (1-3 s each), one
of which meets the held Derby metastore (about a minute: Hive retries the connection
before it gives up); two run dbt on Spark (30-45 s each).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

pytest.importorskip("pyspark")

from orchestration import spark_loader, spark_ml
from orchestration.spark import SparkWarehouse, session, stop_session

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

ROOT = Path(__file__).resolve().parents[1]
HEADER = "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country"
LINES = (
    "536365,85123A,WHITE HANGING HEART T-LIGHT HOLDER,6,2010-12-01 08:26:00,2.55,17850,"
    "United Kingdom",
    "536366,71053,WHITE METAL LANTERN,6,2010-12-01 08:28:00,3.39,17851,United Kingdom",
)


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SparkWarehouse]:
    """The module's one Spark warehouse (``<tmp>/spark``, as ``--warehouse
    <tmp>/w.duckdb`` names it), its session started and its metastore in use."""
    saved = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("INSIDERS_SPARK_")}
    folder = tmp_path_factory.mktemp("spark-edges")
    chosen = SparkWarehouse(folder / "spark")
    spark = session(chosen)
    spark_loader.ensure_raw_tables(spark)  # the metastore is booted by this process
    yield chosen
    stop_session()
    os.environ.update(saved)


def _location(warehouse: SparkWarehouse, table: str) -> Path:
    location = spark_ml.current_location(session(warehouse), warehouse, table)
    return Path(location.removeprefix("file:"))


def test_ml_pruning_keeps_the_version_readers_are_still_in(warehouse: SparkWarehouse) -> None:
    """spark_ml's docstring: "The previous version's folder is kept for readers still
    in it". A run killed between writing its versions and switching them (the case
    the module promises to survive) leaves an orphan folder; the next run's switch
    then keeps the orphan (the newest name before its own) and deletes the version
    the table pointed at until that switch, under any reader still scanning it."""
    spark = session(warehouse)
    spark_ml.ensure_ml_tables(spark, warehouse)
    table = "segmentation_runs"
    empty = spark.createDataFrame([], spark_ml.spark_schema(table))
    spark_ml.replace_tables(spark, warehouse, {table: empty}, "run-one")
    in_use = _location(warehouse, table)
    spark_ml.write_versions(spark, warehouse, {table: empty}, "killed")  # never switched
    spark_ml.replace_tables(spark, warehouse, {table: empty}, "run-three")
    assert _location(warehouse, table) != in_use
    assert in_use.is_dir(), f"the version readers were in was deleted: {in_use}"


def test_a_steps_tables_switch_together(warehouse: SparkWarehouse) -> None:
    """The issue: ``ml`` tables are written "atomically per run (write under the run
    id, then switch)". Versions written and registered stay invisible until the ONE
    pointer switch; then every table of the step shows its new rows at once."""
    from pyspark.sql import functions as F

    spark = session(warehouse)
    spark_ml.ensure_ml_tables(spark, warehouse)
    tables = ("insiders_definitions", "model_selection")

    def rows(table: str) -> int:
        return spark_ml.table_frame(spark, table).count()

    empty = {t: spark.createDataFrame([], spark_ml.spark_schema(t)) for t in tables}
    spark_ml.replace_tables(spark, warehouse, empty, "empty")
    assert [rows(t) for t in tables] == [0, 0]
    from orchestration.ml_tables import ML_COLUMNS

    selection = spark_ml.spark_schema("model_selection")
    filled = {
        "insiders_definitions": spark.range(3).select(
            F.col("id").cast("string").alias("definition"),
            F.lit("text").alias("description"),
            F.col("id").cast("int").alias("sort_order"),
            F.current_date().alias("as_of"),
            F.lit("r").alias("run_id"),
        ),
        "model_selection": spark.createDataFrame(
            [tuple(None for _ in ML_COLUMNS["model_selection"])], selection
        ),
    }
    written = spark_ml.write_versions(spark, warehouse, filled, "two-tables")
    for table, location in written.items():  # registered, as a run killed here leaves
        spark_ml._add_version(spark, table, location)
    assert [rows(t) for t in tables] == [0, 0], "nothing shows before the switch"
    spark_ml.switch_tables(spark, warehouse, written)
    assert [rows(t) for t in tables] == [3, 1]


def test_an_older_layouts_ml_table_is_kept_as_its_first_version(
    warehouse: SparkWarehouse,
) -> None:
    """A warehouse of the earlier layout has ``ml.<table>`` as a table of its own
    (here without a column added since): its rows become the view's first version,
    the missing column null, whether the table was managed or not."""
    spark = session(warehouse)
    spark_ml.ensure_ml_tables(spark, warehouse)
    spark.sql("drop view ml.insiders_definitions")
    spark.sql(
        "create table ml.insiders_definitions using parquet as select 'a' as definition, "
        "'words' as description, current_date() as as_of, 'old' as run_id"
    )
    spark_ml.ensure_ml_tables(spark, warehouse)
    rows = spark_ml.table_frame(spark, "insiders_definitions").collect()
    assert [(r["definition"], r["run_id"], r["sort_order"]) for r in rows] == [("a", "old", None)]
    kinds = {t.name: t.tableType for t in spark.catalog.listTables("ml")}
    assert kinds["insiders_definitions"] == "VIEW"


# --- the command line: one line, rc 2, for a Spark that cannot be used -------------


def _data(folder: Path) -> Path:
    """A folder with one tiny order file (two lines)."""
    data = folder / "data"
    data.mkdir(parents=True, exist_ok=True)
    (data / "2010-12-01.csv").write_text("\n".join((HEADER, *LINES)) + "\n")
    return data


def _insiders(folder: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``insiders <args> --target spark --warehouse <folder>/w.duckdb`` in a process of
    its own, the Spark variables of this one removed and ``env`` set."""
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("INSIDERS_SPARK_") and k not in ("INSIDERS_TARGET", "INSIDERS_VERBOSE")
    }
    command = [sys.executable, "-m", "orchestration.cli", args[0], "--target", "spark"]
    command += ["--warehouse", str(folder / "w.duckdb"), *args[1:]]
    return subprocess.run(
        command, cwd=ROOT, env={**clean, **env}, capture_output=True, text=True, timeout=300
    )


def _one_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, f"{len(lines)} lines on stderr:\n{result.stderr[:3000]}"
    assert lines[0].startswith("insiders: error: "), lines[0]
    return lines[0]


def test_an_unusable_spark_warehouse_directory_fails_in_one_line(tmp_path: Path) -> None:
    """$INSIDERS_SPARK_WAREHOUSE under a regular file (as a read-only mount or a typo
    would be): the DuckDB target says "cannot create the warehouse" in one line with
    rc 2; on Spark, ``session`` creates the metastore folder outside its ``try``
    (spark.py, ``warehouse.metastore.mkdir``), the ``OSError`` passes ``_load``'s
    ``except WarehouseError`` and a 27-line Python traceback ends the command, rc 1."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    result = _insiders(
        tmp_path, "load", str(_data(tmp_path)), INSIDERS_SPARK_WAREHOUSE=str(blocker / "tables")
    )
    line = _one_line(result)
    assert result.returncode == 2, result.returncode
    assert str(blocker) in line


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("INSIDERS_SPARK_MASTER", "bogus"),
        ("INSIDERS_SPARK_DRIVER_MEMORY", "lots"),
        ("INSIDERS_SPARK_WAREHOUSE", "{tmp}/it's/tables"),
    ],
)
def test_a_bad_spark_setting_is_named_in_the_error_line(
    tmp_path: Path, variable: str, value: str
) -> None:
    """A wrong setting must be named: today all three say only "Spark did not start:
    [JAVA_GATEWAY_EXITED] Java gateway process exited before sending its port
    number." (spark.py ``session``: ``_first_line`` of pyspark's error; the cause is
    only in spark.log). The master and the memory are passed to spark-submit
    unchecked; a quote in the warehouse path breaks ``-Dderby.system.home=...`` in
    ``spark.driver.extraJavaOptions`` before ``spark_ml._checked_location`` could say
    "may not hold quotes"."""
    value = value.format(tmp=tmp_path)
    result = _insiders(tmp_path, "load", str(_data(tmp_path)), **{variable: value})
    line = _one_line(result)
    assert result.returncode == 2, result.returncode
    assert variable in line or value in line, line


def test_a_bad_shuffle_partitions_setting_fails_in_one_line(tmp_path: Path) -> None:
    """$INSIDERS_SPARK_SHUFFLE_PARTITIONS=abc goes into the session unchecked
    (spark.py ``session_config``); Spark refuses it at the first SQL statement
    (spark_loader ``ensure_raw_tables``), outside ``session``'s ``try``, and a
    75-line py4j traceback reaches the terminal (rc 1)."""
    result = _insiders(
        tmp_path, "load", str(_data(tmp_path)), INSIDERS_SPARK_SHUFFLE_PARTITIONS="abc"
    )
    line = _one_line(result)
    assert result.returncode == 2, result.returncode
    assert "INSIDERS_SPARK_SHUFFLE_PARTITIONS" in line or "abc" in line, line


def test_build_when_spark_cannot_start_fails_as_load_does(tmp_path: Path) -> None:
    """The same unusable Spark: ``insiders load`` says it in one line with rc 2, but
    ``insiders build`` starts Dagster first (cli.py ``main`` checks a PostgreSQL
    server before a load, build or run, and nothing for Spark), so the session fails
    inside the run's resource: rc 1, a "0 assets materialized" line, and the error
    prefixed with its class path ("orchestration.warehouse.WarehouseError: ...")."""
    result = _insiders(tmp_path, "build", INSIDERS_SPARK_MASTER="bogus")
    line = _one_line(result)
    assert "WarehouseError" not in line, line
    assert result.returncode == 2, (result.returncode, line)


def test_a_second_process_on_a_held_local_metastore_fails_in_one_line(
    warehouse: SparkWarehouse,
) -> None:
    """A local session keeps its Derby metastore booted: a notebook, the dashboard or
    a test holding it, while ``insiders load`` runs on the same warehouse. The second
    JVM cannot open Derby, and Hive's "Unable to instantiate
    SessionHiveMetaStoreClient" arrives as a py4j ``AnalysisException`` with a
    29-line traceback (``insiders build``: 52 lines of Dagster stack trace), rc 1,
    after about a minute of retries: spark.py ``session`` only guards
    ``getOrCreate``, and the metastore is first touched later, in
    spark_loader ``ensure_raw_tables``. One line naming the metastore folder and
    that another process holds it is the contract."""
    folder = warehouse.local.parent
    result = _insiders(folder, "load", str(_data(folder / "input")))
    line = _one_line(result)
    assert result.returncode == 2, result.returncode
    assert str(warehouse.metastore) in line, line


# --- the clustering's sample when customers > sample_size ---------------------------


def _customers(warehouse: SparkWarehouse, total: int) -> DataFrame:
    """``total`` customers whose monetary values are spread evenly over 0..999 (so the
    deciles of monetary are known without Spark: value // 100)."""
    from pyspark.sql import functions as F

    return (
        session(warehouse)
        .range(total)
        .select(
            F.format_string("c%05d", "id").alias("customer_id"),
            (F.col("id") * 7 % 1000).cast("double").alias("monetary"),
        )
    )


def test_the_sample_holds_sample_size_customers_as_on_duckdb(warehouse: SparkWarehouse) -> None:
    """On DuckDB the fit gets exactly ``sample_size`` customers when there are more
    (models_py/clustering/pipeline.py: ``rng.choice(..., size=sample_size)``). On
    Spark ``stratified_sample`` draws Bernoulli rows (``sampleBy`` with fraction
    size/total) and cuts at ``size``: usually fewer. With ``sample_size`` at its
    allowed minimum (``min_customers``, 10) the fit then fails with "too few customers
    to cluster" although the store has 2,000 (measured: seeds 6, 7, 10 and 11 of
    0..11 give 4, 6, 9 and 6 customers)."""
    from orchestration.spark_segmentation import stratified_sample

    customers = _customers(warehouse, 2000)
    sizes = {seed: len(stratified_sample(customers, 10, seed, 2000)) for seed in range(12)}
    assert set(sizes.values()) == {10}, sizes


def test_the_sample_is_stratified_by_monetary_decile(warehouse: SparkWarehouse) -> None:
    """The module promises a sample "stratified by monetary decile, so every band of
    value, the small top one included, is represented in proportion". ``sampleBy``
    with the same fraction in every stratum is a plain Bernoulli sample (the strata
    change nothing), so a decile's share is left to chance; then ``orderBy(id)
    .limit(size)`` drops the highest ids of an overshoot. A stratified sample of 100
    of 2,000 evenly spread customers holds 10 of each decile (9 to 11 at rounding)."""
    import pandas as pd

    from orchestration.spark_segmentation import stratified_sample

    counts = []
    for seed in (1, 2, 3):
        sample = stratified_sample(_customers(warehouse, 2000), 100, seed, 2000)
        counts.append((sample["monetary"] // 100).astype(int).value_counts())
    per_decile = pd.concat(counts, axis=1).fillna(0).astype(int)
    assert per_decile.min().min() >= 9 and per_decile.max().max() <= 11, per_decile.T


def test_run_without_a_source_when_spark_cannot_start_is_one_line(tmp_path: Path) -> None:
    """``insiders run --target spark`` with no ``--source`` first asks whether anything
    is loaded (cli.py ``_run`` -> ``_nothing_loaded`` -> ``warehouse.session()``),
    outside any ``try``: the session's one-line ``WarehouseError`` becomes a Python
    traceback (rc 1). ``insiders load`` with the same setting says it in one line, rc 2."""
    result = _insiders(tmp_path, "run", INSIDERS_SPARK_MASTER="bogus")
    _one_line(result)
    assert result.returncode == 2, result.returncode


def test_a_warehouse_path_with_a_space_works(tmp_path: Path) -> None:
    """A folder with a space (``/Users/Jane Doe/shop``, ``C:\\Program Files``) is an
    ordinary place for a warehouse, and the DuckDB target loads there. On Spark the
    session never starts: spark.py ``session_config`` puts the metastore path
    unquoted into ``spark.driver.extraJavaOptions`` (``-Dderby.system.home=<path>``),
    spark-submit splits it at the space and the JVM looks for a main class named after
    the path's second half ("Could not find or load main class shop.spark.metastore");
    the user sees only "Spark did not start: [JAVA_GATEWAY_EXITED] ...". (In-process
    tests cannot see this: the JVM of a process is launched once, by its first
    session.)"""
    folder = tmp_path / "jane doe shop"
    result = _insiders(folder, "load", str(_data(tmp_path)))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "files loaded: 1" in result.stdout, result.stdout


# --- dbt's incremental marts after a rule change -------------------------------------

CHEAP_LINES = (
    "536370,22728,ALARM CLOCK BAKELIKE PINK,24,2010-12-01 08:45:00,0.50,12583,France",
    "536370,22727,ALARM CLOCK BAKELIKE RED,24,2010-12-01 08:45:00,0.50,12583,France",
)


def test_a_rule_change_that_empties_a_file_leaves_no_stale_lines(
    warehouse: SparkWarehouse, tmp_path: Path
) -> None:
    """fct_transactions is incremental; raising ``unit_price_floor`` changes
    ``rules_version``, so every file is selected again and moves its lines under the
    new rules. A file ALL of whose lines now fall under the floor yields no row, so
    Spark's insert_overwrite (partitioned by source_file) never overwrites its
    partition, and ``spark__delete_stale_lines`` (macros/incremental_lines.sql) drops
    only files whose load changed: it ignores ``rules_version``, which
    ``default__delete_stale_lines`` checks. The file's old lines stay in
    fct_transactions, below the floor, and are counted as sales. DuckDB's table
    equals a full rebuild (checked by hand on the same two files and builds: only
    a.csv's lines remain), as the model's own data test asks (min_value:
    unit_price_floor)."""
    from orchestration.dbt_runner import invoke

    data = tmp_path / "data"
    data.mkdir()
    (data / "a.csv").write_text("\n".join((HEADER, *LINES)) + "\n")
    (data / "b.csv").write_text("\n".join((HEADER, *CHEAP_LINES)) + "\n")
    report = spark_loader.load_files(warehouse, [data])
    assert not report.failed and len(report.loaded) == 2
    select = ["--select", "+fct_transactions", "--exclude-resource-type", "test", "unit_test"]
    for floor in (0.04, 1.0):  # the project's default, then above b.csv's 0.50
        outcome = invoke("build", warehouse, {"unit_price_floor": floor}, select)
        assert outcome.success, outcome.failures
    spark = session(warehouse)
    spark.sql("refresh table marts.fct_transactions")
    left = spark.sql(
        "select source_file, unit_price from marts.fct_transactions where unit_price < 1"
    ).collect()
    assert left == [], left


# --- a killed load, then dbt without a load -----------------------------------------


def test_dbt_after_a_killed_load_does_not_see_its_rows(
    warehouse: SparkWarehouse, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """spark_loader's docstring: a load killed before its ledger switch leaves a
    partition the ledger does not name, removed by the NEXT load; "insiders runs dbt
    after a load in the same process, so dbt never does" see it. But ``insiders
    build`` runs dbt with no load (cli.py ``_build``: the dbt assets only), and
    stg_online_retail__transactions reads every partition of raw.transactions,
    ledger or not: the killed load's copy of a file's lines sits beside the committed
    one, and every line is counted twice. The lines dbt sees must be the ledger's
    (``loaded_rows``: the lines of the last committed load)."""
    from orchestration.dbt_runner import invoke

    data = tmp_path / "data"
    data.mkdir()
    shop = data / "k.csv"
    lines = [
        "536401,22111,SCOTTIE DOG HOT WATER BOTTLE,3,2010-12-01 11:21:00,4.95,13448,Norway",
        "536402,22112,CHOCOLATE HOT WATER BOTTLE,3,2010-12-01 11:22:00,4.95,13449,Norway",
        "536403,22113,GREY HEART HOT WATER BOTTLE,3,2010-12-01 11:23:00,3.75,13450,Norway",
    ]
    shop.write_text("\n".join((HEADER, *lines[:2])) + "\n")
    assert len(spark_loader.load_files(warehouse, [data]).loaded) == 1
    shop.write_text("\n".join((HEADER, *lines)) + "\n")  # changed: a third line

    def killed(*args: object) -> None:
        raise RuntimeError("killed before the ledger switch")

    monkeypatch.setattr(spark_loader, "_switch_ledger", killed)
    with pytest.raises(RuntimeError, match="killed"):
        spark_loader.load_files(warehouse, [data])
    monkeypatch.undo()

    outcome = invoke("run", warehouse, {}, ["--select", "stg_online_retail__transactions"])
    assert outcome.success, outcome.failures
    spark = session(warehouse)
    committed = spark.sql(
        "select sum(loaded_rows) from raw.loaded_files where source_file = :file",
        args={"file": str(shop)},
    ).collect()[0][0]
    seen = spark.sql(
        "select count(*) from staging.stg_online_retail__transactions where source_file = :file",
        args={"file": str(shop)},
    ).collect()[0][0]
    assert committed == 2
    assert seen == committed, f"dbt sees {seen} lines of {shop.name}, the ledger {committed}"


def test_an_unusable_spark_connect_url_fails_in_one_line(tmp_path: Path) -> None:
    """$INSIDERS_SPARK_REMOTE (the documented way to a cluster): spark.py ``session``
    calls ``SparkSession.builder.remote(...).getOrCreate()`` outside the ``try`` that
    guards the local session, so whatever goes wrong there reaches the terminal as a
    traceback. Here (pyspark without Spark Connect's ``grpcio-status``) it is a
    42-line ``PySparkImportError`` traceback, rc 1; with the packages, an unreachable
    server would be a gRPC traceback. One line naming the URL or the missing package,
    rc 2, is the contract."""
    url = "sc://127.0.0.1:1"
    result = _insiders(tmp_path, "load", str(_data(tmp_path)), INSIDERS_SPARK_REMOTE=url)
    line = _one_line(result)
    assert result.returncode == 2, result.returncode
    assert url in line or "grpc" in line, line
