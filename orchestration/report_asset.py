"""Write the Insiders report from the marts: ``reports/`` beside the warehouse.

The files are written beside their final names and renamed into place, so a reader
(or a browser tab reloading the page) sees the previous report or the new one.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from pathlib import Path

import yaml

from models_py.report import REPORT_TABLES, Report, build_report
from orchestration.dbt_runner import DBT_PROJECT_DIR
from orchestration.warehouse import connect


@dataclass
class WrittenReport:
    """The rendered report plus its Markdown with charts inlined, for Dagster's UI."""

    answers: dict[str, str]
    markdown_inline: str


def _schema(table: str) -> str:
    return "ml" if table == "customer_embedding" else "insiders"


def grace_cycles() -> int:
    """The grace period the dbt project uses (var membership_grace_cycles)."""
    project = yaml.safe_load((DBT_PROJECT_DIR / "dbt_project.yml").read_text())
    return int(project.get("vars", {}).get("membership_grace_cycles", 1))


def write_report(warehouse: Path) -> tuple[dict[str, Path], WrittenReport]:
    con = connect(warehouse, read_only=False)
    try:
        tables = {t: con.execute(f"select * from {_schema(t)}.{t}").df() for t in REPORT_TABLES}
    finally:
        con.close()
    report = build_report(tables, grace_cycles=grace_cycles())
    folder = warehouse.parent / "reports"
    folder.mkdir(parents=True, exist_ok=True)
    for name, png in report.charts.items():
        _replace(folder / name, png)
    paths = {"markdown": folder / "insiders_report.md", "html": folder / "insiders_report.html"}
    _replace(paths["markdown"], report.markdown.encode())
    _replace(paths["html"], report.html.encode())
    return paths, WrittenReport(report.answers, _inline(report))


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
