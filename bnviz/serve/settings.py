"""The serving wing's settings and their defaults: what a deployer can change, and the page's cadence.

Imports nothing, so tests, benchmarks and the page share these without loading Streamlit,
torch or the pool. Deployers set the limits with environment variables (on Streamlit
Community Cloud, root-level secrets become environment variables).
"""

ENV_MAX_RUNNING = "BNVIZ_MAX_RUNNING"  # trainers at once for the whole server
ENV_IDLE_TIMEOUT = "BNVIZ_IDLE_TIMEOUT"  # seconds without a poll before a tab's runs are stopped
ENV_RUNS_IN = "BNVIZ_RUNS_IN"  # "process" or "thread"

DEFAULT_MAX_RUNNING = 4  # trainers at once: ~2 per core keeps each page fluid
DEFAULT_IDLE_TIMEOUT = 50.0  # seconds without a poll before a run is taken for abandoned: with the
#                             reaper's sweep, a closed tab's trainer stops within a minute
DEFAULT_QUEUE_TIMEOUT = 5.0  # a queued page polls every second: five missed polls, probably closed
RUNS_IN = ("process", "thread")  # the first is the default
REAP_SECONDS = 5.0  # sweep for closed tabs this often: well inside the idle timeout

SERVER_PARAM = "server"  # the URL parameter that says which server a page's runs are on
REFRESH_SECONDS = {"queued": 1.0, "running": 0.4, "paused": 2.0}  # the live view's poll, by run status; idle
#   and done: none. Training polls a little faster than twice a second, so that a slow refresh now and then
#   still leaves two a second (benchmarks/bench_app.py); slower on a busy server (ui/pacing.py)
DEFAULT_STOP_GRACE = 10.0  # seconds a stopped run may take to end before its process is killed: one step
#                           of the largest run the limits admit took ~5 s here
DEFAULT_TURN_SECONDS = 600.0  # a one-tab run's turn while other runs wait: ten minutes train the lesson's
#                              50,000 steps here; with 4 slots the next in line waits at most that
ENV_TURN_SECONDS = "BNVIZ_TURN_SECONDS"  # 0: no turns
ENV_CACHE_DIR = "BNVIZ_CACHE_DIR"  # where finished runs are kept as run files (default: the temp dir's bnviz-runs)
ENV_CACHE_MB = "BNVIZ_CACHE_MB"  # finished runs kept in memory, in MB of recorded arrays (bnviz.serve.cache)
