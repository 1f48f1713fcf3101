"""Issue 17's attack table under load, against one real bnviz server with the default budget
(``python -m benchmarks.classroom --attacks``); the fast attacks are tests (tests/test_guard.py).

1. A link at every limit (20 x 1024 units, batch 2048, 200,000 steps): Start is refused in words
   and no run process starts.
2. Four tabs each start the run the default budget admits that needs the most memory (and the
   rest of the class opens the page): the server's, the fork server's and the runs' PSS together,
   the class total the budget allows, against a 2.7 GB container.
3. Compare tabs pressing Start again every few seconds while the CPU is busy (the traceback of
   issue 17: one run of a comparison drawn while another was starting): exceptions on the pages
   and tracebacks in the server's log.
4. A link of 1,001 parameters and a link with a repeated key: the page says so.
"""

from __future__ import annotations

import subprocess
import sys
import time

from bnviz import budget
from bnviz.config import RunConfig
from testsupport import serverctl
from testsupport.browserclient import PAGE_LOAD_TIMEOUT_S, open_page, press, wait_loaded
from testsupport.classroom_report import loadavg

AT_THE_LIMITS = "/?depth=20&width=1024&batch_size=2048&steps=200000"
# The run the default budget admits that needs the most memory (a search over the sidebar's grid, README)
WORST_MEMORY = RunConfig(dataset="fashion-mnist", depth=19, width=1024, activation="relu", norm="noise", batch_size=64,
                         steps=10_000)  # 26 minutes of a core: within the budget's 30
COMPARE = "/?preset=noisy-bn&compare=1&steps=3000"
CONTAINER_MB = 2700  # Community Cloud's largest allowance


def _text(session) -> str:
    try:
        return session.page.inner_text("body")
    except Exception as error:  # a crashed page
        return f"unreadable ({type(error).__name__})"


def _exceptions(sessions) -> int:
    return sum(session.page.locator("[data-testid='stException']").count() for session in sessions)


def attacks(args) -> int:
    """Runs the four attacks, prints what each did; returns the number of attacks that did not hold."""
    from playwright.sync_api import sync_playwright

    failed = 0
    with serverctl.Server(env={"BNVIZ_IDLE_TIMEOUT": "20"}, log_path=serverctl.ARTIFACTS / "attacks-server.log") as server, \
            sync_playwright() as playwright:
        browser = serverctl.launch_chromium(playwright)
        try:
            rest = server.usage()
            print(f"server up: {rest.total_mb:.0f} MB PSS; load average {loadavg()}", flush=True)

            # 1. at every limit
            page = open_page(browser, server.url + AT_THE_LIMITS, 0, timers=False, draw=False)
            wait_loaded([page], PAGE_LOAD_TIMEOUT_S)
            press(page, "start")
            page.page.wait_for_timeout(3000)
            refused = "Not started. This run needs ~" in _text(page)
            processes = server.usage().run_processes
            failed += not refused or processes > 0
            print(f"1. at every limit: refused in words {refused}; run processes {processes}", flush=True)
            page.context.close()
            rest = server.usage()  # a page served: the fork server is up and warm, no run

            # 2. four tabs at the most memory the budget admits, and the rest of the class opening the page
            cost = budget.estimate(WORST_MEMORY)
            query = "/?" + "&".join(f"{k}={v}" for k, v in WORST_MEMORY.to_query().items())
            heavy = [open_page(browser, server.url + query, i, timers=False, draw=False) for i in range(4)]
            others = [open_page(browser, server.url + "/", 4 + i, timers=False, draw=False)
                      for i in range(max(0, args.sessions - 4))]
            wait_loaded(heavy + others, PAGE_LOAD_TIMEOUT_S)
            for session in heavy:
                press(session, "start")
            peak, runs, end = 0.0, 0, time.time() + args.duration
            while time.time() < end:
                usage = server.usage()
                peak, runs = max(peak, usage.total_mb), max(runs, usage.run_processes)
                time.sleep(0.5)
            failed += peak > CONTAINER_MB
            print(f"2. {len(heavy)} runs of {WORST_MEMORY.to_query()} (estimated {cost.memory_mb:.0f} MB, "
                  f"{cost.step_seconds * 1000:.0f} ms a step each) with {len(others)} more pages open: "
                  f"{runs} run processes, server + fork server + runs {peak:.0f} MB PSS at peak "
                  f"(after one page, no run: {rest.total_mb:.0f} MB); load average {loadavg()}", flush=True)
            for session in heavy + others:
                session.context.close()

            # 3. compare tabs pressing Start again and again on a busy CPU
            burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
            try:
                tabs = [open_page(browser, server.url + COMPARE, i, timers=False, draw=False) for i in range(2)]
                wait_loaded(tabs, PAGE_LOAD_TIMEOUT_S)
                seen = 0
                for _ in range(args.rounds):
                    for tab in tabs:
                        press(tab, "start")
                    for _ in range(20):  # watch the pages while the runs start
                        seen += _exceptions(tabs)
                        time.sleep(0.25)
                tracebacks = [t for t in serverctl.tracebacks(server.log()) if not t.upstream_disconnect]
                failed += seen > 0 or len(tracebacks) > 0
                print(f"3. {len(tabs)} compare tabs x {args.rounds} Starts on a busy CPU (load average {loadavg()}): "
                      f"exceptions seen on the pages {seen}, tracebacks in the server log {len(tracebacks)}", flush=True)
                for tab in tabs:
                    tab.context.close()
            finally:
                for burner in burners:
                    burner.kill()
                    burner.wait()

            # 4. links the server cannot read whole
            long = open_page(browser, server.url + "/?" + "&".join(f"p{i}=1" for i in range(1001)), 0, timers=False)
            twice = open_page(browser, server.url + "/?lr=1&lr=0.2", 1, timers=False)
            wait_loaded([long, twice], PAGE_LOAD_TIMEOUT_S)
            long.page.wait_for_timeout(2000)
            dropped = "so it ignored all of them" in _text(long)
            repeated = "lr appears 2 times" in _text(twice)
            failed += not dropped or not repeated
            print(f"4. a link of 1,001 parameters said so: {dropped}; a repeated key said so: {repeated}", flush=True)
        finally:
            browser.close()
    return failed
