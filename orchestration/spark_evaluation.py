"""The rolling-origin evaluation on Spark when the customers outnumber the sample.

Up to ``sample_size`` customers (the clustering's setting) the step runs as on DuckDB,
its reads copied to the driver (``orchestration.spark_mirror``): they are at most that
many customers, and the tables are DuckDB's, customer for customer. Beyond it, nothing
of every customer comes to the driver:

1. **Learn on the sample.** The clustering's sample (the same setting, seed and strata:
   ``spark_segmentation.stratified_sample``) is evaluated exactly as on DuckDB
   (``models_py.rolling_evaluation.evaluate``, or ``score_current`` on a daily run),
   which keeps what it learned at each date (:class:`~models_py.rolling_evaluation.
   Learned`): the chosen clustering refitted on the data before the date, the BG/NBD +
   Gamma-Gamma estimates, the trained revenue model, the trend and season factors.
2. **Apply to everyone in Spark's tasks** (``mapInPandas``, the models shipped with the
   function): each date's customers are labelled by that date's clustering (at the
   as-of: the clustering step's labels), scored by that date's expected-revenue
   parameters and revenue model. The as-of's scores are ``ml.customer_forecast``.
3. **Decide in Spark SQL**: each definition's members at each date, as many as the
   date's Insiders cluster, ranked as ``select_members`` ranks (score, then past
   revenue, then id); the sums of each group at each date. Python gets one row per
   date and group: the origins' shares (the random groups' range by
   ``random_groups_normal``), the group forecasts and their intervals.
4. **Explain on the sample**: the entry rules and the evidence compare the sample's
   members (of the whole population's groups) with the sample's others.
5. **Write**: each ``ml`` table of the step as a new version, then switched in
   (``orchestration.spark_ml``).
"""

from __future__ import annotations

import dataclasses
import time
from datetime import date
from functools import reduce
from typing import TYPE_CHECKING, Any

import pandas as pd

from models_py.insiders_definitions import (
    CLUSTER,
    EXPECTED,
    SCORES,
    TRAINED,
    definition_row,
    evaluation_frame,
    random_groups_normal,
)
from models_py.rolling_evaluation import (
    ALL_CUSTOMERS,
    Evaluation,
    Learned,
    evaluate,
    evaluation_table,
    explain_members,
    extend_forecasts,
    forecast_table,
    group_row,
    horizon_months,
    refit_specification,
    score_current,
)
from orchestration.spark import SparkWarehouse

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

# The Spark temporary view of the sample's customer ids (the sampled mirror reads it).
SAMPLE_VIEW = "insiders_evaluation_sample"
_FORECAST_COLUMNS = (
    "customer_id",
    "probability_alive",
    "expected_purchases",
    "expected_spend",
    "expected_revenue",
)


def _day(value: Any) -> date:
    return pd.Timestamp(value).date()


