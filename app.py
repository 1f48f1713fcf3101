"""bnviz: watch Batch Normalization change what a network's layers see while it trains.

    streamlit run app.py

The page is a short function; each part lives in ``ui/``: the sidebar and URL
(``controls``), the buttons (``actions``) and the live charts (``live``), the words
(``explain``), the trainability maps (``map_view``) and the server's shared run pool
(``session``). The engine is ``bnviz/``.
"""

import streamlit as st

from ui import classview, controls, cost, explain, live, map_view, session, turns, upstream


@turns.in_turn(ahead=True)  # one page's run at a time, clicks before polls: ui/turns.py
def main() -> None:
    upstream.install()  # before this session's first fragment rerun: see ui/upstream.py
    st.set_page_config(page_title="bnviz: Batch Normalization, live", layout="wide")
    choice = controls.sidebar()
    cost.note(choice, session.pool().max_running)
    st.title("Batch Normalization, live")
    st.caption(choice.preset.summary)
    controls.dropped_link_warning()
    for warning in choice.warnings:
        st.warning(warning)
    live.show(choice)  # the buttons and the charts: a click reruns them alone
    controls.keep_url(choice, session.url_marker())
    map_view.show(choice)
    classview.show()
    st.markdown(explain.WHY_BN)


if __name__ == "__main__":
    main()
