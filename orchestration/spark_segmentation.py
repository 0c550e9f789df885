"""The clustering step on Spark: fit on a stratified sample, label everyone in place.

On DuckDB the step reads every customer into pandas; a Spark store may have tens of
millions, so here:

1. **The sample.** At most ``sample_size`` customers (the clustering setting, 20,000 by
   default) are collected to the driver: all of them when there are no more (then the
   fit is the DuckDB target's, customer for customer), else a sample stratified by
   monetary decile (``DataFrame.sampleBy``, seeded), so every band of value, the
   small top one included, is represented in proportion.
2. **The fit** is ``models_py.clustering.segment`` on that sample, exactly as on
   DuckDB: the sweep, the stability, stable cluster ids, names and the Insiders
   cluster; or a saved model is loaded (``refit: false``).
3. **Labelling** runs in Spark's tasks: ``mapInPandas`` applies the fitted pipeline
   (shipped with the function) to each partition of ``marts.dim_customers``, giving
   every customer's cluster and plot coordinates. Nothing of all customers comes to
   the driver; the counts it reports are Spark aggregates.
4. **The write**: every ``ml`` table the run replaces is written by Spark under the
   run's id and switched in (``orchestration.spark_ml``); the plot and the Dagster
   metadata are drawn from the sample.
"""

from __future__ import annotations

import logging
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from models_py.model_store import models_dir
from orchestration.ml_tables import (
    latest_model_run,
    read_previous_centroids,
    recent_model_names,
    segmentation_frames,
)
from orchestration.spark import SparkWarehouse
from orchestration.spark_mirror import mirror

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from models_py.clustering import Segmenter
    from orchestration.segmentation_asset import SegmentationConfig

ID_COLUMN = "customer_id"
STRATA = 10
_LABEL_SCHEMA = (
    "customer_id string, cluster_id int, cluster_name string, is_insider boolean, "
    "x double, y double"
)


def stratified_sample(customers: DataFrame, size: int, seed: int, total: int) -> pd.DataFrame:
    """Exactly ``min(size, total)`` customers as pandas, sorted by id: everyone when
    there are no more, else a seeded sample stratified by monetary decile.

    Proportional allocation (largest remainders, so the strata's sizes add up to
    ``size``); within a stratum the customers with the smallest seeded hash of their id
    are drawn, ranked in Spark's tasks (one sort per stratum), never on the driver."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    if total <= size:
        return customers.orderBy(ID_COLUMN).toPandas()
    edges = customers.approxQuantile("monetary", [i / STRATA for i in range(1, STRATA)], 0.001)
    stratum = F.lit(0)
    for edge in sorted(set(edges)):
        stratum = stratum + (F.col("monetary") > F.lit(float(edge))).cast("int")
    keyed = customers.withColumn("_stratum", stratum)
    counts = {
        r["_stratum"]: r["n"]
        for r in keyed.groupBy("_stratum").agg(F.count("*").alias("n")).collect()
    }
    quota = allocate(counts, size)
    draw = F.xxhash64(F.col(ID_COLUMN).cast("string"), F.lit(int(seed)))
    ranked = keyed.withColumn(
        "_rank",
        F.row_number().over(Window.partitionBy("_stratum").orderBy(draw, ID_COLUMN)),
    )
    wanted = F.lit(0)
    for value, n in quota.items():
        wanted = F.when(F.col("_stratum") == F.lit(value), F.lit(n)).otherwise(wanted)
    sample = ranked.where(F.col("_rank") <= wanted).drop("_stratum", "_rank")
    return sample.orderBy(ID_COLUMN).toPandas()


def allocate(counts: dict[int, int], size: int) -> dict[int, int]:
    """Proportional allocation of ``size`` draws over strata of ``counts``: each its
    share rounded down, the remainder to the largest fractions (ties: lower stratum)."""
    total = sum(counts.values())
    exact = {k: size * n / total for k, n in counts.items()}
    quota = {k: min(counts[k], int(v)) for k, v in exact.items()}
    left = size - sum(quota.values())
    for k in sorted(exact, key=lambda k: (-(exact[k] - int(exact[k])), k)):
        if left <= 0:
            break
        if quota[k] < counts[k]:
            quota[k] += 1
            left -= 1
    return quota


def label_everyone(customers: DataFrame, segmenter: Segmenter) -> DataFrame:
    """Every customer's cluster, name, Insiders flag and plot coordinates, computed in
    Spark's tasks with the fitted ``segmenter`` (pickled with the function)."""
    from models_py.clustering.labelling import labels_frame

    names, insider = segmenter.cluster_names, segmenter.insider_id

    def label(batches: Any) -> Any:
        import numpy as np

        for frame in batches:
            if frame.empty:
                continue
            frame = frame.reset_index(drop=True)
            cluster = np.empty(len(frame), dtype=np.int64)
            coordinates = np.empty((len(frame), 2), dtype=np.float64)
            for batch in segmenter.iter_batches(frame, with_coordinates=True):
                cluster[batch.positions] = segmenter.stable_ids(batch.raw_labels)
                coordinates[batch.positions] = batch.coordinates
            out = labels_frame(frame[ID_COLUMN].astype(str), cluster, names, insider)
            yield out.assign(x=coordinates[:, 0], y=coordinates[:, 1])

    return customers.mapInPandas(label, _LABEL_SCHEMA)


