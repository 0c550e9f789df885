"""The dashboard's pages: scripts that ``st.navigation`` in ``dashboard/app.py`` runs.

A package only so that a regular (non-editable) install ships them; nothing imports
them, Streamlit executes each file as a script. The folder is not named ``pages``: next
to the entry point, that name switches Streamlit to its old file-based navigation until
the first session calls ``st.navigation``.
"""
