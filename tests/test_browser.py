"""The live page in a real browser: load, train, watch the heatmap move, switch BN, share a link.

Each test opens its own page (its own Streamlit session and run) against one server started by
``conftest.streamlit_server``. Widgets are found by the ``st-key-<key>`` class Streamlit puts on
a keyed widget's container; the heatmap's numbers are read from the Plotly figure in the page.
Screenshots land in ``test-artifacts/``. Runs are stopped with Reset at the end of each test so
the server's trainer slots are free for the next.
"""

from __future__ import annotations

import re
import time

from playwright.sync_api import expect

from bnviz.presets import PRESETS
from testsupport import browserclient

PAGE_LOAD_MS = 60_000  # the first page of a fresh server imports torch and loads MNIST: ~20 s on a busy 2-core box
SETTLE_MS = 30_000  # a click's rerun, or a run reaching a given step (generous: CI machines are shared)
POLL_MS = 200
SIDEBAR_KEYS = ("preset", "norm", "norm_position", "activation", "init", "init_sigma", "lr", "depth", "width",
                "optimizer", "schedule", "batch_size", "dataset", "seed", "steps", "compare")
BUTTON_KEYS = ("start", "pause", "resume", "step", "reset")
RUN_STEPS = 200_000  # the most allowed: a quiet machine trains ~1,000 steps/s, and a run that ends cannot be paused
RUN = f"steps={RUN_STEPS}"

# The page's run status (ui/status.py) as [step, of, status] of its first run; "paused" while this tab's
# picture is paused (a shared run goes on for the others).
PROGRESS_JS = "() => { const s = (" + browserclient.STATUS_JS + ")(); if (!s || !s.runs.length) return null; " + \
    "const r = s.runs[0]; return [r.step, r.steps, s.state === 'paused' ? 'paused' : r.status]; }"



def open_app(page, base_url: str, query: str = "") -> None:
    """Open the page and wait until the script has drawn the toolbar."""
    page.goto(f"{base_url}/{'?' + query if query else ''}")
    expect(page.get_by_test_id("stApp")).to_be_visible(timeout=PAGE_LOAD_MS)
    expect(button(page, "start")).to_be_visible(timeout=PAGE_LOAD_MS)


def button(page, key: str):
    # A button with help= is drawn twice in the DOM (one copy inside the tooltip target); one is visible.
    return page.locator(f".st-key-{key} button:visible")


def click(page, key: str) -> None:
    """Click a keyed button once it is enabled.

    ``force``: skip Playwright's wait for the element to be "stable"; with charts redrawing
    twice a second on a busy machine that wait alone took ~10 s per click.
    """
    target = button(page, key)
    expect(target).to_be_enabled(timeout=SETTLE_MS)
    target.click(force=True)


def wait_for(page, read, done, timeout_ms: int = SETTLE_MS, what: str = "condition"):
    """Poll ``read()`` in the browser's time until ``done(value)``; returns the value."""
    deadline = time.monotonic() + timeout_ms / 1000
    value = read()
    while not done(value):
        assert time.monotonic() < deadline, f"timed out after {timeout_ms} ms waiting for {what}; last value {value!r}"
        page.wait_for_timeout(POLL_MS)
        value = read()
    return value


def progress(page):
    return page.evaluate(PROGRESS_JS)


def heatmap(page):
    return page.evaluate(browserclient.HEATMAP_JS)


def assert_no_exception(page) -> None:
    expect(page.get_by_test_id("stException")).to_have_count(0)
    assert not page.evaluate("() => document.body.textContent.includes('Traceback')")


def radio(page, key: str, label: str):
    return page.locator(f".st-key-{key} label").filter(has_text=re.compile(f"^{re.escape(label)}$"))


def choose(page, key: str, label: str) -> None:
    option = radio(page, key, label)
    expect(option).to_be_visible()
    option.click(force=True)  # see click()


def pause(page):
    """Pause this page's run; returns its progress. A paused page redraws rarely, so screenshots are quick."""
    return press_until(page, "pause", lambda p: p is not None and p[2] == "paused", "the run to pause")


def reset(page) -> None:
    """Stop this page's run so its trainer slot is free for the next test."""
    press_until(page, "reset", lambda p: p is None, "the run to be reset")


