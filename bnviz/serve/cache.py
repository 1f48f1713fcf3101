"""RunCache: finished runs by key, in memory within a byte bound and on disk as run files.

A finished lesson run is the same for every later visitor (one config, one history), so the
server keeps it: the newest in memory, at most ``max_bytes`` of recorded arrays (least
recently used out first), and every one as a run file (``docs/run-format.md``) named by its
key in a folder that outlives the server, at most ``max_disk_bytes`` of them (oldest out
first). After a restart a run comes back from its file: the numbers as the run file keeps
them (six significant digits, counts exact), opened in well under a second.

Files are written by a background thread (a 20-layer run's file is ~20 MB of JSON) through a
temporary name and a rename, so a reader never sees half a file; a file that does not read
back (damaged, another version's) is ignored and removed. The folder also holds
``live.json``: the unfinished runs of the server that wrote it, so the next one can name the
runs a restart lost (``write_live`` / ``read_live``).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import threading
from collections import OrderedDict
from pathlib import Path
from types import MappingProxyType

import numpy as np

from bnviz import runfile
from bnviz.config import RunConfig
from bnviz.snapshot import Snapshot

DEFAULT_FOLDER = Path(tempfile.gettempdir()) / "bnviz-runs"  # the deployment's temp dir: writable everywhere
DEFAULT_MEMORY_MB = 256  # a hundred finished lesson runs or more: a history of at most 1,024 columns keeps ~2.4 MB
DEFAULT_DISK_MB = 1024  # run files kept: a few hundred lessons
KEY = re.compile(r"^[0-9a-f]{8,64}$")  # RunConfig.key(): nothing else becomes a file name
LIVE = "live.json"
LIVE_MAX = 200  # unfinished runs named in live.json: bounded like everything else


class RunCache:
    """Thread-safe store of finished runs' last snapshots by key."""

    def __init__(self, folder: str | Path | None = DEFAULT_FOLDER, max_bytes: int = DEFAULT_MEMORY_MB * 2**20,
                 max_disk_bytes: int = DEFAULT_DISK_MB * 2**20):
        self.folder = Path(folder) if folder is not None else None
        self.max_bytes = max_bytes
        self.max_disk_bytes = max_disk_bytes
        self.problem = ""  # why the folder cannot be used, for the server log
        if self.folder is not None:
            try:
                self.folder.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                self.problem = f"the run cache folder {self.folder} cannot be made ({error}); finished runs stay in memory only"
                self.folder = None
        self._lock = threading.Lock()
        self._memory: OrderedDict[str, Snapshot] = OrderedDict()  # least recently used first
        self._bytes = 0
        self._writing: dict[str, threading.Thread] = {}

    def put(self, key: str, snapshot: Snapshot) -> None:
        """Keep a finished run; its file is written in the background. Returns at once."""
        if not KEY.match(key):
            return  # a private run's key: not shared, not kept
        with self._lock:
            self._remember(key, snapshot)
            if self.folder is not None and key not in self._writing and not self._path(key).exists():
                writer = threading.Thread(target=self._write, args=(key, snapshot), name="bnviz-cache-writer",
                                          daemon=True)
                self._writing[key] = writer
                writer.start()

    def get(self, key: str) -> Snapshot | None:
        """The finished run of this key: from memory, else from its file; None if this server never had it."""
        if not KEY.match(key):
            return None
        with self._lock:
            snapshot = self._memory.get(key)
            if snapshot is not None:
                self._memory.move_to_end(key)
                return snapshot
        path = self._path(key) if self.folder is not None else None
        if path is None or not path.exists():
            return None
        try:
            snapshot = snapshot_from_run(runfile.read_run(path))
        except (ValueError, OSError, KeyError):  # damaged, or another version's: train it again
            path.unlink(missing_ok=True)
            return None
        if snapshot.config.key() != key:
            return None
        with self._lock:
            self._remember(key, snapshot)
        return snapshot

    def recent(self) -> list[tuple[str, Snapshot]]:
        """(key, snapshot) of the runs kept in memory, oldest first (the class view lists them)."""
        with self._lock:
            return list(self._memory.items())

    def memory_bytes(self) -> int:
        with self._lock:
            return self._bytes

    def flush(self, timeout: float | None = None) -> None:
        """Wait for the files being written (tests; a server shutting down)."""
        for writer in list(self._writing.values()):
            writer.join(timeout)

    def write_live(self, runs: list[dict]) -> None:
        """Name this server's unfinished runs in ``live.json`` (what a restart would lose)."""
        if self.folder is None:
            return
        _atomic_write(self.folder / LIVE, json.dumps(runs[:LIVE_MAX]))

    def read_live(self) -> list[dict]:
        """The unfinished runs the previous server named, less those that finished since."""
        if self.folder is None:
            return []
        try:
            runs = json.loads((self.folder / LIVE).read_text())
        except (OSError, ValueError):
            return []
        if not isinstance(runs, list):
            return []
        return [run for run in runs[:LIVE_MAX] if isinstance(run, dict) and isinstance(run.get("key"), str)
                and not (KEY.match(run["key"]) and self._path(run["key"]).exists())]

    def _remember(self, key: str, snapshot: Snapshot) -> None:
        if key in self._memory:
            self._memory.move_to_end(key)
            return
        size = nbytes(snapshot)
        if size > self.max_bytes:
            return
        self._memory[key] = snapshot
        self._bytes += size
        while self._bytes > self.max_bytes:
            _, old = self._memory.popitem(last=False)
            self._bytes -= nbytes(old)

    def _path(self, key: str) -> Path:
        return self.folder / f"{key}.json"

    def _write(self, key: str, snapshot: Snapshot) -> None:
        try:
            _atomic_write(self._path(key), json.dumps(runfile.to_run_dict(snapshot), allow_nan=False,
                                                      separators=(",", ":")))
            self._trim()
        except OSError:  # a full or read-only disk: the run stays in memory
            pass
        finally:
            with self._lock:
                self._writing.pop(key, None)

    def _trim(self) -> None:
        """Oldest run files out until the folder is within its bound."""
        files = sorted(self.folder.glob("*.json"), key=lambda path: path.stat().st_mtime)
        files = [path for path in files if path.name != LIVE]
        total = sum(path.stat().st_size for path in files)
        for path in files:
            if total <= self.max_disk_bytes:
                break
            total -= path.stat().st_size
            path.unlink(missing_ok=True)


