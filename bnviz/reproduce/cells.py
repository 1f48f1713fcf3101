"""Cells: many short runs, each one RunConfig, trained in parallel and kept on disk by config.

The engine under the trainability map (``bnviz.reproduce.map``), and under anything else
that needs many runs' outcomes (choosing a preset's unstated learning rate, a batch-size
sweep). Its API is one function and one record:

    from bnviz.reproduce.cells import run_cells
    cells = run_cells(configs, cache_dir="maps/cells")           # both cores, joblib's loky
    cells = run_cells(configs, backend="dask", scheduler="tcp://host:8786")   # a cluster
    cells[0].final_accuracy, cells[0].diverged_step, cells[0].steps_to(0.9)

``run_cells`` returns one ``Cell`` per config, in the configs' order. A cell is the same
config trained alone by ``Trainer`` (the app's, the CLI's), summed up in a few numbers:
what it ends at, whether and when it diverged, how saturated each layer ends, its
held-out accuracy curve. With a ``cache_dir`` each cell is written to
``<cache_dir>/<RunConfig.key()>.json`` as soon as it arrives, so a repeated map reads
every cell from disk and an interrupted one computes only the cells it lacks. Configs
that are equal are trained once.

Backends (``backend=``), all through joblib:
- ``"loky"`` (default): joblib's process pool on this machine, ``n_jobs`` workers (default:
  one per core), each with one torch thread (``Trainer`` sets it; joblib limits numpy's
  BLAS threads to cores / workers).
- ``"dask"``: joblib's Dask backend on a ``dask.distributed`` cluster, the scheduler at
  ``scheduler`` (its workers need bnviz importable); without an address a ``LocalCluster``
  of ``n_jobs`` one-thread worker processes is started for the call and closed after it.
- ``"sequential"``: in this process, one after the other (tests, debugging).
The cell's numbers do not depend on the backend: one config, one run.

joblib and dask are imported only here, and only when cells are computed: the app reads
finished maps and never needs them.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

from bnviz import machine
from bnviz.config import RunConfig
from bnviz.snapshot import final_accuracy

BACKENDS = ("loky", "dask", "sequential")
FORMAT = "bnviz-cell/1"
MAX_CELL_BYTES = 1 << 20  # a cell file is a few KB; anything bigger in the cache is not ours

OnCell = Callable[["Cell", bool], None]  # (cell, read from the cache)


@dataclass(frozen=True)
class Cell:
    """One config's run, summed up. Arrays are tuples of plain floats: a cell is small and
    travels between processes and machines as JSON-ready data."""

    key: str  # RunConfig.key() of config
    config: RunConfig
    status: str  # "finished", "diverged" or "error"
    message: str  # the trainer's last words ("diverged at step 412: ...")
    step: int  # optimizer steps done
    accuracy_steps: tuple[int, ...]  # held-out accuracy measured at these steps (every eval_every)
    accuracy: tuple[float, ...]
    final_loss: float  # NaN if diverged
    saturation: tuple[float, ...]  # per hidden layer, over its last recorded column: saturated (sigmoid,
    #                                tanh) or dead (ReLU family) fraction; NaN where undefined (linear)
    grad_norms_start: tuple[float, ...]  # per hidden layer, the weight gradient's norm at the first recorded
    #                                      step: exploding gradients at initialization show here (Yang et al. 2019)
    train_accuracy: tuple[float, ...] = ()  # at accuracy_steps: the training batches' accuracy since the evaluation before
    seconds: float = field(default=math.nan, compare=False)  # training wall time in its worker, start-up included

    @property
    def diverged(self) -> bool:
        return self.status == "diverged"

    @property
    def diverged_step(self) -> int | None:
        """The step whose loss was NaN or infinite; None if the run did not diverge."""
        return self.step if self.diverged else None

    @property
    def final_accuracy(self) -> float:
        """The last held-out accuracy; chance if the run diverged (``bnviz.snapshot.final_accuracy``)."""
        return final_accuracy(self.status, self.accuracy)

    def steps_to(self, threshold: float) -> int | None:
        """The first evaluation step at which held-out accuracy reached ``threshold``; None if never."""
        return next((step for step, value in zip(self.accuracy_steps, self.accuracy) if value >= threshold), None)

    def trains(self, threshold: float) -> bool:
        """Ended at or above ``threshold`` without diverging."""
        return not self.diverged and self.status != "error" and self.final_accuracy >= threshold

    def to_dict(self) -> dict:
        values = asdict(self)
        values["config"] = self.config.to_dict()
        return {"format": FORMAT, **{key: _plain(value) for key, value in values.items()}}

    @classmethod
    def from_dict(cls, values: dict) -> Cell:
        """Strict: the format, every field and the key are checked (a cache is read from disk)."""
        if not isinstance(values, dict) or values.get("format") != FORMAT:
            raise ValueError(f"not a bnviz cell (expected format {FORMAT!r})")
        config = RunConfig.from_dict(values["config"])
        if values["key"] != config.key():
            raise ValueError(f"cell key {str(values['key'])[:20]!r} does not match its config's {config.key()!r}")
        floats = lambda name: tuple(math.nan if v is None else float(v) for v in values[name])  # noqa: E731
        return cls(key=values["key"], config=config, status=str(values["status"]), message=str(values["message"]),
                   step=int(values["step"]), accuracy_steps=tuple(int(s) for s in values["accuracy_steps"]),
                   accuracy=floats("accuracy"), final_loss=_float(values["final_loss"]),
                   saturation=floats("saturation"), grad_norms_start=floats("grad_norms_start"),
                   train_accuracy=floats("train_accuracy") if "train_accuracy" in values else (),
                   seconds=_float(values.get("seconds")))


def run_cells(configs: Iterable[RunConfig], cache_dir=None, backend: str = "loky", n_jobs: int | None = None,
              scheduler: str | None = None, data_dir: str | None = None, on_cell: OnCell | None = None) -> list[Cell]:
    """One Cell per config, in order: read from ``cache_dir`` where there, trained where not.

    ``on_cell(cell, cached)`` is called once per distinct config as its cell is ready (cached
    ones first), e.g. for a progress line. Ctrl-C (KeyboardInterrupt) stops the workers; the
    cells finished until then are already on disk.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)} (got {backend!r})")
    if n_jobs is not None and n_jobs < 1:
        raise ValueError(f"n_jobs must be at least 1 (got {n_jobs})")
    configs = list(configs)
    cache = CellCache(cache_dir) if cache_dir is not None else None
    cells: dict[str, Cell] = {}
    missing: dict[str, RunConfig] = {}
    for config in configs:
        key = config.key()
        if key in cells or key in missing:
            continue
        cell = cache.get(key) if cache else None
        if cell is None:
            missing[key] = config
        else:
            cells[key] = cell
            if on_cell:
                on_cell(cell, True)
    for cell in _compute(list(missing.values()), backend, n_jobs, scheduler, data_dir):
        if cache:
            cache.put(cell)
        cells[cell.key] = cell
        if on_cell:
            on_cell(cell, False)
    return [cells[config.key()] for config in configs]


