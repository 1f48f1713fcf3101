"""Issue 17 in a real browser: numbers that follow the live view (the published result, the
server's line), and a link the server reads none of (Streamlit drops a query string of more
than 1,000 parameters, saying so only in its log)."""

from __future__ import annotations

import re

from test_browser import assert_no_exception, click, open_app, progress, wait_for

# The accuracy chart's last point: the trace drawn on the second y axis of the loss and accuracy figure.
LAST_ACCURACY_JS = """() => {
  for (const chart of document.querySelectorAll('.js-plotly-plot')) {
    for (const trace of chart.data || []) {
      if (trace.yaxis === 'y2' && trace.mode === 'lines+markers') {
        const y = trace.y._inputArray || trace.y;
        if (y && y.length) return Number(y[y.length - 1]);
      }
    }
  }
  return null;
}"""
BODY_JS = "() => document.body.textContent"


def test_a_link_the_server_drops_says_so(streamlit_server, page):
    open_app(page, streamlit_server, "&".join(f"p{i}=1" for i in range(1001)))
    warning = page.locator("#bnviz-dropped")
    wait_for(page, lambda: warning.text_content(), lambda text: text and "ignored all of them" in text,
             what="the dropped-link warning")
    assert "1,001 parameters" in warning.text_content()
    assert_no_exception(page)


def test_the_published_result_and_the_server_line_follow_the_live_view(streamlit_server, page):
    open_app(page, streamlit_server, "preset=fastai-collapse&steps=30&eval_every=10&batch_size=64")
    click(page, "start")
    wait_for(page, lambda: progress(page), lambda p: p is not None and p[2] == "finished", timeout_ms=300_000,
             what="the run to finish")
    final = wait_for(page, lambda: page.evaluate(LAST_ACCURACY_JS), lambda a: a is not None, what="the accuracy chart")
    text = page.evaluate(BODY_JS)
    assert f"this run {final:.2%}" in text.replace("*", ""), re.findall(r"this run [\d.]+%", text)
    wait_for(page, lambda: page.evaluate(BODY_JS), lambda body: re.search(r"This server: 0 of \d+ trainer slots busy", body),
             timeout_ms=20_000, what="the server line to show the finished run's slot free")
    assert_no_exception(page)
