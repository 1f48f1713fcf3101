"""bnviz: watch Batch Normalization change what a network's layers see while it trains.

    streamlit run app.py

The page is a short function; each part lives in ``ui/``: the sidebar and URL
(``controls``), the buttons (``actions``), the live charts (``live``), the words
(``explain``), the trainability maps (``map_view``) and the server's shared run pool
(``session``). The engine is ``bnviz/``.
"""

import streamlit as st

from ui import actions, controls, explain, live, map_view, session
from ui import state as keys


def main() -> None:
    st.set_page_config(page_title="bnviz: Batch Normalization, live", layout="wide")
    lost = session.lost_run_notice(st.query_params.get(session.SERVER_PARAM))  # before the URL is rewritten
    choice = controls.sidebar(session.url_marker())
    st.title("Batch Normalization, live")
    st.caption(choice.preset.summary)
    for warning in choice.warnings:
        st.warning(warning)
    if lost:
        st.warning(lost)
    accuracies = {s.config.norm: float(s.accuracy[-1]) for s in st.session_state.get(keys.LAST, ()) if len(s.accuracy)}
    explain.published(choice.preset, choice.config, accuracies)
    actions.toolbar(choice)
    live.show(choice)
    map_view.show(choice)
    st.markdown(explain.WHY_BN)
    counts = session.pool().counts()
    st.sidebar.caption(f"This server: {counts['alive_trainers']} of {session.pool().max_running} trainer slots "
                       f"busy, {counts['queued_owners']} waiting.")


if __name__ == "__main__":
    main()
