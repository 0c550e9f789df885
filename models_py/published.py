"""The tables the pipeline publishes to BI, listed once.

Everything outside the pipeline (the BI snapshot and so the dashboard and BI tools,
the report, the dbt exposures that document them) reads from this one list, so a table
cannot be published in one place and forgotten in another. The dbt exposures in
``dbt_project/models/insiders/_insiders__exposures.yml`` repeat it in dbt's own terms
(dbt cannot import Python); ``tests/test_published.py`` fails when they drift apart.
"""

from __future__ import annotations

# (schema, table, read by the report). Table names are unique across schemas: the
# report and the dbt exposures address them by table name.
_TABLES: tuple[tuple[str, str, bool], ...] = (
    ("insiders", "answers", True),
    ("insiders", "kpis", True),
    ("insiders", "members", True),
    ("insiders", "customer_membership", False),
    ("insiders", "cluster_profile", True),
    ("insiders", "cluster_actions", True),
    ("insiders", "eligibility_rules", True),
    ("insiders", "evidence", True),
    ("insiders", "definition_evaluation", True),
    ("insiders", "definition_choice", True),
    ("insiders", "revenue_forecast", True),
    ("insiders", "forecast_evaluation", True),
    ("insiders", "customer_forecast", False),
    ("insiders", "membership_history", False),
    ("insiders", "membership_movement", True),
    ("insiders", "monthly_revenue", True),
    ("marts", "dim_customers", False),
    ("ml", "customer_embedding", True),
    ("ml", "model_selection", False),
)

# (schema, table): what the BI snapshot copies, and BI tools and the dashboard may read.
PUBLISHED_TABLES: tuple[tuple[str, str], ...] = tuple(
    (schema, table) for schema, table, _ in _TABLES
)

# (schema, table): the part of it the report reads.
REPORT_TABLES: tuple[tuple[str, str], ...] = tuple(
    (schema, table) for schema, table, in_report in _TABLES if in_report
)