def run_evaluation_on_spark(
    warehouse: SparkWarehouse, n_random: int, confidence: float, seed: int, log: Any, refit: bool
) -> dict[str, Any] | None:
    """The step on Spark beyond ``sample_size`` customers (the module docstring); its
    Dagster metadata, or None when the customers are no more than the sample (the
    caller then runs the DuckDB path over the mirror)."""
    from orchestration.insiders_steps import (
        _clustering_config,
        _current_run,
        _metadata,
        _parameter_rows,
        read_current_inputs,
        read_inputs,
        saved_or_refit,
    )
    from orchestration.ml_tables import recorded_run
    from orchestration.spark_mirror import mirror
    from orchestration.spark_segmentation import customer_count, stratified_sample

    spark = warehouse.session()
    first = spark.table("ml.customer_segments").select("run_id").limit(1).collect()
    run = None
    if first:
        with mirror(warehouse) as con:
            run = recorded_run(con, str(first[0]["run_id"]))
    if run is None or not run.chosen:
        raise ValueError("no clustering run yet: materialise ml/customer_segments first")
    clustering = _clustering_config(run.config)
    total = customer_count(spark) or 0
    if total <= clustering.sample_size:
        return None

    customers = stratified_sample(
        spark.table("marts.dim_customers"), clustering.sample_size, clustering.seed, total
    )
    ids = customers[["customer_id"]].astype(str)
    spark.createDataFrame(ids, "customer_id string").createOrReplaceTempView(SAMPLE_VIEW)
    sampled = dataclasses.replace(warehouse, sample=SAMPLE_VIEW)
    log.info(f"analytics: models learned on {len(ids)} of {total} customers, applied in Spark")

    run_id, as_of, clustering, chosen, labels = _current_run(sampled)
    current = _day(as_of)
    spec = refit_specification(clustering, chosen)
    saved = saved_or_refit(sampled, refit, current, log)
    started = time.perf_counter()
    if saved is None:
        inputs = read_inputs(sampled)
        result = evaluate(
            inputs, labels, customers, current, spec, n_random=n_random,
            confidence=confidence, seed=seed, log=log, explain=False,
        )  # fmt: skip
    else:
        log.info(f"refit: false, scoring with the forecast parameters of {saved.as_of}")
        inputs = read_current_inputs(sampled, current)
        result = score_current(
            inputs, labels, customers, current, saved, spec, seed=seed, explain=False
        )
    dates = inputs.dates
    horizon_end = dates.set_index("evaluation_date")["horizon_end"]
    origins = inputs.origins if saved is None else set()

    members: DataFrame | None = None
    expected = _expected(spark, result.learned).persist()
    scored = _scored(spark, result.learned, current, expected).persist()
    try:
        sizes = _cluster_sizes(scored)
        available = _available(result.learned)
        members = _members(scored, sizes, available).persist()
        sums = _group_sums(scored, members)
        rows = _forecast_rows(sums, available, result.learned)
        if saved is None:
            evaluation = evaluation_table(
                _evaluation_rows(sums, available, sorted(origins & set(sizes)), confidence),
                horizon_end,
            )
            forecasts = forecast_table(rows, origins, horizon_end, result.parameters)
            every_member = members
        else:
            evaluation = saved.evaluation
            end = _day(horizon_end[current])
            forecasts = extend_forecasts(saved, rows, end, result.parameters)
            every_member = _kept_members(spark, saved.as_of).unionByName(members)
        rules, evidence = explain_members(customers, _sample_members(spark, members, current), seed)
        seconds = time.perf_counter() - started
        _write(
            spark, warehouse, run_id, current,
            result=result,
            members=every_member,
            evaluation=evaluation,
            forecasts=forecasts,
            customer_forecast=_customer_forecast(expected, current, _day(horizon_end[current])),
            rules=rules,
            evidence=evidence,
            parameters=None if saved is not None else _parameter_rows(result.posterior),
        )  # fmt: skip
    finally:
        for cached in (members, scored, expected):
            if cached is not None:
                cached.unpersist()
    metadata = _metadata(evaluation, forecasts, current, seconds)
    metadata["refit"] = saved is None
    metadata["parameters_as_of"] = str(current if saved is None else saved.as_of)
    metadata["sampled_customers"] = len(ids)
    metadata["customers"] = total
    metadata["horizon_months"] = horizon_months(dates)
    # A date the sample could not decide (too few of its customers known then) has no
    # rows; on the whole population it might have been decided. Said, not hidden.
    undecided = sorted(set(dates["evaluation_date"]) - set(result.learned))
    if saved is None and undecided:
        log.info(
            f"{len(undecided)} evaluation dates not decided on the sample: "
            + ", ".join(str(d) for d in undecided)
        )
    metadata["dates_not_decided"] = len(undecided) if saved is None else 0
    return metadata


# --- 2. everyone scored in Spark's tasks ---------------------------------------------