def run_cell(config: RunConfig, data_dir: str | None = None) -> Cell:
    """Train one config to its end with ``Trainer`` and sum it up (runs in a worker)."""
    from bnviz.trainer import Trainer  # imports torch: only a worker needs it

    started = time.perf_counter()
    trainer = Trainer(config, data_dir).start()
    trainer.join()
    return summarize(trainer.snapshot(), time.perf_counter() - started)


def summarize(snapshot, seconds: float = math.nan) -> Cell:
    """A Cell from a finished run's last Snapshot."""
    loss, saturation, grad = snapshot.column("loss"), snapshot.column("saturation"), snapshot.column("grad_norm")
    layers = len(snapshot.layer_names)
    return Cell(
        key=snapshot.config.key(), config=snapshot.config, status=snapshot.status, message=snapshot.message,
        step=snapshot.step, accuracy_steps=tuple(int(s) for s in snapshot.accuracy_steps),
        accuracy=tuple(float(a) for a in snapshot.accuracy),
        final_loss=float(loss[-1]) if len(loss) and snapshot.status != "diverged" else math.nan,
        saturation=tuple(float(v) for v in saturation[-1]) if len(saturation) else (math.nan,) * layers,
        grad_norms_start=tuple(float(v) for v in grad[0]) if len(grad) else (math.nan,) * layers,
        train_accuracy=tuple(float(a) for a in snapshot.train_accuracy),
        seconds=seconds,
    )


