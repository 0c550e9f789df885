"""One list of published tables (models_py.published): the BI snapshot copies it, the
report reads its REPORT_TABLES, and the dbt exposures declare the same tables, so none
can be published in one place and forgotten in another."""

from __future__ import annotations

import re

import yaml

from models_py.published import PUBLISHED_TABLES, REPORT_TABLES
from orchestration.bi_snapshot import SNAPSHOT_TABLES
from orchestration.dbt_runner import DBT_PROJECT_DIR

EXPOSURES = DBT_PROJECT_DIR / "models" / "insiders" / "_insiders__exposures.yml"
_REF = re.compile(r"^ref\('(\w+)'\)$")
_SOURCE = re.compile(r"^source\('(\w+)', '(\w+)'\)$")


def exposure_tables(name: str) -> set[tuple[str, str]]:
    """The tables an exposure depends on, as (schema, table): a source names its schema;
    a ref is a model, whose schema the published list gives (table names are unique)."""
    schemas = {table: schema for schema, table in PUBLISHED_TABLES}
    exposures = {e["name"]: e for e in yaml.safe_load(EXPOSURES.read_text())["exposures"]}
    found: set[tuple[str, str]] = set()
    for dependency in exposures[name]["depends_on"]:
        if ref := _REF.match(dependency):
            found.add((schemas.get(ref.group(1), "?"), ref.group(1)))
        elif source := _SOURCE.match(dependency):
            found.add((source.group(1), source.group(2)))
        else:
            raise AssertionError(f"{EXPOSURES}: cannot read depends_on entry {dependency!r}")
    return found


def test_table_names_are_unique_across_schemas():
    names = [table for _, table in PUBLISHED_TABLES]
    assert len(names) == len(set(names))
    assert len(PUBLISHED_TABLES) == len(set(PUBLISHED_TABLES))


def test_the_snapshot_publishes_the_list_and_the_report_reads_part_of_it():
    assert SNAPSHOT_TABLES == PUBLISHED_TABLES
    assert set(REPORT_TABLES) <= set(PUBLISHED_TABLES)
    assert ("insiders", "answers") in PUBLISHED_TABLES
    assert ("insiders", "answers") in REPORT_TABLES


def test_the_dbt_exposures_declare_exactly_the_published_tables():
    assert exposure_tables("marketing_dashboard") == set(PUBLISHED_TABLES)
    assert exposure_tables("insiders_report") == set(REPORT_TABLES)