def nbytes(snapshot: Snapshot) -> int:
    """The bytes a snapshot's arrays hold (what the memory bound counts)."""
    arrays = [*snapshot.columns.values(), snapshot.accuracy_steps, snapshot.accuracy, snapshot.landscape_steps,
              snapshot.landscape, snapshot.pre_edges, snapshot.post_edges]
    return sum(int(np.asarray(array).nbytes) for array in arrays)


def snapshot_from_run(run: dict) -> Snapshot:
    """A Snapshot from a run file as ``runfile.read_run`` returns it: what the page draws of a finished run."""
    layers = run["layers"]
    n = len(run["steps"])

    def stacked(name, *trailing):  # (columns, layers, *trailing)
        if not layers:
            return np.zeros((n, 0, *trailing))
        return np.stack([layer[name] for layer in layers], axis=1)

    def percentiles(name):
        return np.stack([np.stack([layer[name][p] for p in runfile.PERCENTILE_KEYS], axis=1) for layer in layers],
                        axis=1) if layers else np.zeros((n, 0, 3))

    columns = {"steps": run["steps"], "count": run.get("count", np.ones(n, dtype=np.int64)), "loss": run["loss"],
               "hist_pre": stacked("hist"), "hist_post": stacked("post_hist"), "mean": stacked("mean"),
               "std": stacked("std"), "percentiles": percentiles("percentiles"),
               "unit_percentiles": percentiles("unit_percentiles"), "saturation": stacked("saturation"),
               "nonfinite": stacked("nonfinite"), "grad_norm": stacked("grad_norm")}
    if layers and all("near_zero" in layer for layer in layers):  # recorded since fastai's near-zero fraction
        columns["near_zero"] = stacked("near_zero")
    for array in columns.values():
        array.flags.writeable = False
    landscape = run.get("landscape", {"steps": np.zeros(0, dtype=np.int64)})
    lr_events = run.get("lr_events", {"steps": [], "values": []})
    config = RunConfig.from_dict(run["config"])
    extra = {}
    for name in ("train_accuracy", "batch_accuracy"):  # recorded since the train/eval accuracies
        if name in run:
            extra[name] = run[name]["values"]
    if "reestimates" in run:
        found = run["reestimates"]
        extra["reestimates"] = tuple((int(step), float(before), float(after)) for step, before, after
                                     in zip(found["steps"], found["before"], found["after"]))
    if "running_stats" in run and len(run["running_stats"]["steps"]):
        found = run["running_stats"]
        extra["running_steps"] = found["steps"]
        extra["running_stats"] = np.stack([found[key] for key in runfile.RUNNING_KEYS], axis=2)  # (r, layers, 6)
    return Snapshot(**extra,
        config=config, status=run["status"], message=run["message"], step=int(run["steps"][-1]) if n else 0,
        version=1, layer_names=tuple(layer["name"] for layer in layers),
        pre_edges=layers[0]["bin_edges"] if layers else np.zeros(0),
        post_edges=layers[0].get("post_bin_edges", np.zeros(0)) if layers else np.zeros(0),
        stride=int(run.get("stride", 1)), lr=config.lr, columns=MappingProxyType(columns),
        accuracy_steps=run["test_accuracy"]["steps"], accuracy=run["test_accuracy"]["values"],
        lr_events=tuple(zip((int(s) for s in lr_events["steps"]), (float(v) for v in lr_events["values"]))),
        landscape_steps=landscape["steps"],
        landscape=np.stack([landscape[key] for key in runfile.LANDSCAPE_KEYS], axis=1) if len(landscape["steps"])
        else np.zeros((0, 3)))


def _atomic_write(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)
