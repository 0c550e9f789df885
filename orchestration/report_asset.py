"""Write the Insiders report from the marts: ``reports/`` beside the warehouse.

The files are written beside their final names and renamed into place, so a reader
(or a browser tab reloading the page) sees the previous report or the new one.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from models_py.published import REPORT_TABLES
from models_py.report import REPORT_SUMMARIES, Report, build_report
from orchestration.sessions import Warehouse, open_warehouse


@dataclass
class WrittenReport:
    """The rendered report plus its Markdown with charts inlined, for Dagster's UI."""

    answers: dict[str, str]
    markdown_inline: str
    is_synthetic: bool = False


def read_report_tables(warehouse: Warehouse) -> dict[str, pd.DataFrame]:
    """The marts the report lays out (``models_py.published.REPORT_TABLES``), by table
    name, read in one short connection."""
    reads = [
        (f"{s}.{t}", REPORT_SUMMARIES[f"{s}.{t}"]) if f"{s}.{t}" in REPORT_SUMMARIES else f"{s}.{t}"
        for s, t in REPORT_TABLES
    ]
    with open_warehouse(warehouse, reads=reads) as con:
        return {
            table: con.execute(f"select * from {schema}.{table}").df()
            for schema, table in REPORT_TABLES
        }


def write_report(
    warehouse: Warehouse, folder: Path | None = None
) -> tuple[dict[str, Path], WrittenReport]:
    """Render the report from the warehouse's marts and replace the files atomically.

    ``folder``: where the files go (default ``reports/`` beside ``warehouse``; a run
    passes the real warehouse's, since it reads a work copy)."""
    report = build_report(read_report_tables(warehouse))
    folder = folder or warehouse.parent / "reports"
    folder.mkdir(parents=True, exist_ok=True)
    for name, png in report.charts.items():
        _replace(folder / name, png)
    paths = {"markdown": folder / "insiders_report.md", "html": folder / "insiders_report.html"}
    _replace(paths["markdown"], report.markdown.encode())
    _replace(paths["html"], report.html.encode())
    return paths, WrittenReport(report.answers, _inline(report), report.is_synthetic)


def _inline(report: Report) -> str:
    text = report.markdown
    for name, png in report.charts.items():
        text = text.replace(
            f"]({name})", f"](data:image/png;base64,{base64.b64encode(png).decode()})"
        )
    return text


def _replace(path: Path, content: bytes) -> None:
    partial = path.with_name(f".{path.name}.partial")
    partial.write_bytes(content)
    os.replace(partial, path)
