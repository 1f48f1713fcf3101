"""The app, preceded (when a test asks) by the map view's ``open_cell``, as a click on a map's cell
calls it: AppTest cannot click a Plotly chart (the browser test does). Run by tests/test_map_view.py."""

import streamlit as st

import app
from bnviz.reproduce.map_data import shipped_maps
from ui import map_view

OPEN_REQUEST = "test_open_cell"  # (map name, varied index, row, column), set by the test


def main() -> None:
    request = st.session_state.pop(OPEN_REQUEST, None)
    if request is not None:
        name, v, row, column = request
        map_view.open_cell(next(data for data in shipped_maps()[0] if data.spec.name == name), v, row, column)
    app.main()


if __name__ == "__main__":  # a run's process is forked from a server that imports this script as __mp_main__
    main()