def _scored(
    spark: SparkSession, learned: dict[date, Learned], current: date, expected: DataFrame
) -> DataFrame:
    """One row per customer known at each decided date: the SQL scores, the horizon's
    revenue, the date's Insiders-cluster flag, expected revenue and trained prediction
    (null at a date without that model)."""
    from pyspark.sql import functions as F

    from orchestration.insiders_steps import SCORES as SCORES_RELATION

    decided = sorted(learned)
    scores = spark.table(SCORES_RELATION).where(F.col("evaluation_date").isin(decided))
    frame = scores.select(
        F.col("customer_id").cast("string").alias("customer_id"),
        F.col("evaluation_date").cast("date").alias("evaluation_date"),
        *[
            F.col(c).cast("double").alias(c)
            for c in (
                "past_net_revenue", "recent_net_revenue", "recency_weighted_revenue",
                "rfm_points", "horizon_net_revenue",
            )
        ],
    ).withColumn(
        "past_plus_recent_revenue", F.col("past_net_revenue") + F.col("recent_net_revenue")
    )  # fmt: skip
    keys = ["customer_id", "evaluation_date"]
    flags = _cluster_flags(spark, learned, current)
    expected = expected.select(*keys, F.col("expected_revenue"))
    trained = _trained(spark, learned)
    with_posterior = [d for d, x in learned.items() if x.posterior]
    with_model = [d for d, x in learned.items() if x.revenue_model is not None]
    date = F.col("evaluation_date")
    return (
        frame.join(flags, keys, "left")
        .join(expected, keys, "left")
        .join(trained, keys, "left")
        .withColumn("in_cluster", F.coalesce(F.col("in_cluster"), F.lit(False)))
        .withColumn(  # select_members: a customer the model did not score has 0
            SCORES[EXPECTED],
            F.when(date.isin(with_posterior), F.coalesce(F.col("expected_revenue"), F.lit(0.0))),
        )
        .withColumn(
            SCORES[TRAINED],
            F.when(date.isin(with_model), F.coalesce(F.col("_trained"), F.lit(0.0))),
        )
        .drop("_trained")
    )


def _cluster_flags(spark: SparkSession, learned: dict[date, Learned], current: date) -> DataFrame:
    """(customer_id, evaluation_date, in_cluster): each past date's customers labelled by
    the clustering refitted at it; the as-of's are the clustering step's labels."""
    from pyspark.sql import functions as F

    from orchestration.insiders_steps import EVALUATION_FEATURES

    schema = "customer_id string, evaluation_date date, in_cluster boolean"
    refitted = {d: x.segmenter for d, x in learned.items() if x.segmenter is not None}
    parts = []
    if refitted:

        def label(batches: Any) -> Any:
            for frame in batches:
                for day, rows in frame.groupby("evaluation_date", sort=False):
                    rows = rows.reset_index(drop=True)
                    labelled = refitted[_day(day)].label(rows)
                    yield pd.DataFrame(
                        {
                            "customer_id": rows["customer_id"].astype(str).to_numpy(),
                            "evaluation_date": _day(day),
                            "in_cluster": labelled["is_insider"].to_numpy(dtype=bool),
                        }
                    )

        features = spark.table(EVALUATION_FEATURES).where(
            F.col("evaluation_date").isin(sorted(refitted))
        )
        parts.append(features.mapInPandas(label, schema))
    if current in learned and learned[current].segmenter is None:
        parts.append(
            spark.table("ml.customer_segments").select(
                F.col("customer_id").cast("string").alias("customer_id"),
                F.lit(current).cast("date").alias("evaluation_date"),
                F.col("is_insider").alias("in_cluster"),
            )
        )
    if not parts:
        return spark.createDataFrame([], schema)
    return reduce(lambda a, b: a.unionByName(b), parts)


