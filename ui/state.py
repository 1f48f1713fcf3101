"""Every key this page keeps in ``st.session_state``, named in one place.

A session's state is its own view of the server's runs (STYLE: runs belong to the server,
views to the session). Widgets store their value under their ``key=``: the sidebar's
settings use the ``RunConfig`` field names themselves (``ui.controls.SETTINGS``), so a
widget, a URL parameter and a config field share one name; the other keys are below.
Tests find widgets by these keys.
"""

# The session's identity and what it asked the server for
OWNER = "owner"  # random id of this tab; the server's pool keeps its runs under it
SUBMITTED = "submitted"  # (configs, compare) of the last Start: what "settings differ" compares against
LIVE_LR = "live_lr"  # the learning rate the running run trains at (changed live without a restart)
RUN_ID = "run_id"  # counts Starts and Resets: caches below are only valid within one run
LOST_RUN = "lost_run"  # this tab's link names a server that has restarted since
NOTICES = "notices"  # messages to show once, on the next rerun
REFUSED = "refused"  # why the last Start was refused (beyond the budget), shown once, as errors
FROZEN = "frozen"  # the snapshots this tab paused on: its picture while a shared run goes on for the others

# The sidebar
CHOICE = "choice"  # ui.controls.Choice: preset, config, compare, hidden controls
PRESET = "preset"  # the preset selectbox
COMPARE = "compare"  # the "Compare side by side" toggle
COMPARE_NORMS = "compare_norms"  # the norms compared side by side (a multiselect)

# The live view
LAST = "last"  # the snapshots drawn last (a tuple of bnviz.snapshot.Snapshot)
PACE = "pace"  # seconds between the live view's polls now (ui.pacing; None: it does not poll)
CLAIMS = "claims"  # (key, claim results) cached per set of snapshot versions
HEATMAP_KIND = "heatmap_kind"  # "pre" or "post" activation heatmaps
SCRUB = "scrub"  # the scrub slider's step
SCRUB_TOP = "scrub_top"  # the newest step when the slider was last drawn
SCRUB_FOLLOW = "scrub_follow"  # the slider follows the newest step until the user drags it back
DRAWN = "drawn"  # (scene, versions, figures, when the slow ones were built): figures reused across reruns
RESTART = "restart"  # the "Restart with the new settings" button
REESTIMATE = "reestimate"  # the "Re-estimate BN's running statistics" button
CLASS_VIEW = "class-view"  # the toggle that shows this server's runs (ui.classview)
OPEN = "open-"  # prefix of each listed run's Open button, followed by the run's key
OPENED = "opened"  # an Open was clicked: the class view's fragment reruns the whole page
RUN_STATUS = "run-status"  # the keyed container of the machine-readable run status (ui.status)

# The trainability map view (ui.map_view)
MAP = "map-"  # + a map's name: its chart's selection (the clicked cell)
MAP_VIEW = "map-view"  # the container of every map (tests tell its charts from the live ones by it)

# The toolbar's buttons
CLICKED = "clicked"  # the button clicked, named by its on_click for the run it causes (ui.actions)
START, PAUSE, RESUME, STEP, RESET = "start", "pause", "resume", "step", "reset"

# Per-name families: f"{prefix}{name}"
CHART_SLOTS = "slots-"  # ui.charts: the two alternating slots of a chart
CHART = "chart-"  # ui.charts: a chart's element
STACK = "stack-"  # ui.charts: the container that stacks a chart's slots
JSON_DOWNLOAD, CSV_DOWNLOAD, HTML_DOWNLOAD = "json-", "csv-", "html"  # ui.live: the download buttons

VIEW = (LAST, SCRUB, SCRUB_TOP, SCRUB_FOLLOW, DRAWN, FROZEN)  # forgotten when a new run starts
RUN = (*VIEW, SUBMITTED, LIVE_LR)  # forgotten on Reset
