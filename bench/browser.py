"""The dashboard served for real and a real browser to drive it: ``insiders dashboard`` on
loopback, and Playwright in Debian's headless Chromium (never a downloaded browser).

Used by the page-load benchmark (``bench/dashboard.py``) and by the browser tests
(``tests/browser.py`` adds their screenshots); it lives here, not under ``tests/``, so a
benchmark never depends on test code.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

CHROMIUM = Path("/usr/bin/chromium")
# Chromium as root, without a sandbox, and without reaching for the (closed) network.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def serve_dashboard(snapshot: Path, log: Path) -> Iterator[str]:
    """Start ``insiders dashboard`` on a free loopback port; yield its URL; stop it."""
    port = free_port()
    command = [
        str(Path(sys.executable).parent / "insiders"),
        "dashboard",
        "--port",
        str(port),
        "--snapshot",
        str(snapshot),
    ]
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 90
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"the dashboard exited ({process.returncode}): see {log}")
                try:
                    with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as answer:
                        if answer.status == 200:
                            break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the dashboard did not start within 90 s: see {log}")
                time.sleep(0.5)
            yield url
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


@contextmanager
def chromium() -> Iterator[Any]:
    """Debian's Chromium, headless, under Playwright (one per process: Playwright's sync
    API cannot nest)."""
    from playwright.sync_api import sync_playwright

    assert CHROMIUM.exists(), f"{CHROMIUM} is missing: apt-get install chromium"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()


@contextmanager
def new_page(browser: Any) -> Iterator[Any]:
    """A fresh browser context (no cookies, no Streamlit session) and a page in it."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        page = context.new_page()
        page.set_default_timeout(60_000)
        yield page
    finally:
        context.close()


def wait_until_idle(page: Any, settle_seconds: float = 0.5) -> None:
    """Wait until Streamlit has finished running the script for the current page."""
    page.wait_for_selector('[data-testid="stApp"]')
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        running = page.locator('[data-testid="stStatusWidget"]').count()
        skeleton = page.locator('[data-testid="stSkeleton"]').count()
        if not running and not skeleton:
            time.sleep(settle_seconds)
            if not page.locator('[data-testid="stStatusWidget"]').count():
                return
        time.sleep(0.2)
    raise TimeoutError("the dashboard kept running its script for 60 s")
