"""A bnviz server on a loopback port, its memory and threads from /proc, and Debian's Chromium.

Shared by ``benchmarks/classroom.py``, ``tests/conftest.py`` and ``tests/test_classroom.py``. The server is started the way
Streamlit's own e2e suite starts one: ``streamlit run app.py`` on a free port of
127.0.0.1 (through a launcher that only names threads, see ``LAUNCHER``), then
``/_stcore/health`` is polled until it says ``ok``. It leads its own process
group, so stopping it ends everything it spawned. ``restart()`` reuses the port, which is
what a browser that lost its server reconnects to.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = REPO_ROOT / "test-artifacts"  # logs and screenshots of servers and browsers (gitignored)
HOST = "127.0.0.1"  # loopback only: nothing started here is reachable from outside
START_TIMEOUT_S = 90  # healthy after ~2 s on an idle box; generous for a loaded one
STOP_TIMEOUT_S = 15
CHROMIUM = "/usr/bin/chromium"  # Debian's browser; `playwright install` cannot run offline
CHROMIUM_ARGS = [
    "--no-sandbox",  # may run as root in a container
    "--disable-gpu",
    "--disable-dev-shm-usage",  # small /dev/shm in containers crashes tabs
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
            return response.read().decode().strip() == "ok"
    except OSError:
        return False


# Python 3.11 does not give its threads native names, so /proc cannot tell a trainer from
# Streamlit's own workers. The server is started through this launcher, which names each
# native thread after its Python thread (first 15 bytes, the kernel's limit) and then runs
# `streamlit run` exactly as `python -m streamlit` does. Nothing else changes.
LAUNCHER = """
import ctypes, sys, threading
_prctl, _inner = ctypes.CDLL(None).prctl, threading.Thread._bootstrap_inner
def _named(self):
    try:
        _prctl(15, self.name.encode()[:15], 0, 0, 0)  # PR_SET_NAME
    except Exception:
        pass
    _inner(self)
threading.Thread._bootstrap_inner = _named
from streamlit.web.cli import main
sys.argv = ["streamlit", *sys.argv[1:]]
main(prog_name="streamlit")
"""
# One per live run: a trainer's thread is named bnviz-trainer-<id> (bnviz/trainer.py), and so is
# the thread that listens to a run in a child process (bnviz/process.py).
TRAINER_THREAD = "bnviz-trainer-"
STREAMLIT_POOLS = ("AnyIO worker", "ThreadPoolExecu")  # thread names, cut to 15 characters by the kernel
RUN_PROCESS = "bnviz-run"  # a run's child process names itself so (bnviz/process.py)


@dataclass(frozen=True)
class Usage:
    """One reading of a server's /proc/<pid>/status, /proc/<pid>/stat and its threads' names, and
    of every process it started: runs train in child processes (the fork server's children)."""

    rss_mb: float  # VmRSS: resident memory now
    peak_rss_mb: float  # VmHWM: the highest VmRSS so far
    threads: int
    cpu_s: float  # user + system CPU time so far
    trainer_threads: int  # threads named bnviz-trainer-*: live runs
    worker_threads: int  # Streamlit's pools, grown on demand: AnyIO workers (at most 40, shrink when idle)
    # and the file watcher's ThreadPoolExecutor (at most 4: polls config.toml and secrets every 0.2 s)
    run_processes: int  # live processes named bnviz-run: runs training
    total_mb: float  # proportional memory (PSS) of the server and all it started: shared pages counted once
    total_cpu_s: float  # CPU time of the server and all it started, ended runs included


def thread_names(pid: int) -> list[str]:
    names = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            names.append((task / "comm").read_text().strip())
        except OSError:  # the thread ended while we looked
            pass
    return names


def usage(pid: int) -> Usage:
    """``pid`` leads its process group (``Server`` starts it so): the group is all it started."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.split()
    clock = os.sysconf("SC_CLK_TCK")
    names = thread_names(pid)
    own = _stat(pid)
    runs, total_mb, total_ticks = 0, pss_mb(pid), int(own[11]) + int(own[12])
    for other in _pids():
        stat = _stat(other)
        if other == pid or stat is None or int(stat[2]) != pid:  # not the server's, or ended while we looked
            continue
        runs += _comm(other) == RUN_PROCESS and stat[0] not in "ZX"
        total_mb += pss_mb(other)
        total_ticks += sum(int(t) for t in stat[11:15])  # its own and its reaped children's (ended runs)
    return Usage(rss_mb=int(fields["VmRSS"][0]) / 1024, peak_rss_mb=int(fields["VmHWM"][0]) / 1024,
                 threads=int(fields["Threads"][0]), cpu_s=(int(own[11]) + int(own[12])) / clock,
                 trainer_threads=sum(name.startswith(TRAINER_THREAD) for name in names),
                 worker_threads=sum(name.startswith(STREAMLIT_POOLS) for name in names),
                 run_processes=runs, total_mb=total_mb, total_cpu_s=total_ticks / clock)


def _pids() -> list[int]:
    return [int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit()]


def _stat(pid: int) -> list[str] | None:
    """/proc/<pid>/stat from field 3 (state) on: [0] state, [2] process group, [11:15] CPU ticks."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2:].split()


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def pss_mb(pid: int) -> float:
    """The process's proportional set size in MB (shared pages split among their sharers); 0 once it has ended."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class Server:
    """``streamlit run app.py`` with the given environment; a context manager that always stops it."""

    def __init__(self, env: dict[str, str] | None = None, port: int | None = None, log_path: Path | None = None,
                 options: tuple[str, ...] = (), prefix: tuple[str, ...] = (), root: Path = REPO_ROOT):
        self.port = port or free_port()
        self.url = f"http://{HOST}:{self.port}"
        self.env = {**os.environ, **(env or {})}
        self._own_cache = None  # a fresh run cache folder for this server (kept across restarts), unless given
        if not (env or {}).get("BNVIZ_CACHE_DIR"):
            self._own_cache = tempfile.mkdtemp(prefix="bnviz-runs-")
            self.env["BNVIZ_CACHE_DIR"] = self._own_cache
        self.log_path = log_path
        self.options = options  # extra `--section.option value` pairs for streamlit run
        self.prefix = prefix  # a command the server runs under, e.g. ("taskset", "-c", "0"): its runs inherit it
        self.root = root  # the checkout whose app.py it serves (benchmarks/white_page.py compares two)
        self.process: subprocess.Popen | None = None
        self._log_start = 0  # where this start's output begins in the log file

    @property
    def pid(self) -> int:
        return self.process.pid

    def start(self) -> Server:
        command = [*self.prefix, sys.executable, "-c", LAUNCHER, "run", "app.py",
                   "--server.headless", "true", "--server.address", HOST, "--server.port", str(self.port),
                   "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none", *self.options]
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            first = self.process is None  # a new server starts a new log; a restart appends to it
            self._log_start = 0 if first or not self.log_path.exists() else self.log_path.stat().st_size
            output = open(self.log_path, "wb" if first else "ab")
        else:
            output = subprocess.DEVNULL
        try:
            # A new session makes the server the leader of a process group we can end as one.
            self.process = subprocess.Popen(command, cwd=self.root, stdout=output, stderr=subprocess.STDOUT,
                                            env=self.env, start_new_session=True)
        finally:
            if output is not subprocess.DEVNULL:
                output.close()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not healthy(self.url):
            if self.process.poll() is not None or time.monotonic() > deadline:
                reason = (f"exited with code {self.process.returncode}" if self.process.poll() is not None
                          else f"not healthy after {START_TIMEOUT_S} s")
                self.stop()
                raise RuntimeError(f"streamlit server {reason}; its output:\n{self.log()[-5000:]}")
            time.sleep(0.25)  # outside any browser: nothing to wait on but the clock
        return self

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """End the server and everything it spawned; SIGKILL if it does not end in time."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        try:
            os.killpg(process.pid, sig)
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=STOP_TIMEOUT_S)
        except ProcessLookupError:
            pass

    def restart(self, sig: int = signal.SIGTERM) -> Server:
        """Stop, then start again on the same port (what a redeploy or a crash-and-restart does)."""
        self.stop(sig)
        return self.start()

    def usage(self) -> Usage:
        return usage(self.pid)

    def log(self, everything: bool = False) -> str:
        """The server's output since its last start (or since the first, with ``everything``)."""
        if self.log_path is None or not self.log_path.exists():
            return ""
        data = self.log_path.read_bytes()
        return data[0 if everything else self._log_start:].decode(errors="replace")

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()
        if self._own_cache is not None:
            shutil.rmtree(self._own_cache, ignore_errors=True)


