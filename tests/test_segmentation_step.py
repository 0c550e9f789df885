"""The clustering step's wiring: its Dagster settings and what it says when there is
nobody to cluster.

Real DuckDB files and a real dbt build; the expected dates are read from the input
file with plain DuckDB, never from the step's output.
"""

# No ``from __future__ import annotations``: Dagster reads the op's config annotation
# as a class, not as a string.
import dataclasses
import logging
from pathlib import Path

import duckdb
import pytest
from dagster import Out, job, op

from models_py.clustering import ClusteringConfig
from orchestration.dbt_runner import run_dbt
from orchestration.segmentation_asset import (
    NoCustomersError,
    SegmentationConfig,
    run_segmentation,
)
from orchestration.warehouse import connect, load_files

LOG = logging.getLogger("test_segmentation_step")

# Two days of invoices in the daily layout (the real by-day files' format).
DAY_LINES = """InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country
536365,85123A,WHITE HANGING HEART T-LIGHT HOLDER,6,2010-12-01 08:26:00,2.55,17850.0,United Kingdom
536365,71053,WHITE METAL LANTERN,6,2010-12-01 08:26:00,3.39,17850.0,United Kingdom
536366,22633,HAND WARMER UNION JACK,6,2010-12-01 08:28:00,1.85,17850.0,United Kingdom
536367,84879,ASSORTED COLOUR BIRD ORNAMENT,32,2010-12-01 08:34:00,1.69,13047.0,United Kingdom
536368,22960,JAM MAKING SET WITH JARS,6,2010-12-01 08:34:00,4.25,13047.0,United Kingdom
536369,21756,BATH BUILDING BLOCK WORD,3,2010-12-01 08:35:00,5.95,13047.0,United Kingdom
536370,22728,ALARM CLOCK BAKELIKE PINK,24,2010-12-01 08:45:00,3.75,12583.0,France
536371,22086,PAPER CHAIN KIT 50'S CHRISTMAS,80,2010-12-01 09:00:00,2.55,13748.0,United Kingdom
536372,22632,HAND WARMER RED POLKA DOT,6,2010-12-02 09:01:00,1.85,17850.0,United Kingdom
536373,85123A,WHITE HANGING HEART T-LIGHT HOLDER,6,2010-12-02 09:02:00,2.55,17850.0,United Kingdom
536374,21258,VICTORIAN SEWING BOX LARGE,32,2010-12-02 09:09:00,10.95,15100.0,United Kingdom
536375,71053,WHITE METAL LANTERN,6,2010-12-02 09:32:00,3.39,17850.0,United Kingdom
"""


# --- the Dagster settings are ClusteringConfig's, every one ---------------------------

# A valid, non-default value for every ClusteringConfig field (valid together).
ALTERNATIVES: dict[str, object] = {
    "features": ["recency_days", "frequency", "monetary", "tenure_days"],
    "log_features": ["frequency", "monetary"],
    "scaler": "standard",
    "squash": None,
    "spaces": ["pca", "tree"],
    "algorithms": ["kmeans", "ward"],
    "k_min": 3,
    "k_max": 9,
    "business_k_min": 5,
    "business_k_max": 7,
    "min_cluster_share": 0.02,
    "selection_metric": "silhouette_features",
    "sample_size": 5_000,
    "silhouette_sample_size": 1_000,
    "bootstrap_runs": 4,
    "seed": 7,
    "label_batch_size": 5_000,
    "n_jobs": 2,
    "min_customers": 20,
    "pca_variance": 0.8,
    "umap_n_neighbors": 10,
    "umap_min_dist": 0.1,
    "umap_n_components": 3,
    "umap_n_epochs": 100,
    "tree_n_estimators": 50,
    "tree_max_depth": 4,
    "tree_target": "frequency",
    "kmeans_n_init": 5,
    "gmm_reg_covar": 1e-4,
}


def test_defaults_of_the_dagster_settings_are_the_dataclass_defaults():
    assert SegmentationConfig().clustering_config() == ClusteringConfig()
    assert SegmentationConfig().refit is True and SegmentationConfig().keep_models == 3


def test_every_clustering_setting_is_settable_through_dagster_and_round_trips():
    names = {f.name for f in dataclasses.fields(ClusteringConfig)}
    assert set(ALTERNATIVES) == names, "give every ClusteringConfig field a value here"
    defaults = ClusteringConfig().to_dict()
    assert all(ALTERNATIVES[n] != defaults[n] for n in names)

    @op(out=Out(dict))
    def read_settings(config: SegmentationConfig) -> dict:
        return config.clustering_config().to_dict()

    @job
    def settings_job():
        read_settings()

    result = settings_job.execute_in_process(
        run_config={"ops": {"read_settings": {"config": {**ALTERNATIVES, "refit": False}}}}
    )
    assert result.success
    assert result.output_for_node("read_settings") == ALTERNATIVES
    assert ClusteringConfig(**ALTERNATIVES).to_dict() == ALTERNATIVES


# --- nobody to cluster: one line that says why ----------------------------------------


@pytest.fixture(scope="module")
def before_the_data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A warehouse built (up to dim_customers) with as_of 2009-01-01, before its data;
    and the first invoice date, read from the file with plain DuckDB."""
    root = tmp_path_factory.mktemp("before")
    source = root / "2010-12-01.csv"
    source.write_text(DAY_LINES)
    warehouse = root / "wh" / "warehouse.duckdb"
    assert not load_files(warehouse, [source]).failed
    assert run_dbt(
        "build",
        warehouse,
        {"as_of": "2009-01-01"},
        ["--select", "+dim_customers", "--indirect-selection", "buildable"],
    )
    first = (
        duckdb.connect()
        .execute(
            "select cast(min(InvoiceDate) as date) from read_csv(?, header = true)", [str(source)]
        )
        .fetchone()[0]
    )
    return warehouse, first.isoformat()


def test_an_as_of_before_the_first_invoice_says_so(before_the_data):
    warehouse, first = before_the_data
    with pytest.raises(NoCustomersError) as refused:
        run_segmentation(warehouse, SegmentationConfig(), "r1", LOG, as_of="2009-01-01")
    assert str(refused.value) == (
        f"as_of 2009-01-01 is before the first invoice ({first}): "
        "no customer had bought anything by then"
    )
    with pytest.raises(NoCustomersError, match=f"as_of {first} is the day of the first invoice"):
        run_segmentation(warehouse, SegmentationConfig(), "r1", LOG, as_of=first)


def test_no_transactions_loaded_says_what_to_run(tmp_path: Path):
    warehouse = tmp_path / "wh" / "warehouse.duckdb"
    warehouse.parent.mkdir()
    connect(warehouse).close()
    with pytest.raises(NoCustomersError) as refused:
        run_segmentation(warehouse, SegmentationConfig(), "r1", LOG, as_of="2009-01-01")
    assert str(refused.value) == "no transactions loaded: run `insiders load PATH` first"
