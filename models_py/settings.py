"""Default levels shared by the pure models, the Dagster config and the report.

A level written as a literal in several places drifts: one place is changed, the
others still say the old number, and the report states a range the numbers were not
computed with. Each default lives here once and everything else imports it.

Two levels, because they answer different questions:

- ``RANDOM_GROUPS_CONFIDENCE``: the central share of the random groups' draws
  reported beside each definition at every origin (``share_low``/``share_high`` of
  ``ml.definition_evaluation``); the Dagster setting ``insiders_analytics.config.confidence``.
- ``EVIDENCE_CONFIDENCE``: the level of the bootstrap interval of the Insiders'
  difference from the rest (``ml.group_evidence.confidence``), which dbt also uses as
  the significance threshold ``p_value < 1 - confidence``.
"""

from __future__ import annotations

RANDOM_GROUPS_CONFIDENCE: float = 0.9
EVIDENCE_CONFIDENCE: float = 0.95
