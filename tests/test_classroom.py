"""The classroom in miniature, on a real server: five browser sessions share two trainer slots.

A short, bounded version of ``benchmarks/classroom.py`` for CI. One server for the module
(``benchmarks/serverctl.py``: ``streamlit run app.py`` on a free loopback port, its threads
named so /proc can count trainers: a live run is one ``bnviz-run`` process and one
``bnviz-trainer-*`` thread in the server that listens to it), with BNVIZ_MAX_RUNNING=2 and a short idle timeout (15 s), so a
closed tab's run is reaped within seconds. Streamlit keeps a closed tab's session for 120 s
by default; the server here keeps it 2 s, so that the memory a session held can be seen
coming back within the test. Pages are real Chromium contexts (``conftest.browser``); a
page's state is read from its own words (``browserclient.STATE_JS``); twelve more sessions speak
Streamlit's websocket protocol without a browser (``benchmarks/streamclient.py``).

Checked: every session gets its page; two train and advance; the rest say how many are ahead
and start when a slot frees (Reset, or a tab closed mid-run), and a tab closed while queued
does not take a slot; no exception anywhere; after all tabs close the run processes and threads end,
the server's threads come back to baseline and memory stops growing; a diverging run and a
run whose trainer raises say so on their own page only; a server restart loses the live run
and the page says so and how to start again; twelve protocol sessions pressing Start at once
are all served in turn.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pytest

from bnviz.serve.settings import DEFAULT_QUEUE_TIMEOUT, ENV_IDLE_TIMEOUT, ENV_MAX_RUNNING, REAP_SECONDS, REFRESH_SECONDS
from testsupport import browserclient, classroom_report, serverctl
from testsupport.streamclient import StreamClient

ARTIFACTS = serverctl.ARTIFACTS
MAX_RUNNING = 2
IDLE_TIMEOUT = 15.0  # short, yet above the stalls an open page can have on a busy 2-core box (5 and 10 s reaped open tabs here)
SESSION_TTL = 2  # server.disconnectedSessionTTL: Streamlit's default is 120 s
REAPED_WITHIN = IDLE_TIMEOUT + REAP_SECONDS + 10  # idle timeout, one reaper sweep, and slack for a busy box
LOAD_MS = 90_000  # the first page of a fresh server imports torch and loads MNIST
SETTLE_MS = 20_000  # a click's rerun, a queued page's next poll, a run's first steps
POLL_MS = 250
LONG = "steps=200000"  # still training when the test looks
DIVERGES = "activation=relu&init=gaussian&init_sigma=1.0&lr=10.0&depth=5&steps=200000"  # NaN loss by step ~3
RAISES = "norm=batchnorm&batch_size=1&steps=200000"  # BatchNorm1d refuses a batch of one: the trainer raises
ABANDONED_S = DEFAULT_QUEUE_TIMEOUT + 1  # a queued tab silent this long is passed over by the pool, although
#                                        the reaper drops it only after IDLE_TIMEOUT
QUEUED_POLL = REFRESH_SECONDS["queued"]  # a queued page's heartbeat: its last one came at most this long before it closed
THREADS_BACK_S = 20  # a session's script thread ends just after its trainer; slack for a busy CI box
ROUNDS = 3  # open-and-close rounds for the memory check
MEMORY_GROWTH_MB = 40  # RSS may grow this much from the first round's end to the last's (allocator noise)


@dataclass
class Tab:
    context: object
    page: object
    errors: list[str] = field(default_factory=list)  # the page's uncaught errors and console errors

    def __post_init__(self):
        self.page.on("pageerror", lambda error: self.errors.append(f"uncaught: {error}"))
        self.page.on("console", lambda message: message.type == "error" and self.errors.append(message.text))

    def state(self) -> tuple[str, int | None, int | None]:
        return classroom_report.parse(self.page.evaluate(browserclient.STATE_JS))

    def wait(self, done, what: str, timeout_ms: int = SETTLE_MS):
        """Poll the page's state in the browser's time until ``done(state)``; returns the state."""
        deadline = time.monotonic() + timeout_ms / 1000
        state = self.state()
        while not done(state):
            assert time.monotonic() < deadline, f"timed out after {timeout_ms} ms waiting for {what}; {self.story()}"
            self.page.wait_for_timeout(POLL_MS)
            state = self.state()
        return state

    def story(self) -> str:
        """What the page showed lately, for a failure's message: its recorder's last changes (seconds before
        now) and the start of its text (a reconnecting page says so there)."""
        log, now, text = self.page.evaluate(
            "() => [window.__classroom ? window.__classroom.log.slice(-12) : [], Date.now(), "
            "document.body.innerText.slice(0, 400)]")
        changes = ", ".join(f"{(ms - now) / 1000:.1f} s {state!r}" for ms, state in log)
        return f"state {self.state()}; last changes: {changes}; page text: {text!r}; errors: {self.errors[:3]} ... {self.errors[-2:]}"

    def press(self, key: str) -> None:
        button = self.page.locator(f".st-key-{key} button:visible")
        button.wait_for(timeout=SETTLE_MS)
        button.click(force=True)  # the charts redraw under the pointer: see tests/test_browser.py

    def start(self) -> tuple:
        """Press Start and wait until the page is either training or in the queue."""
        self.press("start")
        return self.wait(lambda s: s[0] in ("running", "queued", "diverged", "error"), "running or queued")

    def advancing(self, timeout_ms: int = SETTLE_MS) -> None:
        first = self.wait(lambda s: s[0] == "running" and s[1] > 0, "a first step", timeout_ms)
        self.wait(lambda s: s[0] == "running" and s[1] > first[1], f"the step to grow past {first[1]}")

    def first_seen(self, kind: str) -> float:
        """Wall-clock time at which the page first showed a state of this kind, by its own 100 ms recorder
        (``browserclient.RECORDER_JS``): the driver, slow on a busy box, may look much later."""
        deadline = time.monotonic() + SETTLE_MS / 1000
        while True:  # the driver may have seen the state before the recorder's next tick
            log = self.page.evaluate("() => window.__classroom.log")
            seen = [ms / 1000 for ms, state in log if classroom_report.parse(state)[0] == kind]
            if seen:
                return seen[0]
            assert time.monotonic() < deadline, f"the page's recorder never saw {kind!r}; {self.story()}"
            self.page.wait_for_timeout(POLL_MS)

    def texts(self, kind: str) -> list[str]:
        return self.page.get_by_test_id(kind).all_inner_texts()

    def assert_no_exception(self) -> None:
        assert self.page.get_by_test_id("stException").count() == 0
        assert not self.page.evaluate("() => document.body.textContent.includes('Traceback')")


@pytest.fixture(scope="module")
def server():
    env = {ENV_MAX_RUNNING: str(MAX_RUNNING), ENV_IDLE_TIMEOUT: str(IDLE_TIMEOUT)}
    with serverctl.Server(env=env, log_path=ARTIFACTS / "classroom-test-server.log",
                          options=("--server.disconnectedSessionTTL", str(SESSION_TTL))) as running:
        yield running


@pytest.fixture
def tabs(browser, server, request):
    """``open_tabs(*queries)`` -> loaded Tabs, each in its own context; all closed (screenshotted on failure) afterwards."""
    opened: list[Tab] = []
    failed_before = request.session.testsfailed

    def open_tabs(*queries: str) -> list[Tab]:
        """All asked for at once (pages load in parallel, as a class's do), then each waited for."""
        new = []
        for query in queries:
            context = browser.new_context(viewport=browserclient.VIEWPORT)
            context.add_init_script(browserclient.RECORDER_JS)
            new.append(Tab(context, context.new_page()))
            new[-1].page.goto(f"{server.url}/?{query}", wait_until="commit")
        opened.extend(new)
        for tab in new:
            loaded(tab)
        return new

    yield open_tabs
    failed = request.session.testsfailed > failed_before
    for i, tab in enumerate(opened):
        try:
            if failed and not tab.page.is_closed():
                ARTIFACTS.mkdir(exist_ok=True)
                tab.page.screenshot(path=str(ARTIFACTS / f"{request.node.name}-tab{i}.png"))
            tab.context.close()
        except Exception:  # already closed by the test
            pass


def loaded(tab: Tab) -> None:
    tab.page.locator(".st-key-start button:visible").wait_for(timeout=LOAD_MS)


def wait_server(server, done, what: str, timeout_s: float):
    """Poll the server's /proc until ``done(usage)``; returns the usage."""
    deadline = time.monotonic() + timeout_s
    usage = server.usage()
    while not done(usage):
        assert time.monotonic() < deadline, f"timed out after {timeout_s:.0f} s waiting for {what}; {usage}"
        time.sleep(0.5)  # no page to wait on: the server alone
        usage = server.usage()
    return usage


def threads_back(server, baseline) -> None:
    """Wait until the server's own threads (all but Streamlit's pools) are no more than at baseline."""
    names = ", ".join(sorted(serverctl.thread_names(server.pid)))
    wait_server(server, lambda u: classroom_report.own_threads(u) <= classroom_report.own_threads(baseline),
                f"threads back to baseline ({classroom_report.own_threads(baseline)} without Streamlit's pools; "
                f"threads when the wait began: {names})", THREADS_BACK_S)


def no_tracebacks(server) -> None:
    """None in the server's log, but Streamlit's own trip over a tab closed mid-handshake (upstream)."""
    found = [t for t in serverctl.tracebacks(server.log()) if not t.upstream_disconnect]
    assert not found, found[0].text[-3000:]


@pytest.fixture(scope="module")
def baseline(server, browser):
    """The server after one page trained briefly and closed: torch imported, MNIST loaded, pool made."""
    context = browser.new_context(viewport=browserclient.VIEWPORT)
    tab = Tab(context, context.new_page())
    tab.page.goto(f"{server.url}/?{LONG}")
    loaded(tab)
    tab.start()
    tab.advancing()
    tab.press("reset")
    tab.wait(lambda s: s[0] == "idle", "the reset")
    context.close()
    wait_server(server, lambda u: u.trainer_threads == u.run_processes == 0, "the warm-up run to end", REAPED_WITHIN)
    return classroom_report.settle_threads(server)


@pytest.fixture(autouse=True)
def no_runs_left(server, baseline):
    """Each test starts on a server with no run: what a failed test left (its tabs closed mid-run) is reaped
    first, so that one failure is reported once and not again by every test after it."""
    wait_server(server, lambda u: u.trainer_threads == u.run_processes == 0, "the runs an earlier test left",
                REAPED_WITHIN)


def test_five_sessions_two_train_the_rest_queue_and_closed_tabs_are_reaped(server, baseline, tabs):
    class_ = tabs(*[f"{LONG}&seed={i}" for i in range(5)])  # five settings of their own; every session gets its page
    states = [tab.start() for tab in class_]
    assert [s[0] for s in states] == ["running", "running", "queued", "queued", "queued"]
    assert [s[1] for s in states[2:]] == [0, 1, 2]  # "your run is next", "1 run ahead of yours", "2 runs ahead"
    assert "1 run ahead of yours" in " ".join(class_[3].texts("stAlert"))
    for tab in class_[:2]:
        tab.advancing()
    usage = server.usage()  # the queued sessions have no thread and no process
    assert (usage.trainer_threads, usage.run_processes) == (MAX_RUNNING, MAX_RUNNING)

    class_[0].press("reset")  # a slot frees: the first in line starts, the others move up
    class_[2].advancing()
    class_[3].wait(lambda s: s == ("queued", 0, None), "next in line")
    class_[4].wait(lambda s: s == ("queued", 1, None), "1 ahead")

    class_[1].context.close()  # a tab closed mid-run: its run is reaped and its slot goes to the next
    class_[3].advancing(timeout_ms=int(REAPED_WITHIN * 1000))
    class_[4].wait(lambda s: s == ("queued", 0, None), "next in line")
    wait_server(server, lambda u: u.trainer_threads == MAX_RUNNING, "the closed tab's trainer to end",
                SETTLE_MS / 1000)  # the two pages still training have theirs
    for tab in (class_[0], *class_[2:]):
        tab.assert_no_exception()

    for tab in (class_[4], class_[2], class_[3]):  # the queued one first: it would take a freed slot
        tab.press("reset")
    for tab in class_[2:]:
        tab.wait(lambda s: s[0] == "idle", "the reset")
    for tab in class_:
        tab.context.close()
    wait_server(server, lambda u: u.trainer_threads == u.run_processes == 0, "every trainer to end", SETTLE_MS / 1000)
    threads_back(server, baseline)
    no_tracebacks(server)


def test_twelve_protocol_sessions_are_all_served_in_turn(server, baseline):
    """The load script's --clients stream path in miniature: sessions that speak Streamlit's websocket
    protocol (no browser) press Start at once, two on each of six settings; the two of a setting watch
    one run, two runs train at a time and the queue, counted in runs, drains to the last. A Start reruns
    the buttons and the live view, not the page."""
    async def class_of(count: int) -> list[StreamClient]:
        clients = [StreamClient(server.url, f"steps=2000&seed={i // 2}") for i in range(count)]
        tasks = [asyncio.create_task(client.run()) for client in clients]
        deadline = time.monotonic() + LOAD_MS / 1000
        while not all(client.loaded for client in clients) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        for client in clients:
            assert await client.press("start"), client.problems
        deadline = time.monotonic() + 180
        while not all(client.state.startswith("finished") for client in clients) and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
        for client in clients:
            await client.close()
        await asyncio.gather(*tasks)
        return clients

    with ThreadPoolExecutor(1) as thread:  # this thread has Playwright's event loop (conftest.browser)
        clients = thread.submit(asyncio.run, class_of(12)).result()
    for client in clients:
        assert client.state == "finished 2000 2000" and not client.problems and not client.exceptions, client.log
        assert client.refresh.times, "the live view's fragment never refreshed"
        assert client.full_runs == 1, client.full_runs  # loaded; Start, the queue's turn and the run's end
        #                                                 each reran the buttons and the live view alone
    queued = [client for client in clients if any(state.startswith("queued") for _, state in client.log)]
    assert len(queued) >= len(clients) - 2 * MAX_RUNNING  # two sessions to a run
    ahead = [int(state.split()[1]) for c in queued for _, state in c.log if state.startswith("queued")]
    assert 1 <= max(ahead) <= len(clients) // 2 - MAX_RUNNING - 1  # runs ahead, not sessions: at most 3 (6 runs, 2
    #                                                                slots); counted in sessions it would reach 9
    wait_server(server, lambda u: u.trainer_threads == u.run_processes == 0, "every run to end", SETTLE_MS / 1000)
    no_tracebacks(server)


def test_a_tab_closed_while_queued_never_takes_a_slot(server, baseline, tabs):
    """A student who gives up while queued: when a slot frees it goes to one who is still there.

    Had the slot gone to the closed tab, the page still open could start only once the reaper
    dropped it: IDLE_TIMEOUT after its last heartbeat. The slots are held by paused runs (Step
    from nothing), which use no core, so the pages answer quickly and the timing has room."""
    *holding, gone, waiting = tabs(*[f"{LONG}&seed={i}" for i in range(MAX_RUNNING + 2)])
    for tab in holding:
        tab.press("step")
        tab.wait(lambda s: s[0] == "paused", "a paused run")
    assert gone.start() == ("queued", 0, None) and waiting.start() == ("queued", 1, None)
    closed = time.time()
    gone.context.close()
    waiting.page.wait_for_timeout(ABANDONED_S * 1000)  # the closed tab has stopped polling
    holding[0].press("reset")
    waiting.wait(lambda s: s[0] == "running", "the slot to go to the page still open",
                 timeout_ms=int((IDLE_TIMEOUT + REAP_SECONDS) * 1000))
    started = waiting.first_seen("running") - closed
    assert started < IDLE_TIMEOUT - QUEUED_POLL, (
        f"the page still open started {started:.1f} s after the queued tab ahead of it closed: not before the "
        f"reaper dropped the closed tab ({IDLE_TIMEOUT:.0f} s); until then the freed slot trained for nobody")
    wait_server(server, lambda u: u.trainer_threads == MAX_RUNNING, "the reset run's trainer to end",
                SETTLE_MS / 1000)  # and none for the closed tab (it would live until reaped)
    for tab in (holding[1], waiting):
        tab.press("reset")
    no_tracebacks(server)


def test_threads_and_memory_come_back_after_many_sessions(server, baseline, tabs):
    """Rounds of sessions that each build a run (Step from nothing: network, probe, history, charts)
    and end; closing tabs mid-run (and waiting for the reaper) is the first test."""
    ends = []  # usage after the first and the last round
    for number in range(ROUNDS):
        round_ = tabs(*[LONG] * MAX_RUNNING)
        for tab in round_:
            tab.press("step")
        for tab in round_:
            tab.wait(lambda s: s[0] == "paused" and s[1] > 0, "a first step")
        for tab in round_:
            tab.press("reset")
        for tab in round_:
            tab.wait(lambda s: s[0] == "idle", "the reset")
            tab.context.close()
        wait_server(server, lambda u: u.trainer_threads == u.run_processes == 0, "every trainer to end", REAPED_WITHIN)
        threads_back(server, baseline)
        if number in (0, ROUNDS - 1):
            time.sleep(SESSION_TTL + 2)  # Streamlit drops the closed sessions and what they held
            ends.append(server.usage())
    growth = ends[-1].total_mb - ends[0].total_mb  # the server's and the fork server's: runs have ended
    assert growth < MEMORY_GROWTH_MB, (
        f"memory (PSS) grew {growth:.0f} MB over {ROUNDS - 1} more rounds of sessions that all ended "
        f"(baseline {baseline.total_mb:.0f} MB; after the first and the last {[round(u.total_mb) for u in ends]} MB)")
    no_tracebacks(server)


def test_a_diverging_run_and_a_raising_trainer_show_on_their_own_page_only(server, baseline, tabs):
    steady, diverging, raising = tabs(LONG, DIVERGES, RAISES)
    steady.start()
    steady.advancing()

    diverging.start()
    diverging.wait(lambda s: s[0] == "diverged", "the run to diverge")
    assert any("diverged at step" in text for text in diverging.texts("stAlertContentError"))

    raising.start()
    raising.wait(lambda s: s[0] == "error", "the trainer's error")
    assert any("ValueError" in text and "Expected more than 1 value" in text
               for text in raising.texts("stAlertContentError"))

    steady.advancing()  # the others keep training
    assert not steady.texts("stAlertContentError")
    for tab in (steady, diverging, raising):
        tab.assert_no_exception()
    wait_server(server, lambda u: u.trainer_threads == 1, "the ended runs' threads to go", REAPED_WITHIN)
    steady.press("reset")
    no_tracebacks(server)


def test_a_server_restart_loses_the_live_run_and_the_page_says_how_to_start_again(server, baseline, tabs):
    tab, = tabs(LONG)
    tab.start()
    tab.advancing()
    server.restart()
    tab.wait(lambda s: s[0] == "idle", "the page to reconnect to the new server", timeout_ms=60_000)
    assert any(text.startswith("Press Start to train") for text in tab.texts("stAlertContentInfo"))
    assert any(text.startswith("The server restarted") for text in tab.texts("stAlertContentWarning"))
    assert "steps=200000" in tab.page.url  # the settings survive: only the live run is lost
    assert tab.page.locator(".st-key-steps input[type=range]").get_attribute("aria-valuetext") == "200000"
    tab.assert_no_exception()
    tab.start()  # starting again works on the new server
    tab.advancing()
    tab.press("reset")
    no_tracebacks(server)


def run_status(tab: Tab) -> dict | None:
    return tab.page.evaluate(browserclient.STATUS_JS)


def first_run(tab: Tab) -> dict:
    """The page's first run's status, or {} while the page has none: between a full rerun's end and the live
    fragment's next run Streamlit may clear the fragment's elements that rerun had not sent yet."""
    status = run_status(tab)
    return status["runs"][0] if status and status["runs"] else {}


def test_two_tabs_on_one_link_see_one_run_and_a_fork_changes_only_its_own(server, baseline, tabs):
    """A finished run seen by two tabs: the same run (its key), the same steps, the same heatmap; then
    on a long run, one tab changes the learning rate: it forks a private run, the other's does not change."""
    first, second = tabs("steps=300", "steps=300")
    for tab in (first, second):
        tab.press("start")
    for tab in (first, second):
        tab.wait(lambda s: s[0] == "finished", "the shared run to finish", timeout_ms=60_000)
    a, b = run_status(first), run_status(second)
    assert a["runs"][0]["key"] == b["runs"][0]["key"] and a["runs"][0]["step"] == b["runs"][0]["step"] == 300
    pictures = [tab.page.evaluate(browserclient.HEATMAP_JS) for tab in (first, second)]
    assert pictures[0] is not None and pictures[0] == pictures[1]  # the same cells, the same counts
    for tab in (first, second):
        tab.press("reset")

    first, second = tabs(LONG, LONG)
    for tab in (first, second):
        tab.press("start")
    for tab in (first, second):
        tab.advancing()
    shared = run_status(first)["runs"][0]
    assert shared["key"] == run_status(second)["runs"][0]["key"]
    first.wait(lambda s: first_run(first).get("watching") == 2, "both tabs counted")
    thumb = first.page.locator(".st-key-lr input[type=range]")
    thumb.focus()
    thumb.press("ArrowLeft")  # a smaller learning rate, live
    first.wait(lambda s: first_run(first).get("forked_at") is not None, "the fork")
    mine = run_status(first)["runs"][0]
    assert mine["key"] != shared["key"] and not mine["shared"]
    first.advancing()
    theirs = run_status(second)["runs"][0]
    assert theirs["key"] == shared["key"] and theirs["shared"] and theirs["forked_at"] is None
    second.wait(lambda s: first_run(second).get("watching") == 1, "the other tab to leave the shared run")
    second.advancing()
    for tab in (first, second):
        tab.assert_no_exception()
        tab.press("reset")
    wait_server(server, lambda u: u.run_processes == 0, "every run to end", REAPED_WITHIN)
    no_tracebacks(server)



def test_a_finished_run_is_served_from_the_cache_after_a_restart_and_the_lost_ones_are_named(server, baseline, tabs):
    done, unfinished = tabs("steps=300&seed=11", f"{LONG}&seed=12")
    done.press("start")
    unfinished.start()
    done.wait(lambda s: s == ("finished", 300, 300), "the short run to finish", timeout_ms=60_000)
    key = run_status(done)["runs"][0]["key"]
    unfinished.advancing()
    time.sleep(REAP_SECONDS + 2)  # the reaper names the unfinished run in the cache folder's live.json
    server.restart()
    for tab in (done, unfinished):
        tab.wait(lambda s: s[0] == "idle", "the page to reconnect to the new server", timeout_ms=60_000)
    lost = " ".join(unfinished.texts("stAlertContentWarning"))
    assert "Lost:" in lost and "steps 200000" in lost and "seed 12" in lost and "seed 11" not in lost, lost
    done.press("start")
    done.wait(lambda s: s == ("finished", 300, 300), "the finished run from the cache", timeout_ms=SETTLE_MS)
    assert run_status(done)["runs"][0]["key"] == key
    assert server.usage().run_processes == 0  # nothing trained it again
    done.assert_no_exception()
    no_tracebacks(server)