def customer_count(spark: SparkSession) -> int | None:
    """The customers of ``marts.dim_customers``, or None when it does not exist."""
    if not spark.catalog.tableExists("marts.dim_customers"):
        return None
    spark.sql("refresh table marts.dim_customers")
    return spark.table("marts.dim_customers").count()


def raw_summary(spark: SparkSession) -> tuple[int, date | None]:
    """(lines of raw.transactions, the first invoice's date), by Spark."""
    if not spark.catalog.tableExists("raw.transactions"):
        return 0, None
    row = spark.sql(
        "select count(*) as n, cast(min(InvoiceDate) as date) as first from raw.transactions"
    ).collect()[0]
    return int(row["n"]), row["first"]


def run_segmentation_on_spark(
    warehouse: SparkWarehouse,
    config: SegmentationConfig,
    run_id: str,
    log: logging.Logger | Any,
    as_of: date | str | None = None,
    models: Path | None = None,
) -> dict[str, Any]:
    """The clustering step on Spark (see the module docstring); Dagster metadata."""
    from pyspark.sql import functions as F

    from orchestration.segmentation_asset import (
        NoCustomersError,
        _as_date,
        finish,
        fit_or_score,
        segmentation_write,
        why_no_customers,
    )
    from orchestration.spark_ml import switch_tables, table_frame, write_versions

    clustering = config.clustering_config()
    if config.keep_models < 1:
        raise ValueError(f"keep_models must be at least 1, got {config.keep_models}")
    directory = models or models_dir(warehouse)
    spark = warehouse.session()
    total = customer_count(spark)
    if not total:
        rows, first = raw_summary(spark)
        raise NoCustomersError(why_no_customers(rows, first, _as_date(as_of), total is not None))
    customers = spark.table("marts.dim_customers")
    sample = stratified_sample(customers, clustering.sample_size, clustering.seed, total)
    log.info(f"clustering: {len(sample)} of {total} customers sampled to the driver")
    with mirror(warehouse) as con:
        previous = read_previous_centroids(con)
        saved_run = None if config.refit else latest_model_run(con)

    outcome, model_path, sha256 = fit_or_score(
        sample, clustering, previous, saved_run, config.refit, directory, run_id, log
    )
    as_of_customers = pd.Timestamp(sample["as_of"].max()).date()

    labelled = label_everyone(customers, outcome.segmenter)
    stamp = [F.lit(as_of_customers).alias("as_of"), F.lit(run_id).alias("run_id")]
    segments = labelled.select(
        ID_COLUMN, "cluster_id", "cluster_name", "is_insider", *stamp,
        F.lit(outcome.model_name).alias("model"),
    )  # fmt: skip
    embedding = labelled.select(ID_COLUMN, "x", "y", "cluster_id", *stamp)
    write = segmentation_write(outcome, run_id, as_of_customers, model_path, sha256)
    # The labels are written first (a version nobody reads yet), so the run's counts
    # come from them; every table is switched at the end.
    written = write_versions(spark, warehouse, {"customer_segments": segments}, run_id)
    counted = (
        spark.read.parquet(written["customer_segments"])
        .agg(F.count("*").alias("n"), F.sum(F.col("is_insider").cast("int")).alias("i"))
        .collect()[0]
    )
    replaced, appended = segmentation_frames(
        write, customers=int(counted["n"]), insiders=int(counted["i"] or 0)
    )
    frames: dict[str, DataFrame] = {"customer_embedding": embedding}
    selection = replaced["model_selection"]
    if selection is not None:
        frames["model_selection"] = _spark_frame(spark, selection, "model_selection")
    for table, rows in appended.items():
        frames[table] = table_frame(spark, table).unionByName(_spark_frame(spark, rows, table))
    # History tables are read and rewritten: materialise before their switch.
    written.update(write_versions(spark, warehouse, frames, run_id))
    switch_tables(spark, warehouse, written)
    with mirror(warehouse) as con:
        keep = recent_model_names(con, config.keep_models)
    metadata = finish(
        outcome, directory, model_path, keep, config.keep_models, as_of_customers, log
    )
    metadata.update(customers=int(counted["n"]), insiders=int(counted["i"] or 0))
    metadata["sampled_customers"] = len(sample)
    return metadata


def _spark_frame(spark: SparkSession, rows: pd.DataFrame, table: str) -> DataFrame:
    """A pandas frame of ``ml.<table>`` rows as a Spark DataFrame of the table's types
    (an explicit schema: a column of nulls has no type to infer)."""
    from orchestration.ml_tables import ML_COLUMNS, check_columns
    from orchestration.spark_ml import spark_schema

    columns = check_columns(table, rows)
    assert columns == list(ML_COLUMNS[table])
    return spark.createDataFrame(rows[columns], schema=spark_schema(table))
