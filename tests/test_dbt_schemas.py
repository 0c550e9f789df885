"""Schemas follow dbt's convention: exact names in production, prefixed for a developer.

A developer's ``--target dev`` build must never write production's schemas (they are
what BI tools and the Python steps read), so the same models land in
``<dev schema>_<schema>``; every other target keeps the plain names.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from dbt.cli.main import dbtRunner

from orchestration.dbt_runner import DBT_PROFILES_DIR, DBT_PROJECT_DIR


def _schemas(tmp_path: Path, *target: str) -> dict[str, str]:
    result = dbtRunner().invoke(
        [
            "parse",
            "--project-dir",
            str(DBT_PROJECT_DIR),
            "--profiles-dir",
            str(DBT_PROFILES_DIR),
            "--target-path",
            str(tmp_path / "target"),
            "--log-path",
            str(tmp_path / "logs"),
            *target,
        ]
    )
    assert result.success, result.exception
    return {
        node.name: node.schema
        for node in result.result.nodes.values()
        if node.resource_type == "model"
    }


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        (
            (),
            {"dim_customers": "marts", "kpis": "insiders", "stg_ml__customer_segments": "staging"},
        ),
        (
            ("--target", "dev"),
            {
                "dim_customers": "dev_alice_marts",
                "kpis": "dev_alice_insiders",
                "stg_ml__customer_segments": "dev_alice_staging",
            },
        ),
    ],
)
def test_schema_names_by_target(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, target: tuple[str, ...], expected: dict
) -> None:
    monkeypatch.setenv("INSIDERS_DEV_SCHEMA", "dev_alice")
    monkeypatch.setenv("INSIDERS_DEV_WAREHOUSE", str(tmp_path / "dev.duckdb"))
    schemas = _schemas(tmp_path, *target)
    assert {name: schemas[name] for name in expected} == expected