def _expected(spark: SparkSession, learned: dict[date, Learned]) -> DataFrame:
    """BG/NBD + Gamma-Gamma over each date's horizon, with that date's estimates, for
    every customer with a history at it (per partition and date: the formulas are
    per customer once the parameters are known)."""
    from pyspark.sql import functions as F

    from orchestration.insiders_steps import PURCHASE_HISTORIES

    posteriors = {d: x.posterior for d, x in learned.items() if x.posterior}
    schema = (
        "customer_id string, probability_alive double, expected_purchases double, "
        "expected_spend double, expected_revenue double, evaluation_date date"
    )

    def score(batches: Any) -> Any:
        from models_py.forecast import score_revenue

        for frame in batches:
            for day, rows in frame.groupby("evaluation_date", sort=False):
                rows = rows.reset_index(drop=True)
                horizon = int(rows["horizon_days"].iloc[0])
                fit = score_revenue(rows, horizon, posteriors[_day(day)])
                out = fit.customers[list(_FORECAST_COLUMNS)].copy()
                out["customer_id"] = out["customer_id"].astype(str)
                yield out.assign(evaluation_date=_day(day))

    histories = spark.table(PURCHASE_HISTORIES).where(
        F.col("evaluation_date").isin(sorted(posteriors))
    )
    return histories.withColumn("customer_id", F.col("customer_id").cast("string")).mapInPandas(
        score, schema
    )


def _trained(spark: SparkSession, learned: dict[date, Learned]) -> DataFrame:
    """(customer_id, evaluation_date, _trained): each date's revenue model's prediction
    for the customers known at it (the model was trained on the sample's earlier
    horizons)."""
    from pyspark.sql import functions as F

    from models_py.revenue_model import FEATURES
    from orchestration.insiders_steps import EVALUATION_FEATURES
    from orchestration.insiders_steps import SCORES as SCORES_RELATION

    models = {d: x.revenue_model for d, x in learned.items() if x.revenue_model is not None}
    schema = "customer_id string, evaluation_date date, _trained double"
    if not models:
        return spark.createDataFrame([], schema)

    def predict(batches: Any) -> Any:
        from models_py.revenue_model import predict_with

        for frame in batches:
            for day, rows in frame.groupby("evaluation_date", sort=False):
                predicted = predict_with(models[_day(day)], rows.reset_index(drop=True))
                yield pd.DataFrame(
                    {
                        "customer_id": predicted.index.astype(str),
                        "evaluation_date": _day(day),
                        "_trained": predicted.to_numpy(dtype=float),
                    }
                )

    wanted = F.col("evaluation_date").isin(sorted(models))
    scores = spark.table(SCORES_RELATION).where(wanted).alias("s")
    features = spark.table(EVALUATION_FEATURES).where(wanted).alias("f")
    columns = [
        F.col(f"s.{c}" if c in scores.columns else f"f.{c}").alias(c)
        for c in ("customer_id", "evaluation_date", *FEATURES)
    ]
    rows = scores.join(
        features, F.col("s.customer_evaluation_id") == F.col("f.customer_evaluation_id")
    ).select(*columns)
    return rows.withColumn("customer_id", F.col("customer_id").cast("string")).mapInPandas(
        predict, schema
    )


# --- 3. the decisions and sums in Spark SQL ------------------------------------------


def _cluster_sizes(scored: DataFrame) -> dict[date, int]:
    """The Insiders cluster's size at each date: how many every definition picks."""
    from pyspark.sql import functions as F

    counts = scored.groupBy("evaluation_date").agg(
        F.sum(F.col("in_cluster").cast("int")).alias("n")
    )
    return {_day(r["evaluation_date"]): int(r["n"] or 0) for r in counts.collect()}


def _available(learned: dict[date, Learned]) -> dict[str, list[date]]:
    """The dates each definition exists at (``select_members``: the model-based ones
    only where their model was fitted)."""
    decided = sorted(learned)
    out = {CLUSTER: decided}
    for definition in SCORES:
        if definition == EXPECTED:
            out[definition] = [d for d in decided if learned[d].posterior]
        elif definition == TRAINED:
            out[definition] = [d for d in decided if learned[d].revenue_model is not None]
        else:
            out[definition] = decided
    return out


