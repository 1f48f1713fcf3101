"""Run files: a run's recorded statistics saved as one JSON document, and read back safely.

The format is documented in docs/run-format.md and named by ``FORMAT``. Arrays are written
layer by layer as plain lists: floats rounded to ``SIGNIFICANT_DIGITS``, counts as integers,
NaN and Inf as null (standard JSON has no NaN). ``read_run`` parses with ``json`` only,
refuses files over ``MAX_BYTES`` and checks every key and shape, so a file from anywhere
can be loaded without trusting it. ``to_csv`` flattens the same numbers into one row per
(column, layer) for spreadsheets. Nothing here imports torch.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
from pathlib import Path

import numpy as np

from bnviz import __version__
from bnviz.config import RunConfig
from bnviz.snapshot import STATES, Snapshot

FORMAT = "bnviz-run/1"
SIGNIFICANT_DIGITS = 6  # far finer than any chart shows, and keeps files about half the size
MAX_BYTES = 50 * 2**20  # the largest possible run (1024 columns, 20 layers, 88 bins) is ~20 MB
PERCENTILE_KEYS = ("p15", "p50", "p85")  # bnviz.percentiles.PERCENTILES (not imported: it needs torch)
LANDSCAPE_KEYS = ("loss_range", "gradient_predictiveness", "beta_smoothness")  # Snapshot.landscape's 3 columns
# bnviz.evaluation.RUNNING_FIELDS (not imported: it needs torch), Snapshot.running_stats' last axis
RUNNING_KEYS = ("running_mean", "batch_mean", "running_var", "batch_var", "mean_gap", "var_ratio")
REESTIMATE_KEYS = ("before", "after")
REQUIRED = ("config", "steps", "loss", "test_accuracy", "layers", "status", "message")
LAYER_REQUIRED = ("name", "bin_edges", "hist", "saturation", "percentiles", "mean", "std", "grad_norm")
CSV_FIELDS = ("step", "layer", "loss", "mean", "std", *PERCENTILE_KEYS, "saturation", "near_zero", "nonfinite", "grad_norm",
              "test_accuracy")


def to_run_dict(snapshot: Snapshot) -> dict:
    """The run file's content as plain JSON-ready Python (lists, numbers, None for NaN/Inf)."""
    landscape = np.asarray(snapshot.landscape, dtype=np.float64).reshape(-1, 3)  # (n, 3)
    return {
        "format": FORMAT,
        "bnviz_version": __version__,
        "config": snapshot.config.to_dict(),
        "digest": digest(snapshot),
        "status": snapshot.status,
        "message": snapshot.message,
        "stride": int(snapshot.stride),
        "steps": _ints(snapshot.column("steps")),
        "count": _ints(snapshot.column("count")),
        "loss": _floats(snapshot.column("loss")),
        "test_accuracy": {"steps": _ints(snapshot.accuracy_steps), "values": _floats(snapshot.accuracy)},
        "train_accuracy": {"steps": _ints(snapshot.accuracy_steps[:len(snapshot.train_accuracy)]),
                           "values": _floats(snapshot.train_accuracy)},
        "batch_accuracy": {"steps": _ints(snapshot.accuracy_steps[:len(snapshot.batch_accuracy)]),
                           "values": _floats(snapshot.batch_accuracy)},
        "running_stats": _running(snapshot),
        "reestimates": {"steps": [int(step) for step, _, _ in snapshot.reestimates],
                        "before": _floats([before for _, before, _ in snapshot.reestimates]),
                        "after": _floats([after for _, _, after in snapshot.reestimates])},
        "lr_events": {"steps": [int(step) for step, _ in snapshot.lr_events],
                      "values": _floats([lr for _, lr in snapshot.lr_events])},
        "landscape": {"steps": _ints(snapshot.landscape_steps),
                      **{key: _floats(landscape[:, i]) for i, key in enumerate(LANDSCAPE_KEYS)}},
        "layers": [_layer(snapshot, index, name) for index, name in enumerate(snapshot.layer_names)],
    }