@dataclass(frozen=True)
class Traceback:
    """One traceback in the server's log."""

    text: str
    last_line: str  # the exception, e.g. "ValueError: ..."
    in_app: bool  # a frame is in this repository's code (app.py, ui/, bnviz/)
    upstream_disconnect: bool  # Streamlit 1.67's websocket endpoint tripping over a tab that closed mid-handshake


# Streamlit 1.67 + Starlette: when a tab closes while its websocket is being set up, receive_bytes()
# raises WebSocketDisconnected (a RuntimeError) and Streamlit's handler, taking it for a text frame,
# calls close() on the closed socket: "Exception in ASGI application". Not the app's code; the
# session is gone either way. Seen with thirty tabs closing at once.
UPSTREAM_DISCONNECT = ("starlette_websocket.py", "WebSocketDisconnected")


def tracebacks(log: str) -> list[Traceback]:
    """Every ``Traceback (most recent call last):`` block in a log, with its final exception line."""
    found, lines = [], log.splitlines()
    for i, line in enumerate(lines):
        if not line.startswith("Traceback (most recent call last):"):
            continue
        block = [line]
        for following in lines[i + 1:]:
            block.append(following)
            if following and not following[0].isspace():  # the exception line ends the block
                break
        text = "\n".join(block)
        in_app = any(f'File "{REPO_ROOT}/{part}' in text for part in ("app.py", "ui/", "bnviz/"))  # not a .venv here
        found.append(Traceback(text, block[-1], in_app,
                               all(marker in text for marker in UPSTREAM_DISCONNECT)))
    return found


def launch_chromium(playwright):
    """Debian's headless Chromium through Playwright (no browser download)."""
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)


# Streamlit's Plotly component swapped for one that draws nothing: every message still arrives
# and every refresh still runs on the server, but this machine's cores are not also spent
# drawing charts (a student's laptop draws its own).
NO_CHART_JS = "export function PlotlyChart() { return null; } export default PlotlyChart;"


def skip_drawing(target) -> None:
    """Serve ``NO_CHART_JS`` for the Plotly component to a Playwright page or context."""
    target.route("**/PlotlyChart*.js", lambda route: route.fulfill(content_type="application/javascript",
                                                                     body=NO_CHART_JS))
