"""The marketing team's dashboard (Streamlit) over the published BI snapshot.

``dashboard.snapshot`` reads the snapshot (no Streamlit), ``dashboard.ui`` holds the
Streamlit helpers shared by the pages, ``dashboard/app.py`` is the entry point of
``streamlit run`` and ``dashboard/views/`` holds one script per page.
"""
