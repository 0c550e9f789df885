"""A real dashboard in a real browser, for the browser tests: the server and Chromium
helpers of ``bench/browser.py`` (shared with the page-load benchmark), and screenshots.

Screenshots go to ``$INSIDERS_TEST_ARTIFACTS`` (default ``test-artifacts/`` at the
repository root), kept as the tests' artifacts.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from bench.browser import chromium, new_page, serve_dashboard, wait_until_idle
from tests.conftest import REPO_ROOT

__all__ = ["ARTIFACTS", "chromium", "new_page", "screenshot", "serve_dashboard", "wait_until_idle"]

ARTIFACTS = Path(os.environ.get("INSIDERS_TEST_ARTIFACTS", REPO_ROOT / "test-artifacts"))


def screenshot(page: Any, name: str) -> Path:
    """A full-page screenshot of ``page`` as ``<artifacts>/<name>.png``."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