def press_until(page, key: str, done, what: str):
    """Click until the page shows the result. A click that lands while Streamlit swaps the
    toolbar during a rerun can be lost on a loaded machine; pause and reset are idempotent,
    so clicking again is safe, and the page must still reach the state."""
    for attempt in range(3):
        click(page, key)
        try:
            return wait_for(page, lambda: progress(page), done, timeout_ms=SETTLE_MS // 3, what=what)
        except AssertionError:
            if attempt == 2:
                raise


def test_page_loads(streamlit_server, page, screenshot):
    open_app(page, streamlit_server)
    expect(page.get_by_role("heading", name="Batch Normalization, live")).to_be_visible()
    for key in SIDEBAR_KEYS:
        expect(page.locator(f".st-key-{key}")).to_be_visible()
    for key in BUTTON_KEYS:
        expect(button(page, key)).to_have_count(1)
    expect(button(page, "start")).to_be_enabled()
    expect(button(page, "pause")).to_be_disabled()  # nothing to pause yet
    assert progress(page) is None
    assert_no_exception(page)
    screenshot(page)


def test_start_trains_and_heatmap_changes(streamlit_server, page, screenshot):
    open_app(page, streamlit_server, RUN)
    click(page, "start")
    first = wait_for(page, lambda: progress(page), lambda p: p is not None and p[0] > 0, what="a first step")
    assert first[1] == RUN_STEPS
    before = wait_for(page, lambda: heatmap(page), lambda h: h is not None, what="the heatmap to draw")
    page.wait_for_timeout(2500)
    later = wait_for(page, lambda: progress(page), lambda p: p is not None and p[0] > first[0], what="the step to grow")
    after = wait_for(page, lambda: heatmap(page), lambda h: h is not None and h != before, what="the heatmap to change")
    assert after[2] == 3, "one heatmap per hidden layer of the default 3-layer MLP"
    assert after[0] > 0 and after[1] > 0
    assert later[0] > first[0] and later[2] == "running"
    assert_no_exception(page)

    paused = pause(page)
    expect(page.locator(".st-key-scrub")).to_be_visible(timeout=SETTLE_MS)  # scrubbing is offered once paused
    page.wait_for_timeout(1000)
    assert progress(page)[0] == paused[0], "a paused run must not train"
    screenshot(page)
    reset(page)


def test_switching_to_batchnorm_and_restarting_starts_a_new_run(streamlit_server, page, screenshot):
    open_app(page, streamlit_server, RUN)
    expect(page.locator(".st-key-norm_position input").first).to_be_disabled()  # placement means nothing without BN
    click(page, "start")
    # 100 steps: enough that a restarted run reads lower; a loaded machine may train slowly
    wait_for(page, lambda: progress(page), lambda p: p is not None and p[0] >= 100, timeout_ms=60_000,
             what="step 100 of the first run")
    old_step = pause(page)[0]

    choose(page, "norm", "BatchNorm")
    expect(page).to_have_url(re.compile(r"[?&]norm=batchnorm(&|$)"), timeout=SETTLE_MS)
    notice = page.get_by_text("norm none → batchnorm", exact=False)
    expect(notice).to_be_visible(timeout=SETTLE_MS)  # the live run keeps its settings until restarted
    expect(page.locator(".st-key-norm_position input").first).to_be_enabled()
    assert progress(page)[:2] == [old_step, RUN_STEPS]
    screenshot(page, "changed")

    click(page, "restart")
    expect(notice).to_have_count(0, timeout=SETTLE_MS)  # the new run has the page's settings: BN on
    restarted = wait_for(page, lambda: progress(page), lambda p: p is not None and p[0] < old_step,
                         what=f"progress to restart below step {old_step}")
    wait_for(page, lambda: progress(page), lambda p: p is not None and p[0] > restarted[0] and p[2] == "running",
             what="the new run to train")
    wait_for(page, lambda: heatmap(page), lambda h: h is not None, what="the new run's heatmap")
    assert "norm=batchnorm" in page.url
    assert_no_exception(page)
    pause(page)
    screenshot(page, "restarted")
    reset(page)


def test_shared_url_reopens_the_same_settings(streamlit_server, page, screenshot):
    open_app(page, streamlit_server, "norm=batchnorm&lr=0.1&seed=7&activation=tanh&steps=2000")
    expect(radio(page, "norm", "BatchNorm")).to_have_attribute("data-selected", "true")
    expect(page.locator(".st-key-lr input[type=range]")).to_have_attribute("aria-valuetext", "0.1")
    expect(page.locator(".st-key-seed input")).to_have_value("7")
    expect(page.locator(".st-key-activation input")).to_have_value("tanh")
    expect(page.locator(".st-key-steps input[type=range]")).to_have_attribute("aria-valuetext", "2000")
    for part in ("norm=batchnorm", "lr=0.1", "seed=7", "activation=tanh", "steps=2000"):
        assert re.search(f"[?&]{re.escape(part)}(&|$)", page.url), f"{part} missing from {page.url}"
    assert not page.get_by_test_id("stAlert").filter(has_text="URL parameter").count()
    assert_no_exception(page)
    screenshot(page)
    click(page, "start")  # the run uses the link's settings
    wait_for(page, lambda: progress(page), lambda p: p is not None and p[1] == 2000 and p[0] > 0,
             what="a run of 2000 steps")
    reset(page)


def test_bad_url_warns_and_injects_nothing(streamlit_server, page, screenshot):
    dialogs = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    open_app(page, streamlit_server, "lr=abc&depth=999&norm=%3Cscript%3Ealert(1)%3C/script%3E")
    warnings = page.get_by_test_id("stAlertContentWarning")
    for parameter in ("lr", "depth", "norm"):
        expect(warnings.filter(has_text=f"URL parameter {parameter}")).to_have_count(1)
    # The bad values fell back to the preset's, and the URL no longer carries them.
    expect(radio(page, "norm", "no BN")).to_have_attribute("data-selected", "true")
    preset_lr = f"{PRESETS['ioffe-fig1'].config.lr:g}"  # the slider shows the preset's rate as "1", "0.5"
    expect(page.locator(".st-key-lr input[type=range]")).to_have_attribute("aria-valuetext", preset_lr)
    expect(page.locator(".st-key-depth input[type=range]")).to_have_attribute("aria-valuetext", "3")
    expect(page).not_to_have_url(re.compile("abc|999|script", re.IGNORECASE))
    scripts = page.evaluate("() => [...document.querySelectorAll('script')].map(s => s.textContent)")
    assert not any("alert" in text for text in scripts)
    assert dialogs == []
    assert_no_exception(page)
    screenshot(page)

