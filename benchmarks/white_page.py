"""Soak for the white training page (ui/upstream.py): how many rounds end with a page that died.

A round: three real Chromium pages on one server with two trainer slots; two press Start and
train; the third presses Start (it queues, and a line "Others are waiting" appears above the
training pages' charts) and Reset (the line goes), again and again. That moves the training
pages' charts while their live fragment reruns back to back, the condition of Streamlit's bug.
A page died if it threw an uncaught error (Streamlit's "Cannot set a node at a delta path"
and kin); the round then counts as white.

``--root`` serves another checkout's app.py, so the same soak can run against the code before
the fix (``git worktree add /tmp/before 2057f32``) and after it, side by side in one run:

    python -m benchmarks.white_page --rounds 8 --flips 15 --root /tmp/before &
    python -m benchmarks.white_page --rounds 8 --flips 15
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from playwright.sync_api import sync_playwright

from bnviz.serve.settings import ENV_IDLE_TIMEOUT, ENV_MAX_RUNNING
from testsupport import browserclient, serverctl

LONG = "steps=200000"  # still training when the round ends
FLIP_MS = 1_200  # between the third page's Start and Reset: a few of the live view's polls


def round_(browser, url: str, seed: int, flips: int) -> tuple[list[str], list[str]]:
    """One round; returns the pages' states at its end and their uncaught errors."""
    errors: list[str] = []
    pages = [browserclient.open_page(browser, f"{url}/?{LONG}&seed={seed + i}", i, timers=False) for i in range(3)]
    for page in pages:
        page.page.on("pageerror", lambda error, i=page.index: errors.append(f"page {i}: {error}"))
    try:
        browserclient.wait_loaded(pages, browserclient.PAGE_LOAD_TIMEOUT_S)
        for page in pages[:2]:
            browserclient.press(page, "start")
            page.page.wait_for_timeout(FLIP_MS)
        for _ in range(flips):
            for key in ("start", "reset"):
                if not errors:  # a dead page has no buttons
                    browserclient.press(pages[2], key)
                pages[2].page.wait_for_timeout(FLIP_MS)
        return [page.state() for page in pages], errors
    finally:
        for page in pages:
            page.context.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--flips", type=int, default=15, help="Start-and-Reset pairs of the third page per round")
    parser.add_argument("--root", type=Path, default=serverctl.REPO_ROOT, help="the checkout whose app.py is served")
    args = parser.parse_args()
    env = {ENV_MAX_RUNNING: "2", ENV_IDLE_TIMEOUT: "15"}
    white = 0
    with serverctl.Server(env=env, root=args.root.resolve(), options=("--server.disconnectedSessionTTL", "2")) as server, \
            sync_playwright() as playwright:
        browser = serverctl.launch_chromium(playwright)
        for number in range(args.rounds):
            states, errors = round_(browser, server.url, 10 * number, args.flips)
            white += bool(errors)
            print(f"round {number + 1}: pages {states}; {errors[0][:90] if errors else 'no page died'}", flush=True)
            time.sleep(8)  # the closed pages' runs are reaped before the next round
        browser.close()
    print(f"{args.root.resolve()}: {white} of {args.rounds} rounds had a page die")


if __name__ == "__main__":
    main()