def digest(snapshot: Snapshot) -> str:
    """SHA-256 of everything a run recorded, unrounded: its columns, held-out accuracy,
    landscape, stride, step and status. Two runs of one config from any entry point must give
    the same digest (equal bits, not merely the same 6 digits a run file keeps)."""
    hashed = hashlib.sha256(f"{snapshot.status} {snapshot.step} {snapshot.stride}".encode())
    arrays = {f"columns.{key}": value for key, value in snapshot.columns.items()}
    arrays.update(accuracy_steps=snapshot.accuracy_steps, accuracy=snapshot.accuracy,
                  landscape_steps=snapshot.landscape_steps, landscape=snapshot.landscape)
    for key in sorted(arrays):
        array = np.ascontiguousarray(arrays[key])
        hashed.update(f"{key} {array.dtype.str} {array.shape}".encode())
        hashed.update(array.tobytes())
    return hashed.hexdigest()


def _layer(snapshot: Snapshot, index: int, name: str) -> dict:
    def column(key: str, *trailing: int) -> np.ndarray:  # this layer's slice of (columns, layers, ...)
        values = snapshot.column(key)
        return values[:, index] if len(values) else np.zeros((0, *trailing))

    percentiles, units = column("percentiles", 3), column("unit_percentiles", 3)  # (columns, 3)
    return {
        "name": name,
        "bin_edges": _floats(snapshot.pre_edges),
        "hist": _ints(column("hist_pre", len(snapshot.pre_edges) - 1)),
        "post_bin_edges": _floats(snapshot.post_edges),
        "post_hist": _floats(column("hist_post", len(snapshot.post_edges) - 1)),  # fractional: see the docs
        "saturation": _floats(column("saturation")),
        **({"near_zero": _floats(column("near_zero"))} if "near_zero" in snapshot.columns else {}),
        "nonfinite": _ints(column("nonfinite")),
        "percentiles": {key: _floats(percentiles[:, i]) for i, key in enumerate(PERCENTILE_KEYS)},
        "unit_percentiles": {key: _floats(units[:, i]) for i, key in enumerate(PERCENTILE_KEYS)},
        "mean": _floats(column("mean")),
        "std": _floats(column("std")),
        "grad_norm": _floats(column("grad_norm")),
    }


def _running(snapshot: Snapshot) -> dict:
    """{"steps": (r,), key: (r, layers) for each of RUNNING_KEYS}; empty for a net without BN."""
    values = np.asarray(snapshot.running_stats, dtype=np.float64).reshape(
        len(snapshot.running_steps), len(snapshot.layer_names), len(RUNNING_KEYS))
    return {"steps": _ints(snapshot.running_steps), **{key: _floats(values[:, :, i]) for i, key in enumerate(RUNNING_KEYS)}}


def _floats(values) -> list:
    """Nested lists of floats rounded to SIGNIFICANT_DIGITS, None where not finite."""
    array = np.asarray(values, dtype=np.float64)
    cells = [float(f"{x:.{SIGNIFICANT_DIGITS}g}") if math.isfinite(x) else None for x in array.ravel().tolist()]
    return np.array(cells, dtype=object).reshape(array.shape).tolist()


def _ints(values) -> list:
    return np.asarray(values).astype(np.int64).tolist()


def from_snapshot(snapshot: Snapshot) -> dict:
    """The run as ``read_run`` returns it (numpy arrays), straight from a live snapshot."""
    return _validate(to_run_dict(snapshot))


def write_run(snapshot: Snapshot, path) -> dict:
    """Write the run file (allow_nan=False guarantees standard JSON); return the run as
    ``read_run`` would read it back, so a caller that needs both does not parse the file again."""
    run = to_run_dict(snapshot)
    Path(path).write_text(json.dumps(run, allow_nan=False, separators=(",", ":")), encoding="utf-8")
    return _validate(run)


