"""Shared fixtures for the browser tests: a live Streamlit server, a headless Chromium, screenshots.

The server is started the way Streamlit's own e2e suite starts one (``streamlit run`` on a
free loopback port, poll ``/_stcore/health``); the browser is Debian's Chromium driven by
plain Playwright (no pytest-playwright, no browser download). Screenshots and the server's
log go to ``test-artifacts/`` (gitignored).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = REPO_ROOT / "test-artifacts"
HOST = "127.0.0.1"  # loopback only: the test server must not be reachable from outside
SERVER_START_TIMEOUT_S = 60  # healthy after ~2 s here; generous for a loaded CI box
FAILED = pytest.StashKey[bool]()  # set on a test whose body failed
CHROMIUM = "/usr/bin/chromium"  # Debian's browser; `playwright install` cannot run offline
# Streamlit scrolls its main area inside the page, so a "full page" screenshot is only the
# viewport: tall enough to show the heatmaps and the charts under them.
VIEWPORT = {"width": 1400, "height": 1800}
CHROMIUM_ARGS = [
    "--no-sandbox",  # tests may run as root in a container
    "--disable-gpu",
    "--disable-dev-shm-usage",  # small /dev/shm in containers crashes tabs
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
            return response.read().decode().strip() == "ok"
    except OSError:
        return False


def _stop(process: subprocess.Popen) -> None:
    """Terminate the server and everything it spawned (its own process group), then reap it."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        except ProcessLookupError:
            pass


@pytest.fixture(scope="session")
def streamlit_server():
    """Base URL of ``streamlit run app.py`` served from the repo root for the whole session."""
    ARTIFACTS.mkdir(exist_ok=True)
    port = _free_port()
    url = f"http://{HOST}:{port}"
    log_path = ARTIFACTS / "streamlit-server.log"
    command = [
        sys.executable, "-m", "streamlit", "run", "app.py",
        "--server.headless", "true",
        "--server.address", HOST,
        "--server.port", str(port),
        "--browser.gatherUsageStats", "false",
        "--server.fileWatcherType", "none",
    ]
    # Each test closes its tab; bnviz keeps a closed tab's runs for BNVIZ_IDLE_TIMEOUT (60 s by
    # default), holding trainer slots and CPU the next tests need. 10 s: well above the live
    # page's 0.5-2 s polling, well below a test's length.
    env = {**os.environ, "BNVIZ_IDLE_TIMEOUT": "10"}
    with open(log_path, "wb") as log:
        # A new session makes the server the leader of a process group we can end as one.
        process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT,
                                   env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while not _healthy(url):
            if process.poll() is not None or time.monotonic() > deadline:
                reason = (f"exited with code {process.returncode}" if process.poll() is not None
                          else f"not healthy after {SERVER_START_TIMEOUT_S} s")
                raise RuntimeError(f"streamlit server {reason}; its output:\n{log_path.read_text(errors='replace')}")
            time.sleep(0.25)  # outside the browser: no page to wait on
        yield url
    finally:
        _stop(process)


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    for old in ARTIFACTS.glob("*.png"):  # the folder shows the last browser run, not a mix of runs
        old.unlink()
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
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
