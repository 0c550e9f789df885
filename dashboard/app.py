"""The dashboard's entry point: ``streamlit run dashboard/app.py`` (or ``insiders dashboard``).

It reads only the BI snapshot that every successful ``insiders run`` publishes
(``$INSIDERS_BI_SNAPSHOT``, else ``bi/insiders_bi.duckdb`` beside the warehouse), read-only
and one short connection per read, so it keeps working while a run holds the warehouse.
This file is the frame around the pages: navigation, and a sidebar that names the
snapshot and reruns the page when a new one is published.
"""

from __future__ import annotations

import logging
import sys
from importlib.util import find_spec
from pathlib import Path

# `streamlit run` puts this file's folder on sys.path, not the repository: make the
# `dashboard` package importable from a plain checkout too.
if find_spec("dashboard") is None:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import streamlit as st

from dashboard import ui
from dashboard.snapshot import fingerprint, snapshot_path

LOGGER = logging.getLogger("dashboard")
# Not "pages/": Streamlit treats a pages/ folder beside the entry point as an old-style
# multipage app until the first session calls st.navigation, so the first visitor after
# a start would see file names as the menu and the page scripts run without this frame.
PAGES_DIR = Path(__file__).resolve().parent / "views"
# How often an open page checks whether a new snapshot was published.
WATCH_SECONDS = 15


@st.fragment(run_every=WATCH_SECONDS)
def _watch_snapshot(path: Path) -> None:
    """Rerun the whole page when the file behind ``path`` is no longer the one shown."""
    if fingerprint(path) != st.session_state.get(ui.SHOWN_KEY):
        st.rerun(scope="app")


def _sidebar() -> None:
    """Which snapshot the pages show; never stops the app (the page shows the states)."""
    try:
        path = snapshot_path()
    except ValueError:
        return
    st.session_state[ui.SHOWN_KEY] = fingerprint(path)
    with st.sidebar:
        st.caption(f"BI snapshot: `{path}`")
        _watch_snapshot(path)


st.set_page_config(page_title="Insiders", page_icon=":material/loyalty:", layout="wide")
navigation = st.navigation(
    [
        st.Page(
            PAGES_DIR / "overview.py",
            title="Overview",
            icon=":material/dashboard:",
            url_path="overview",
            default=True,
        ),
        st.Page(PAGES_DIR / "evidence.py", title="Evidence", icon=":material/fact_check:"),
        st.Page(PAGES_DIR / "clusters.py", title="Clusters", icon=":material/scatter_plot:"),
        st.Page(PAGES_DIR / "insiders.py", title="Insiders", icon=":material/group:"),
        st.Page(PAGES_DIR / "movement.py", title="Movement", icon=":material/swap_horiz:"),
    ]
)
_sidebar()
try:
    navigation.run()
except Exception as exc:
    # A page's bug must not show the marketing team a stack trace: one line on the page,
    # the trace in the server's log. (st.stop and st.rerun are not Exceptions.)
    LOGGER.exception("dashboard page %s failed", navigation.title)
    st.error(f"This page failed: {ui.first_line(exc)}")