def _members(
    scored: DataFrame, sizes: dict[date, int], available: dict[str, list[date]]
) -> DataFrame:
    """``ml.definition_members`` rows (without the stamp): the Insiders cluster in id
    order, and each ranking definition's top customers, as many as the cluster, by its
    score, then past net revenue, then id (``insiders_definitions.top_n``)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    date = F.col("evaluation_date")
    size = F.lit(0)
    for day, n in sizes.items():
        size = F.when(date == F.lit(day), F.lit(n)).otherwise(size)
    columns = ["evaluation_date", "definition", "customer_id", "member_rank"]
    cluster = scored.where(F.col("in_cluster")).withColumn(
        "member_rank",
        F.row_number().over(Window.partitionBy("evaluation_date").orderBy("customer_id")),
    )
    parts = [cluster.withColumn("definition", F.lit(CLUSTER)).select(*columns)]
    for definition, column in SCORES.items():
        if not available[definition]:
            continue
        order = Window.partitionBy("evaluation_date").orderBy(
            F.coalesce(F.col(column), F.lit(float("-inf"))).desc(),
            F.col("past_net_revenue").desc(),
            F.col("customer_id").asc(),
        )
        ranked = scored.where(date.isin(available[definition])).withColumn(
            "member_rank", F.row_number().over(order)
        )
        parts.append(
            ranked.where(F.col("member_rank") <= size)
            .withColumn("definition", F.lit(definition))
            .select(*columns)
        )
    return reduce(lambda a, b: a.unionByName(b), parts).withColumn(
        "member_rank", F.col("member_rank").cast("int")
    )


def _group_sums(scored: DataFrame, members: DataFrame) -> pd.DataFrame:
    """Per date and group (each definition's members, and everyone): customers, the
    sums of last-horizon, horizon and expected revenue, how many horizons are known,
    and (everyone's row) the horizon revenue's variance. One row per date and group."""
    from pyspark.sql import functions as F

    sums = [
        F.count("*").alias("customers"),
        F.sum("recent_net_revenue").alias("naive"),
        F.sum("horizon_net_revenue").alias("horizon"),
        F.count("horizon_net_revenue").alias("known"),
        F.sum(SCORES[EXPECTED]).alias("model"),
        F.var_samp("horizon_net_revenue").alias("variance"),
    ]
    groups = members.join(scored, ["customer_id", "evaluation_date"]).groupBy(
        "evaluation_date", "definition"
    )
    everyone = scored.groupBy("evaluation_date").agg(*sums)
    frame = groups.agg(*sums).unionByName(
        everyone.withColumn("definition", F.lit(ALL_CUSTOMERS)), allowMissingColumns=True
    )
    out = frame.toPandas()
    out["evaluation_date"] = out["evaluation_date"].map(_day)
    return out.set_index(["evaluation_date", "definition"]).sort_index()


def _groups_at(sums: pd.DataFrame, available: dict[str, list[date]], day: date) -> list[str]:
    """The groups at ``day`` in the report's order (the definitions, ``select_members``'
    order; empty groups included)."""
    return [d for d in (CLUSTER, *SCORES) if day in available[d]]


def _sum_row(sums: pd.DataFrame, day: date, group: str) -> dict[str, Any]:
    key = (day, group)
    if key not in sums.index:  # a definition with no member at that date
        return {"customers": 0, "naive": 0.0, "horizon": 0.0, "known": 0, "model": 0.0}
    return {k: (None if pd.isna(v) else v) for k, v in sums.loc[key].items()}


def _forecast_rows(
    sums: pd.DataFrame, available: dict[str, list[date]], learned: dict[date, Learned]
) -> list[dict[str, Any]]:
    """Each date's group rows (``rolling_evaluation.group_row``) from the sums."""
    rows = []
    for day in sorted(learned):
        for group in [*_groups_at(sums, available, day), ALL_CUSTOMERS]:
            found = _sum_row(sums, day, group)
            rows.append(
                group_row(
                    day,
                    group,
                    customers=int(found["customers"]),
                    naive=float(found["naive"] or 0.0),
                    model=float(found["model"] or 0.0) if learned[day].posterior else None,
                    actual=float(found["horizon"] or 0.0)
                    if int(found["known"]) == int(found["customers"])
                    else None,
                    adjust=learned[day].adjustment,
                )
            )
    return rows


def _evaluation_rows(
    sums: pd.DataFrame, available: dict[str, list[date]], origins: list[date], confidence: float
) -> list[pd.DataFrame]:
    """Each origin's evaluation (``insiders_definitions.evaluation_frame``) from the
    sums; the random groups by the normal approximation."""
    out = []
    for day in origins:
        everyone = _sum_row(sums, day, ALL_CUSTOMERS)
        known, total = int(everyone["customers"]), float(everyone["horizon"] or 0.0)
        if int(everyone["known"]) != known:
            continue  # the horizon is not over: nothing to evaluate
        rows, size = [], 0
        for group in _groups_at(sums, available, day):
            found = _sum_row(sums, day, group)
            size = max(size, int(found["customers"]))
            rows.append(
                definition_row(group, int(found["customers"]), float(found["horizon"] or 0.0))
            )
        rows.append(
            random_groups_normal(known, total, float(everyone["variance"] or 0.0), size, confidence)
        )
        out.append(evaluation_frame(rows, known, total, confidence).assign(origin_date=day))
    return out


def _kept_members(spark: SparkSession, before: date) -> DataFrame:
    """The saved refit's members of the dates before its as-of (a daily run keeps them)."""
    from pyspark.sql import functions as F

    from orchestration.spark_ml import table_frame

    return (
        table_frame(spark, "definition_members")
        .where(F.col("evaluation_date") < F.lit(before))
        .select("evaluation_date", "definition", "customer_id", "member_rank")
    )


def _sample_members(spark: SparkSession, members: DataFrame, current: date) -> dict[str, list[str]]:
    """The as-of's members of each definition among the sample, in rank order."""
    from pyspark.sql import functions as F

    rows = (
        members.where(F.col("evaluation_date") == F.lit(current))
        .join(spark.table(SAMPLE_VIEW), "customer_id", "left_semi")
        .select("definition", "customer_id", "member_rank")
        .toPandas()
        .sort_values(["definition", "member_rank"])
    )
    return {
        definition: rows.loc[rows["definition"] == definition, "customer_id"].astype(str).tolist()
        for definition in [CLUSTER, *SCORES]
        if (rows["definition"] == definition).any()
    }


def _customer_forecast(expected: DataFrame, current: date, end: date) -> DataFrame:
    """``ml.customer_forecast`` (without the stamp): the as-of's expectations."""
    from pyspark.sql import functions as F

    return expected.where(F.col("evaluation_date") == F.lit(current)).select(
        *_FORECAST_COLUMNS,
        F.lit(current).cast("date").alias("forecast_start"),
        F.lit(end).cast("date").alias("forecast_end"),
    )


# --- 5. the write --------------------------------------------------------------------


def _write(
    spark: SparkSession,
    warehouse: SparkWarehouse,
    run_id: str,
    as_of: date,
    *,
    result: Evaluation,
    members: DataFrame,
    evaluation: pd.DataFrame,
    forecasts: pd.DataFrame,
    customer_forecast: DataFrame,
    rules: list[pd.DataFrame],
    evidence: list[pd.DataFrame],
    parameters: pd.DataFrame | None,
) -> None:
    """Every ``ml`` table of the step as a new version, then switched in."""
    from pyspark.sql import functions as F

    from orchestration.spark_ml import switch_tables, write_versions
    from orchestration.spark_segmentation import _spark_frame

    stamp = {"run_id": run_id, "as_of": as_of}
    small = {
        "insiders_definitions": result.definitions,
        "definition_evaluation": evaluation,
        "group_forecasts": forecasts,
        "eligibility_rules": pd.concat(rules, ignore_index=True),
        "group_evidence": pd.concat(evidence, ignore_index=True),
    }
    if parameters is not None:
        small["forecast_parameters"] = parameters
    frames: dict[str, Any] = {
        table: _spark_frame(spark, rows.assign(**stamp), table) for table, rows in small.items()
    }
    lit = [F.lit(as_of).cast("date").alias("as_of"), F.lit(run_id).alias("run_id")]
    frames["definition_members"] = members.select(*members.columns, *lit)
    frames["customer_forecast"] = customer_forecast.select(*customer_forecast.columns, *lit)
    switch_tables(spark, warehouse, write_versions(spark, warehouse, frames, run_id))
