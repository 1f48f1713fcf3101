"""The trainability map in a real browser: a click on a map's cell opens that cell's run.

The map is the shipped ``assets/maps/ioffe-fig1.json``; the click lands on the cell's pixel,
found from Plotly's own axes in the page, as a person's would. The opened run is that
cell's exact config (read back from the page's URL) and trains with the live pictures.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlparse

from playwright.sync_api import expect

from bnviz.reproduce.map_data import shipped_maps
from tests.test_browser import PROGRESS_JS, SETTLE_MS, assert_no_exception, open_app, reset, wait_for

# Where cell (row, column) of panel `panel` (0: no BN, 1: BN) lies in the first map's chart, from the
# chart's top-left corner: Playwright then finds the chart where it is at the moment it acts, waits
# until it stands still, and points there (the page moves the map while it draws what is above it).
CELL_JS = """([panel, row, column]) => {
  const chart = document.querySelector('.st-key-map-view .js-plotly-plot');
  if (!chart || !chart._fullLayout) return null;
  const layout = chart._fullLayout;
  const xaxis = layout['xaxis' + (panel ? panel + 1 : '')], yaxis = layout.yaxis;
  return {x: xaxis._offset + xaxis.l2p(column), y: yaxis._offset + yaxis.l2p(row)};
}"""

# The point Plotly shows as hovered in the first map on the page: [panel, row, column] (the axes count cells).
HOVERED_JS = """() => {
  const chart = document.querySelector('.st-key-map-view .js-plotly-plot');
  const point = chart && chart._hoverdata && chart._hoverdata[0];
  if (!point) return null;
  const id = point.xaxis._id;
  return [id === 'x' ? 0 : Number(id.slice(1)) - 1, point.y, point.x];
}"""


def hovered(page, chart, cell):
    """Point at the cell and return where (from the chart's corner) once Plotly says that cell is hovered."""
    where = page.evaluate(CELL_JS, cell)
    if where is None:
        return None
    chart.hover(position=where)
    page.wait_for_timeout(300)  # Plotly picks the hovered point
    return where if page.evaluate(HOVERED_JS) == list(cell) else None


def test_clicking_a_map_cell_opens_its_run(streamlit_server, page, screenshot):
    data = next(d for d in shipped_maps()[0] if d.spec.name == "ioffe-fig1")
    spec = data.spec
    v, row, column = 1, spec.shape[1] // 2, spec.shape[2] - 2  # a BN cell at a high learning rate
    expected = spec.config(spec.vary.values[v], spec.x.values[column], spec.rows[row])
    open_app(page, streamlit_server, "preset=ioffe-fig1")
    page.locator(".st-key-map-view summary").first.click()  # the expander opens on a click
    chart = page.locator(".st-key-map-view .js-plotly-plot").first
    expect(chart).to_be_visible(timeout=SETTLE_MS)
    chart.scroll_into_view_if_needed()
    where = wait_for(page, lambda: hovered(page, chart, [v, row, column]), lambda p: p is not None,
                     what="the map's cell under the pointer")
    chart.click(position=where)
    started = wait_for(page, lambda: page.evaluate(PROGRESS_JS), lambda p: p is not None and p[1] == expected.steps,
                       what="the cell's run to start")
    assert started[2] in ("running", "finished", "starting")
    query = {key: values[0] for key, values in parse_qs(urlparse(page.url).query).items()}
    assert query["preset"] == "ioffe-fig1" and query.get("norm") == "batchnorm", page.url
    assert float(query["lr"]) == expected.lr and query["steps"] == str(expected.steps)
    assert float(query.get("init_sigma", spec.base.init_sigma)) == expected.init_sigma
    expect(page.get_by_text("Opened the map's cell")).to_be_visible(timeout=SETTLE_MS)
    wait_for(page, lambda: page.evaluate("() => document.querySelectorAll('.js-plotly-plot').length"),
             lambda n: n >= 6, what="the run's live charts")  # five live figures besides the map
    assert_no_exception(page)
    screenshot(page)
    reset(page)
