"""The clustering step's model files: loaded only from the model directory and only with
the checksum their run recorded; kept for the last runs only.

A joblib file is a pickle, and unpickling runs code. The "evil" files here are real
pickles whose ``__reduce__`` creates a marker file when unpickled: each refusal test
asserts the marker does NOT exist, i.e. that the file was refused without being
unpickled, and a sanity test shows that the same payload does create its marker when
loaded the old way (``joblib.load``), so the tests could fail.

The step-level tests run the real clustering step on copies of the session's demo
warehouse (real DuckDB, real dbt build); expected files are derived from
``ml.segmentation_runs`` with plain DuckDB.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
from pathlib import Path

import joblib
import pytest

from models_py.clustering import fit_segmentation
from models_py.model_store import (
    ModelStoreError,
    load_model,
    model_name,
    models_dir,
    prune_models,
    save_model,
    save_plot,
)
from orchestration.segmentation_asset import SegmentationConfig, run_segmentation
from tests.conftest import query, scalar
from tests.test_clustering import FAST, make_customers

LOG = logging.getLogger("test_model_store")
# A small, quick search for the step-level tests (the demo warehouse has 300 customers).
SMALL = {"spaces": ["pca"], "algorithms": ["kmeans"], "k_max": 8, "bootstrap_runs": 0}


class _Payload:
    """Unpickling this creates ``marker``: what an attacker's model file would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):  # type: ignore[override]
        return (open, (self.marker, "w"))