def read_run(path) -> dict:
    """A run file, validated, with every list turned into a numpy array (null -> NaN)."""
    path = Path(path)
    size = path.stat().st_size
    if size > MAX_BYTES:
        raise ValueError(f"{path.name} is {size / 2**20:.1f} MB; a run file may be at most {MAX_BYTES // 2**20} MB")
    return loads_run(path.read_bytes())


def loads_run(data: bytes | str) -> dict:
    """Like ``read_run`` for a file's content (an upload, say)."""
    if len(data) > MAX_BYTES:
        raise ValueError(f"the run file is {len(data) / 2**20:.1f} MB; a run file may be at most {MAX_BYTES // 2**20} MB")
    try:
        run = json.loads(data, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as error:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise ValueError(f"not a run file: invalid JSON ({error})") from None
    return _validate(run)


def _reject_constant(name: str):
    raise ValueError(f"{name} is not standard JSON (run files write null for non-finite numbers)")


def _validate(run) -> dict:
    """Check keys, types and shapes; return a copy with numpy arrays in place of lists."""
    _require(run, REQUIRED, "run file")
    if run.get("format", FORMAT) != FORMAT:
        raise ValueError(f"unsupported run format {str(run['format'])[:40]!r}; this bnviz reads {FORMAT!r}")
    try:
        config = RunConfig.from_dict(run["config"]).to_dict()
    except ValueError as error:
        raise ValueError(f"config: {error}") from None
    if run["status"] not in STATES:
        raise ValueError(f"status must be one of {', '.join(STATES)} (got {str(run['status'])[:40]!r})")
    if not isinstance(run["message"], str):
        raise ValueError("message must be text")
    out = dict(run, config=config)
    out["steps"] = _array(run["steps"], "steps", (None,), integer=True)
    n = len(out["steps"])
    out["loss"] = _array(run["loss"], "loss", (n,))
    if "count" in run:
        out["count"] = _array(run["count"], "count", (n,), integer=True)
    out["test_accuracy"] = _series(run["test_accuracy"], "test_accuracy", ("values",))
    for key, columns in (("lr_events", ("values",)), ("landscape", LANDSCAPE_KEYS), ("train_accuracy", ("values",)),
                         ("batch_accuracy", ("values",)), ("reestimates", REESTIMATE_KEYS)):
        if key in run:
            out[key] = _series(run[key], key, columns)
    if not isinstance(run["layers"], list):
        raise ValueError("layers must be a list")
    if "running_stats" in run:
        _require(run["running_stats"], ("steps", *RUNNING_KEYS), "running_stats")
        steps = _array(run["running_stats"]["steps"], "running_stats.steps", (None,), integer=True)
        out["running_stats"] = {"steps": steps, **{
            key: _array(run["running_stats"][key], f"running_stats.{key}", (len(steps), len(run["layers"])))
            for key in RUNNING_KEYS}}
    out["layers"] = [_layer_arrays(layer, f"layers[{i}]", n) for i, layer in enumerate(run["layers"])]
    return out


def _layer_arrays(layer, where: str, n: int) -> dict:
    _require(layer, LAYER_REQUIRED, where)
    if not isinstance(layer["name"], str):
        raise ValueError(f"{where}.name must be text")
    out = dict(layer)
    for edges, hist in (("bin_edges", "hist"), ("post_bin_edges", "post_hist")):
        if edges in layer or hist in layer:
            _require(layer, (edges, hist), where)
            out[edges] = _array(layer[edges], f"{where}.{edges}", (None,))
            if len(out[edges]) < 2:
                raise ValueError(f"{where}.{edges} must hold at least 2 edges (got {len(out[edges])})")
            out[hist] = _array(layer[hist], f"{where}.{hist}", (n, len(out[edges]) - 1), integer=hist == "hist")
    for key in ("saturation", "near_zero", "mean", "std", "grad_norm", "nonfinite"):
        if key in layer:
            out[key] = _array(layer[key], f"{where}.{key}", (n,), integer=key == "nonfinite")
    for key in ("percentiles", "unit_percentiles"):
        if key in layer:
            _require(layer[key], PERCENTILE_KEYS, f"{where}.{key}")
            out[key] = {p: _array(layer[key][p], f"{where}.{key}.{p}", (n,)) for p in PERCENTILE_KEYS}
    return out


def _series(value, where: str, columns: tuple[str, ...]) -> dict:
    """{"steps": [...], column: [...] of the same length}."""
    _require(value, ("steps", *columns), where)
    steps = _array(value["steps"], f"{where}.steps", (None,), integer=True)
    return {"steps": steps, **{key: _array(value[key], f"{where}.{key}", steps.shape) for key in columns}}


def _require(value, keys, where: str) -> None:
    if not isinstance(value, dict):
        raise ValueError(f"{where} must be a JSON object (got {type(value).__name__})")
    missing = [key for key in keys if key not in value]
    if missing:
        raise ValueError(f"{where} is missing {missing[0]!r}")


def _array(value, where: str, shape: tuple, integer: bool = False) -> np.ndarray:
    """``value`` as an array of exactly ``shape`` (None: any length); null -> NaN for floats."""
    if isinstance(value, list) and not value:
        cells = np.empty((0, *(size or 0 for size in shape[1:])), dtype=object)  # [] is an empty array of any rank
    else:
        try:
            cells = np.array(value, dtype=object)  # ragged lists come out with the wrong rank or list cells
        except ValueError:  # some ragged nestings are refused outright
            cells = np.empty(0, dtype=object).reshape((0,) * (len(shape) + 1))
    if cells.ndim != len(shape) or any(want is not None and want != got for want, got in zip(shape, cells.shape)):
        expected = "(" + ", ".join("any" if size is None else str(size) for size in shape) + ("," if len(shape) == 1 else "") + ")"
        raise ValueError(f"{where} must have shape {expected} (got {cells.shape})")
    valid = _is_int if integer else _is_number
    if not all(valid(cell) for cell in cells.flat):
        raise ValueError(f"{where} must hold only {'whole numbers' if integer else 'numbers or null'}")
    try:
        return cells.astype(np.int64 if integer else np.float64)  # None becomes NaN
    except OverflowError:
        raise ValueError(f"{where} holds a number too large for a run file") from None


def _is_number(cell) -> bool:
    return cell is None or (isinstance(cell, (int, float)) and not isinstance(cell, bool))


def _is_int(cell) -> bool:
    return isinstance(cell, int) and not isinstance(cell, bool)


def to_csv(snapshot: Snapshot) -> str:
    """One row per (column, layer): the per-layer statistics, plus test accuracy in the column where it was measured.

    Column i covers the steps after ``steps[i - 1]`` up to ``steps[i]``, so a measurement at a
    step that is not itself a column's label (merged columns, ``record_every`` > 1) still shows.
    """
    steps = snapshot.column("steps")
    where = np.searchsorted(steps, snapshot.accuracy_steps, side="left")  # first column ending at or after it
    accuracy = {int(i): value for i, value in zip(where, snapshot.accuracy.tolist()) if i < len(steps)}
    loss, mean, std, percentiles, saturation, nonfinite, grad_norm = (
        snapshot.column(key) for key in ("loss", "mean", "std", "percentiles", "saturation", "nonfinite", "grad_norm"))
    near_zero = snapshot.columns.get("near_zero", np.full(saturation.shape, np.nan))  # blank for runs recorded without it
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_FIELDS)
    for c, step in enumerate(steps.tolist()):
        for i, name in enumerate(snapshot.layer_names):
            row = [loss[c], mean[c, i], std[c, i], *percentiles[c, i], saturation[c, i], near_zero[c, i],
                   nonfinite[c, i], grad_norm[c, i], accuracy.get(c)]
            writer.writerow([step, name, *map(_csv_cell, row)])
    return buffer.getvalue()


def _csv_cell(value) -> str:
    """Counts as integers, floats to SIGNIFICANT_DIGITS; blank when not finite or not measured."""
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if value is None or not math.isfinite(value):
        return ""
    return f"{value:.{SIGNIFICANT_DIGITS}g}"