def _job(config_values: dict, data_dir: str | None) -> dict:
    """What a worker runs: plain data in, plain data out (pickles small, and the same on any machine)."""
    return run_cell(RunConfig.from_dict(config_values), data_dir).to_dict()


def _compute(configs: list[RunConfig], backend: str, n_jobs: int | None, scheduler: str | None,
             data_dir: str | None) -> Iterator[Cell]:
    """Cells for ``configs`` in the order they finish."""
    if not configs:
        return
    if backend == "sequential":
        for config in configs:
            yield run_cell(config, data_dir)
        return
    joblib = _require("joblib", "map")  # only when computing: the app never needs it
    workers = min(n_jobs or default_jobs(), len(configs))
    tasks = (joblib.delayed(_job)(config.to_dict(), data_dir) for config in configs)
    if backend == "loky":
        parallel = joblib.Parallel(n_jobs=workers, backend="loky", return_as="generator_unordered")
        for values in parallel(tasks):
            yield Cell.from_dict(values)
        return
    with _dask_client(scheduler, workers):
        with joblib.parallel_config(backend="dask"):
            parallel = joblib.Parallel(return_as="generator_unordered")
            for values in parallel(tasks):
                yield Cell.from_dict(values)


class _dask_client:
    """A dask.distributed Client on ``scheduler``, or on a LocalCluster of one-thread worker
    processes made for this call; both closed on exit (the cluster's processes too)."""

    def __init__(self, scheduler: str | None, workers: int):
        self.scheduler, self.workers = scheduler, workers
        self.cluster = self.client = None

    def __enter__(self):
        _require("distributed", "cluster")
        from dask.distributed import Client, LocalCluster

        if self.scheduler is None:
            self.cluster = LocalCluster(n_workers=self.workers, threads_per_worker=1, processes=True,
                                        dashboard_address=None, host="127.0.0.1")
            self.client = Client(self.cluster)
        else:
            self.client = Client(self.scheduler)
        return self.client

    def __exit__(self, *exc):
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()


def _require(module: str, extra: str):
    """Import an optional dependency, or a ValueError that says how to install it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ValueError(f"computing map cells this way needs {module}: pip install -e '.[{extra}]' "
                         "(or -r requirements-dev.txt)") from None


def default_jobs() -> int:
    """One worker per core this process may use."""
    return machine.cores()


class CellCache:
    """A folder of cell files named by config key. A file that cannot be read as a cell of
    its name's config is treated as missing (and overwritten), never trusted."""

    def __init__(self, folder):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)

    def path(self, key: str) -> Path:
        return self.folder / f"{key}.json"

    def get(self, key: str) -> Cell | None:
        path = self.path(key)
        try:
            if path.stat().st_size > MAX_CELL_BYTES:
                return None
            cell = Cell.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return cell if cell.key == key else None

    def put(self, cell: Cell) -> None:
        """Write atomically (a temporary file renamed), so an interruption never leaves half a cell."""
        path = self.path(cell.key)
        temporary = path.with_suffix(f".{os.getpid()}.tmp")
        temporary.write_text(json.dumps(cell.to_dict(), allow_nan=False), encoding="utf-8")
        os.replace(temporary, path)


def _plain(value):
    """JSON-ready: tuples as lists, non-finite floats as None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    return value


def _float(value) -> float:
    return math.nan if value is None else float(value)