def evil_file(path: Path, marker: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    joblib.dump(_Payload(marker), path)
    return path


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def segmenter():
    return fit_segmentation(make_customers(per_group=40, seed=4), FAST).segmenter


def test_the_evil_payload_does_run_when_unpickled(tmp_path: Path):
    marker = tmp_path / "ran"
    joblib.load(evil_file(tmp_path / "evil.joblib", marker))
    assert marker.exists()


def test_a_saved_model_loads_back_with_its_checksum(segmenter, tmp_path: Path):
    directory = tmp_path / "models"
    stored = save_model(segmenter, directory, "run-1")
    assert stored.name == "run-1.joblib" and stored.path == directory / "run-1.joblib"
    assert stored.sha256 == sha256(stored.path)
    loaded = load_model(directory, stored.name, stored.sha256, "run-1")
    customers = make_customers(per_group=10, seed=9)
    assert loaded.label(customers).equals(segmenter.label(customers))
    assert [p.name for p in directory.iterdir()] == ["run-1.joblib"]  # no temporary left


def test_a_tampered_model_file_is_refused_without_unpickling(segmenter, tmp_path: Path):
    directory, marker = tmp_path / "models", tmp_path / "ran"
    stored = save_model(segmenter, directory, "run-1")
    evil_file(stored.path, marker)  # same name, other bytes
    with pytest.raises(ModelStoreError) as refused:
        load_model(directory, stored.name, stored.sha256, "run-1")
    assert str(refused.value) == (
        f"model file {stored.path} does not match the checksum recorded by run run-1: "
        "refusing to load it"
    )
    assert not marker.exists()


@pytest.mark.parametrize("where", ["absolute", "dotdot", "subdir", "symlink", "empty"])
def test_a_model_outside_the_model_directory_is_refused(where: str, tmp_path: Path):
    directory, marker = tmp_path / "wh" / "models", tmp_path / "ran"
    directory.mkdir(parents=True)
    evil = evil_file(tmp_path / "evil.joblib", marker)
    stored = {
        "absolute": str(evil),
        "dotdot": "../../evil.joblib",
        "subdir": "sub/evil.joblib",
        "symlink": "link.joblib",
        "empty": "",
    }[where]
    if where == "symlink":
        (directory / "link.joblib").symlink_to(evil)
    if where == "subdir":
        evil_file(directory / "sub" / "evil.joblib", marker)
    # Even with the right checksum of the evil bytes recorded beside the path.
    with pytest.raises(ModelStoreError, match="refusing to load it") as refused:
        load_model(directory, stored, sha256(evil), "run-1")
    assert "\n" not in str(refused.value)
    assert not marker.exists()


def test_a_model_without_a_recorded_checksum_or_that_is_no_segmenter_is_refused(
    tmp_path: Path,
):
    directory = tmp_path / "models"
    directory.mkdir()
    joblib.dump({"a": 1}, directory / "old.joblib")
    with pytest.raises(ModelStoreError, match="recorded no checksum"):
        load_model(directory, "old.joblib", None, "run-0")
    with pytest.raises(ModelStoreError, match="does not hold a Segmenter"):
        load_model(directory, "old.joblib", sha256(directory / "old.joblib"), "run-0")
    with pytest.raises(ModelStoreError, match="cannot name a model file"):
        model_name("../x")


def test_a_plot_replaces_a_planted_link_instead_of_writing_through_it(tmp_path: Path):
    directory = tmp_path / "models"
    directory.mkdir()
    outside = tmp_path / "outside.txt"
    outside.write_text("keep me")
    (directory / "r1.png").symlink_to(outside)
    path = save_plot(directory, "r1.joblib", b"png bytes")
    assert path == directory / "r1.png" and not path.is_symlink()
    assert path.read_bytes() == b"png bytes" and outside.read_text() == "keep me"


def test_prune_keeps_only_the_named_models(tmp_path: Path):
    directory = tmp_path / "models"
    directory.mkdir()
    for run in ("r1", "r2", "r3", "killed"):
        (directory / f"{run}.joblib").write_bytes(b"m")
        (directory / f"{run}.png").write_bytes(b"p")
    (directory / ".saving-abc").write_bytes(b"half")  # an interrupted save
    (directory / "notes.txt").write_text("not ours")
    (directory / "sub").mkdir()
    outside = tmp_path / "outside.joblib"
    outside.write_bytes(b"x")
    (directory / "link.joblib").symlink_to(outside)
    removed = prune_models(directory, ["r3.joblib", "/old/absolute/r2.joblib"])
    assert sorted(p.name for p in directory.iterdir()) == [
        "notes.txt",
        "r2.joblib",
        "r2.png",
        "r3.joblib",
        "r3.png",
        "sub",
    ]
    assert {p.name for p in removed} == {
        "r1.joblib",
        "r1.png",
        "killed.joblib",
        "killed.png",
        ".saving-abc",
        "link.joblib",
    }
    assert outside.exists()  # a link is removed as a link, never followed


# --- the clustering step ------------------------------------------------------------


@pytest.fixture
def warehouse(demo_warehouse: Path, tmp_path: Path) -> Path:
    """A copy of the session's demo warehouse (with its WAL: dbt may still hold it)."""
    copy = tmp_path / "wh" / "warehouse.duckdb"
    copy.parent.mkdir()
    shutil.copyfile(demo_warehouse, copy)
    wal = demo_warehouse.with_name(demo_warehouse.name + ".wal")
    if wal.exists():
        shutil.copyfile(wal, copy.with_name(copy.name + ".wal"))
    return copy


def _run(warehouse: Path, run_id: str, **settings) -> dict:
    config = SegmentationConfig(**{**SMALL, **settings})
    return run_segmentation(warehouse, config, run_id, LOG)


def test_the_step_records_a_file_name_and_checksum_and_reuses_the_model(warehouse: Path):
    _run(warehouse, "r1")
    path, digest = query(warehouse, "select model_path, model_sha256 from ml.segmentation_runs")[0]
    model = models_dir(warehouse) / "r1.joblib"
    assert path == "r1.joblib" and digest == sha256(model)
    before = query(warehouse, "select customer_id, cluster_id from ml.customer_segments order by 1")
    _run(warehouse, "r2", refit=False)
    assert query(
        warehouse,
        "select model_path, model_sha256, refit from ml.segmentation_runs where run_id = 'r2'",
    ) == [("r1.joblib", digest, False)]
    after = query(warehouse, "select customer_id, cluster_id from ml.customer_segments order by 1")
    assert after == before


@pytest.mark.parametrize("attack", ["path", "file"])
def test_the_step_refuses_a_tampered_record_or_file_without_unpickling(
    attack: str, warehouse: Path, tmp_path: Path
):
    _run(warehouse, "r1")
    marker = tmp_path / "ran"
    if attack == "path":  # someone who can write the warehouse points it elsewhere
        evil = evil_file(tmp_path / "evil.joblib", marker)
        con_sql = (
            f"update ml.segmentation_runs set model_path = '{evil}', "
            f"model_sha256 = '{sha256(evil)}'"
        )
        query(warehouse, con_sql)
        expected = "is not a file name in"
    else:  # someone who can write the model directory replaces the model
        evil_file(models_dir(warehouse) / "r1.joblib", marker)
        expected = "does not match the checksum recorded by run r1: refusing to load it"
    labels = query(warehouse, "select * from ml.customer_segments order by customer_id")
    with pytest.raises(ModelStoreError, match=expected):
        _run(warehouse, "r2", refit=False)
    assert not marker.exists()
    assert query(warehouse, "select * from ml.customer_segments order by customer_id") == labels
    assert scalar(warehouse, "select count(*) from ml.segmentation_runs") == 1


def test_models_of_the_last_runs_are_kept_and_the_others_removed(warehouse: Path):
    directory = models_dir(warehouse)
    directory.mkdir()
    # What a run killed after saving its model (never recorded) leaves behind.
    (directory / "killed.joblib").write_bytes(b"half a model")
    (directory / "killed.png").write_bytes(b"picture")
    for run_id in ("r1", "r2", "r3"):
        _run(warehouse, run_id, keep_models=2)
    _run(warehouse, "r4", keep_models=2, refit=False)  # records r3's model again
    kept = query(
        warehouse,
        "select distinct model_path from (select model_path from ml.segmentation_runs "
        "order by created_at desc limit 2)",
    )
    expected = {stem for (name,) in kept for stem in (name, name.replace(".joblib", ".png"))}
    assert expected == {"r3.joblib", "r3.png"}
    assert {p.name for p in directory.iterdir()} == expected
    # With the default (3), the last three runs' models stay.
    _run(warehouse, "r5")
    _run(warehouse, "r6")
    assert {p.name for p in directory.iterdir()} == {
        f"{run}.{suffix}" for run in ("r3", "r5", "r6") for suffix in ("joblib", "png")
    }
