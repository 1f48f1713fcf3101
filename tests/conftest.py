"""Shared fixtures: the page in AppTest (``app``), one torch thread, and for the browser tests a live
Streamlit server, a headless Chromium, screenshots.

The server is ``benchmarks/serverctl.py``'s (``streamlit run`` on a free loopback port, as
Streamlit's own e2e suite starts one); the browser is Debian's Chromium driven by plain
Playwright (no pytest-playwright, no browser download). Screenshots and the server's log go
to ``test-artifacts/`` (gitignored).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from testsupport import serverctl

# The app's finished-run cache (bnviz.serve.cache) outlives a server by design; AppTest's pages
# in this process use a folder of this test session's own, so one test run never opens runs
# another finished. Servers started by serverctl get a fresh folder each.
os.environ["BNVIZ_CACHE_DIR"] = tempfile.mkdtemp(prefix="bnviz-test-runs-")


ARTIFACTS = serverctl.ARTIFACTS
FAILED = pytest.StashKey[bool]()  # set on a test whose body failed
# Streamlit scrolls its main area inside the page, so a "full page" screenshot is only the
# viewport: tall enough to show the heatmaps and the charts under them.
VIEWPORT = {"width": 1400, "height": 1800}
APP = str(Path(__file__).resolve().parent.parent / "app.py")


@pytest.fixture
def app():
    """``app(**query)`` -> an AppTest of the page with those URL parameters, run once; after the test
    every trainer its sessions started is told to stop, and must end."""
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    from ui import session

    made: list[AppTest] = []

    def make(**query) -> AppTest:
        at = AppTest.from_file(APP, default_timeout=300)  # a shared, busy machine: a rerun that starts runs can take a minute
        for key, value in query.items():
            at.query_params[key] = value
        made.append(at)
        return at.run()

    yield make
    pool = session.pool()
    trainers = [t for at in made if (entry := pool.get(at.session_state["owner"])) is not None for t in entry.trainers]
    st.cache_resource.clear()  # fires on_release: every trainer is told to stop
    for trainer in trainers:
        assert trainer.join(30), "a trainer did not stop"


@pytest.fixture
def one_torch_thread():
    """Torch on one thread for the test (as a run's process trains), the caller's count restored after."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def streamlit_server():
    """Base URL of ``streamlit run app.py`` served from the repo root for the whole session."""
    # Each test closes its tab; bnviz keeps a closed tab's runs for BNVIZ_IDLE_TIMEOUT (50 s by
    # default), holding trainer slots and CPU the next tests need. 10 s: well above the live
    # page's 0.4-2 s polling, well below a test's length.
    with serverctl.Server({"BNVIZ_IDLE_TIMEOUT": "10"}, log_path=ARTIFACTS / "streamlit-server.log") as server:
        yield server.url


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    for old in ARTIFACTS.glob("*.png"):  # the folder shows the last browser run, not a mix of runs
        old.unlink()
    with sync_playwright() as playwright:
        chromium = serverctl.launch_chromium(playwright)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser, request):
    """A fresh page in its own context (its own Streamlit session); screenshotted if the test fails."""
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    try:
        yield page
        if request.node.stash.get(FAILED, False):
            _save(page, request.node.name, "failed")
    finally:
        context.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """Mark a test whose body failed, so the ``page`` fixture can screenshot it before closing."""
    report = yield
    if report.when == "call" and report.failed:
        item.stash[FAILED] = True
    return report


def _save(page, test_name: str, label: str = "") -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{test_name}{'-' + label if label else ''}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


@pytest.fixture
def screenshot(request):
    """``screenshot(page, label="")`` saves ``test-artifacts/<test name>[-label].png``."""
    return lambda page, label="": _save(page, request.node.name, label)
