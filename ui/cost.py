"""What the chosen runs will cost, shown before Start, and the deployment's budget for it.

The sidebar says what the runs are expected to need and, when they do not fit, why and what to
change, before anyone presses Start; ``actions.start`` checks the same budget at every entry
point (Start, Step from nothing, Restart with the new settings) and shows a refusal in words.
The budget comes from the environment (``bnviz.budget``: ``BNVIZ_RUN_MB``, ``BNVIZ_TAB_MB``,
``BNVIZ_STEP_MS``, ``BNVIZ_RUN_MINUTES``), read once per server.
"""

from __future__ import annotations

import logging

import streamlit as st

from bnviz import budget
from ui.controls import Choice, plain

TEXT_LIMIT = 2000  # characters of a message shown; every one of ours is far shorter


@st.cache_resource(show_spinner=False)
def deployment_budget() -> budget.Budget:
    chosen, problems = budget.Budget.from_env()
    for problem in problems:  # for the deployer, in the server log
        logging.getLogger("bnviz").warning(problem)
    return chosen


def refusals(choice: Choice, max_running: int) -> list[str]:
    """Why the runs this choice starts do not fit the budget (empty: they fit), as literal markdown
    (the messages hold "~" and "landscape_every", which markdown would strike through or emphasize)."""
    return [plain(text, TEXT_LIMIT) for text in budget.refusals(choice.configs(max_running), deployment_budget())]


def note(choice: Choice, max_running: int) -> None:
    """In the sidebar: the estimate, the budget, and each reason the runs would be refused."""
    configs = choice.configs(max_running)
    with st.sidebar:
        for problem in refusals(choice, max_running):
            st.warning(problem)
        st.caption(plain(f"{budget.summary(configs)} This server allows {deployment_budget().describe()}.", TEXT_LIMIT))
