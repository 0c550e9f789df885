"""What ``insiders run`` prints: one line per step as it finishes, nothing else.

Dagster's console logger prints its whole event log (about 700 lines a run) to the
terminal; the event log belongs in Dagster's storage, where the UI shows it. The CLI
replaces that logger with :func:`progress_logger`, which turns the events of a step
into one line, ``<stage>  <seconds> s  <key figure>``, printed when the step ends;
warnings and errors are printed in full as they come. ``--verbose`` adds Dagster's
console logger back.
"""

from __future__ import annotations

import logging
import sys
from collections import defaultdict
from typing import Any, TextIO

from dagster import LoggerDefinition, logger

# Dagster step keys -> the stage a user recognises. dbt's op is split into several
# steps (insiders_dbt_assets, insiders_dbt_assets_2, ...), numbered in run order.
STAGES = {
    "raw_transactions": "load",
    "customer_segmentation": "clustering",
    "insiders_analytics": "analytics",
    "insiders_report": "report",
    "bi_snapshot": "snapshot",
}
DBT_STEP_PREFIX = "insiders_dbt_assets"


class ProgressHandler(logging.Handler):
    """Collects each step's materialisations and checks; prints its line at the end."""

    def __init__(self, out: TextIO | None = None, err: TextIO | None = None) -> None:
        super().__init__(level=logging.DEBUG)
        self.out, self.err = out, err
        self.metadata: dict[str, list[tuple[str, dict[str, Any]]]] = defaultdict(list)
        self.checks: dict[str, list[bool]] = defaultdict(list)
        self.dbt_steps = 0
        self.failures: list[str] = []  # the failure lines printed, not to print twice

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._emit(record)
        except Exception:  # a progress line must never fail a run
            self.handleError(record)

    def _emit(self, record: logging.LogRecord) -> None:
        meta = getattr(record, "dagster_meta", None) or {}
        event = meta.get("dagster_event")
        if event is None:
            text = str(meta.get("orig_message") or record.getMessage())
            if text.startswith("Dependencies for step"):
                return  # the failed step itself is reported, not each step it stopped
            if record.levelno >= logging.WARNING:
                level = "error" if record.levelno >= logging.ERROR else "warning"
                print(f"insiders: {level}: {text}", file=self.err or sys.stderr, flush=True)
            return
        step = event.step_key or ""
        kind = event.event_type_value
        if kind == "ASSET_MATERIALIZATION":
            materialization = event.event_specific_data.materialization
            values = {k: v.value for k, v in materialization.metadata.items()}
            self.metadata[step].append((materialization.asset_key.to_user_string(), values))
        elif kind == "ASSET_CHECK_EVALUATION":
            self.checks[step].append(bool(event.event_specific_data.passed))
        elif kind == "STEP_SUCCESS":
            seconds = event.event_specific_data.duration_ms / 1000
            print(self.line(step, seconds), file=self.out or sys.stdout, flush=True)
        elif kind == "STEP_FAILURE":
            print(f"{self.stage(step):<12}{'FAILED':>9}", file=self.out or sys.stdout, flush=True)
            text = failure_text(event)
            self.failures.append(text)
            print(text, file=self.err or sys.stderr, flush=True)

    def stage(self, step: str) -> str:
        if step.startswith(DBT_STEP_PREFIX):
            return "dbt"
        return STAGES.get(step, step)

    def line(self, step: str, seconds: float) -> str:
        stage = self.stage(step)
        if stage == "dbt":
            self.dbt_steps += 1
            stage = f"dbt-{self.dbt_steps}"
        return f"{stage:<12}{seconds:>7.1f} s  {self.figure(step)}".rstrip()

    def figure(self, step: str) -> str:
        """The key figure of a step, from the metadata it reported."""
        produced = self.metadata.get(step, [])
        first = produced[0][1] if produced else {}
        stage = self.stage(step)
        if stage == "dbt":
            checks = self.checks.get(step, [])
            failed = checks.count(False)
            tested = f", {len(checks)} tests" + (f" ({failed} failed)" if failed else " passed")
            return f"{len(produced)} models and seeds built{tested if checks else ''}"
        if stage == "load":
            return (
                f"{first.get('rows_loaded', 0):,} rows loaded, "
                f"{first.get('rows_quarantined', 0):,} quarantined from "
                f"{first.get('files_loaded', 0)} new files "
                f"({first.get('files_skipped', 0)} skipped)"
            )
        if stage == "clustering":
            how = "fitted" if first.get("refit") else "scored with the saved model"
            share = first.get("insiders_share_of_customers")
            insiders = f", Insiders {share:.1%} of customers" if share is not None else ""
            customers = f"{first.get('customers', 0):,} customers"
            return f"{customers}, {first.get('model')} ({how}){insiders}"
        if stage == "analytics":
            how = "re-evaluated" if first.get("refit", True) else "scored with the saved fits"
            return f"{first.get('origins', 0)} origins {how}"
        if stage == "report":
            return f"{first.get('questions_answered', 0)} questions answered"
        if stage == "snapshot":
            return f"BI snapshot {first.get('snapshot_id', '')}"
        return f"{len(produced)} assets"


def failure_text(event: Any) -> str:
    """A step's error in full: a ``dagster.Failure``'s own description (written to be
    read), else the error with its stack, innermost cause included."""
    data = event.step_failure_data
    user = data.user_failure_data if data is not None else None
    if user is not None and user.description:
        return f"insiders: error: {event.step_key}: {user.description}"
    if data is not None and data.error is not None:
        return f"insiders: error: {event.step_key} failed:\n{data.error.to_string()}"
    return f"insiders: error: {event.step_key} failed"


def progress_logger(handler: ProgressHandler) -> LoggerDefinition:
    """A Dagster logger that hands every record to ``handler``."""

    @logger(description="One line per finished step (the insiders CLI).")
    def _progress(_init_context: Any) -> logging.Logger:
        log = logging.Logger("insiders.progress", level=logging.DEBUG)
        log.addHandler(handler)
        return log

    return _progress
