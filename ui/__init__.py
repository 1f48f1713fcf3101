"""The Streamlit page, in small modules: sidebar controls, the shared run pool, the live view.

Nothing here builds a model or touches a trainer's insides: the page reads snapshots and
sends a trainer the few commands it has (pause, resume, step, stop, a new learning rate).
"""
