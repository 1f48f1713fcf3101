"""One config, one run: every preset's configs give bit-identical statistics from every entry
point (the command line, the reproduction's worker processes, the app's thread runs and its
process runs) with one torch thread and with two in the process that starts them.

The audit of issue 16 found the same fastai-collapse config ending at 0.9615 from ``bnviz run``
and 0.9655 from ``bnviz reproduce``: the data's float32 standardization differed in its last
digits with the machine's threads and with one. Runs are compared by ``runfile.digest``, a
hash of every recorded array before rounding. Runs are shortened (the CNN to a few steps)
but keep each preset's settings, its landscape probe and its evaluations.
"""

import time

import pytest
import torch

from bnviz import cli, data
from bnviz.presets import PRESETS
from bnviz.reproduce.run import _train_all
from bnviz.runfile import digest, read_run
from bnviz.serve.pool import RunPool
from bnviz.serve.process import AVAILABLE, TrainerProcess
from bnviz.trainer import Trainer

WAIT = 300.0  # seconds for every run of one entry point, on a busy two-core machine


def short(config):
    """The preset's config, shorter: two rings of the MLP, a few steps of the CNN."""
    steps = 6 if config.arch == "cnn" else 150
    landscape = min(config.landscape_every, 50) if config.landscape_every else 0
    return config.replace(steps=steps, eval_every=steps // 2, landscape_every=landscape)


CONFIGS = {f"{name}-{norm}": short(preset.config.replace(norm=norm))
           for name, preset in PRESETS.items() for norm in preset.compare}


@pytest.fixture
def threads():
    """Set this process's torch threads (and load the data afresh, as a fresh process would)."""
    before = torch.get_num_threads()

    def use(count: int) -> None:
        torch.set_num_threads(count)
        data._load_cached.cache_clear()

    yield use
    torch.set_num_threads(before)
    data._load_cached.cache_clear()


def from_the_command_line(label, config, folder) -> str:
    path = folder / f"{label}.json"
    preset = next(name for name in PRESETS if label.startswith(name + "-"))
    arguments = ["run", "--preset", preset, "--out", str(path)]
    for key, value in config.to_dict().items():
        arguments += ["--set", f"{key}={value}"]
    assert cli.main(arguments) == 0, label
    return read_run(path)["digest"]


def from_a_pool(pool: RunPool) -> dict[str, str]:
    """Submit each preset's configs as the app does (one owner per preset), wait, digest."""
    owners = {}
    for name, preset in PRESETS.items():
        labels = [label for label in CONFIGS if label.startswith(name + "-") and label[len(name) + 1:] in preset.compare]
        owners[name] = (labels, pool.submit(name, [CONFIGS[label] for label in labels]))
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        entries = {name: pool.get(name) for name in owners}  # signs of life, as the pages' polls: queued ones start
        if all(entry.running and all(run.snapshot().done for run in entry.trainers) for entry in entries.values()):
            break
        time.sleep(0.2)
    digests = {}
    for name, (labels, entry) in owners.items():
        assert len(entry.trainers) == len(labels), f"{name} never started"
        for label, run in zip(labels, entry.trainers):
            assert run.snapshot().status == "finished", (label, run.snapshot().message)
            digests[label] = digest(run.snapshot())
    pool.shutdown()
    return digests


def test_every_entry_point_gives_the_same_run_at_one_and_two_threads(tmp_path, threads):
    results = {}
    for count in (1, 2):
        threads(count)
        results[f"command line, {count} torch threads"] = {
            label: from_the_command_line(label, config, tmp_path) for label, config in CONFIGS.items()}
        threads(count)
        results[f"app thread runs, {count} torch threads"] = from_a_pool(RunPool(max_running=4, make_trainer=Trainer))
    jobs = {(config.seed, label): config for label, config in CONFIGS.items()}  # keyed (seed, run) as a reproduction's
    paths = {key: tmp_path / f"reproduce-{key[1]}.json" for key in jobs}
    runs, _, _ = _train_all(jobs, paths, "process", 2, None, lambda *args: None)
    results["reproduction workers (processes)"] = {label: run["digest"] for (_, label), run in runs.items()}
    if AVAILABLE:
        results["app process runs"] = from_a_pool(RunPool(max_running=4, make_trainer=TrainerProcess))
    reference = results["command line, 1 torch threads"]
    assert set(reference) == set(CONFIGS)
    for entry, digests in results.items():
        different = [label for label in CONFIGS if digests.get(label) != reference[label]]
        assert not different, f"{entry}: not the command line's run for {different}"
