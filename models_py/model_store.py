"""The fitted segmentation models on disk: written by the run that fits them, read back
only from the project's own model directory and only if their bytes are the ones the
run recorded.

A joblib file is a pickle, and unpickling runs whatever code the file's author put in
it. The warehouse records which model file each clustering run wrote or used, and
anyone who can write the warehouse can write that record, so the record is never
trusted as a path:

- it holds the file NAME only (``<run_id>.joblib``), resolved inside
  ``<warehouse dir>/models/``; a stored value with a directory part, ``..``, or a name
  that is a symbolic link (which could point anywhere) is refused before the file is
  opened;
- the run records the SHA-256 of the bytes it wrote; the loader reads the bytes ONCE,
  compares their hash and unpickles from memory, so a file changed after the run, or
  swapped between the check and the load, is refused without being unpickled.

Every refusal is one line naming the file, the run and the problem
(:class:`ModelStoreError`). The directory keeps the models of the last few runs the
warehouse records (:func:`prune_models`); files of runs it does not record (a killed
run's) and older ones are removed after each successful write.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import TYPE_CHECKING

import joblib

if TYPE_CHECKING:  # scikit-learn is imported by the steps that fit or score only
    from models_py.clustering.labelling import Segmenter

MODELS_DIR = "models"
MODEL_SUFFIX = ".joblib"
PLOT_SUFFIX = ".png"
# Dagster run ids are UUIDs; anything else that would make a file name is refused.
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_TEMP_PREFIX = ".saving-"


class ModelStoreError(ValueError):
    """A model file that must not be written or loaded; the message is one line."""


@dataclass(frozen=True)
class StoredModel:
    """A model file as a run records it: its name in the model directory and its hash."""

    name: str
    sha256: str
    path: Path


def models_dir(warehouse: Path) -> Path:
    """The project's model directory: ``models/`` beside the warehouse file."""
    return warehouse.parent / MODELS_DIR


def model_name(run_id: str) -> str:
    """The file name of the model a run fits: ``<run_id>.joblib``."""
    if not _SAFE_NAME.fullmatch(run_id) or ".." in run_id:
        raise ModelStoreError(f"run id {run_id!r} cannot name a model file")
    return f"{run_id}{MODEL_SUFFIX}"


def save_model(segmenter: Segmenter, directory: Path, run_id: str) -> StoredModel:
    """Write ``segmenter`` as ``<directory>/<run_id>.joblib``; return its name and hash.

    The bytes are hashed as written, and the file appears under its name in one rename,
    so a killed run leaves either no file or a complete one (an unrecorded one, which
    the next successful run prunes).
    """
    from models_py.clustering.labelling import Segmenter

    if not isinstance(segmenter, Segmenter):
        raise ModelStoreError(f"only a Segmenter is saved, not a {type(segmenter).__name__}")
    name = model_name(run_id)
    buffer = io.BytesIO()
    joblib.dump(segmenter, buffer)
    data = buffer.getvalue()
    _write_atomically(directory, name, data)
    return StoredModel(name, hashlib.sha256(data).hexdigest(), directory / name)


def save_plot(directory: Path, model: str, png: bytes) -> Path:
    """Write a run's picture beside its model (``<model stem>.png``); returns its path.

    ``model`` is a checked model file name. Replaced in one rename, so a symbolic link
    planted under that name is replaced, never written through.
    """
    name = PurePath(model).with_suffix(PLOT_SUFFIX).name
    if name != PurePath(model).stem + PLOT_SUFFIX or not _SAFE_NAME.fullmatch(name):
        raise ModelStoreError(f"model name {model!r} cannot name a plot file")
    return _write_atomically(directory, name, png)


def _write_atomically(directory: Path, name: str, data: bytes) -> Path:
    """``data`` under ``directory/name``, appearing whole in one rename."""
    directory.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=_TEMP_PREFIX, dir=directory)
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, directory / name)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return directory / name


def model_file(directory: Path, stored: str, run_id: str) -> Path:
    """The file a run's record names, if it is a plain file name in ``directory``.

    Refuses (one line each) a value with a directory part or ``..``, a symbolic link
    and a missing file, before anything is opened.
    """
    refused = f"model_path {stored!r} of run {run_id}"
    if not stored or PurePath(stored).name != stored or stored in (".", ".."):
        raise ModelStoreError(f"{refused} is not a file name in {directory}: refusing to load it")
    path = directory / stored
    if path.is_symlink():
        raise ModelStoreError(f"{refused} is a symbolic link in {directory}: refusing to load it")
    if path.resolve().parent != directory.resolve():
        raise ModelStoreError(f"{refused} is not a file in {directory}: refusing to load it")
    if not path.is_file():
        raise ModelStoreError(f"model file {path} of run {run_id} is missing: refit instead")
    return path


def load_model(directory: Path, stored: str, sha256: str | None, run_id: str) -> Segmenter:
    """The Segmenter a run recorded, after checking where it is and what its bytes are.

    ``stored`` and ``sha256`` are the run's ``model_path`` and ``model_sha256``. The file
    is read once and unpickled from those bytes only if their SHA-256 is ``sha256``.
    """
    path = model_file(directory, stored, run_id)
    if not sha256:
        raise ModelStoreError(
            f"run {run_id} recorded no checksum for its model file {path}: refusing to load "
            "it (refit instead)"
        )
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != sha256.strip().lower():
        raise ModelStoreError(
            f"model file {path} does not match the checksum recorded by run {run_id}: "
            "refusing to load it"
        )
    from models_py.clustering.labelling import Segmenter

    segmenter = joblib.load(io.BytesIO(data))
    if not isinstance(segmenter, Segmenter):
        raise ModelStoreError(f"model file {path} does not hold a Segmenter")
    return segmenter


def prune_models(directory: Path, keep: Iterable[str]) -> list[Path]:
    """Remove every model (and plot) in ``directory`` not named in ``keep``; return them.

    ``keep``: the model names of the runs to keep (stored values; only their file name
    counts). Also removes what an interrupted save left. Only the directory's own files
    are touched: subdirectories are left alone and a symbolic link is removed as a link,
    never followed.
    """
    if not directory.is_dir():
        return []
    kept = {PurePath(name).stem for name in keep if name}
    removed = []
    for entry in sorted(directory.iterdir()):
        if entry.is_dir() and not entry.is_symlink():
            continue
        stale_model = entry.suffix in (MODEL_SUFFIX, PLOT_SUFFIX) and entry.stem not in kept
        if stale_model or entry.name.startswith(_TEMP_PREFIX):
            entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed
