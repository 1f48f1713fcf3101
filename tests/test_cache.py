"""RunCache: finished runs kept in memory within a byte bound and as run files that outlive the server.

A finished run read back from its file (as after a restart) is the run the run file holds: its
run file written again is the same document (but the digest of the unrounded arrays). The pool attaches a later tab, or a tab after a
restart, to the cached run without training it again.
"""

from __future__ import annotations

import json

import pytest

from bnviz import runfile
from bnviz.config import RunConfig
from bnviz.serve.cache import LIVE, RunCache, nbytes
from bnviz.serve.pool import RunPool
from bnviz.trainer import Trainer

SHORT = RunConfig(dataset="synthetic", depth=2, width=16, batch_size=32, steps=120, eval_every=40, eval_size=200)
WAIT = 60.0


def same_file(a, b) -> bool:
    """The same run file but its digest (of the unrounded arrays, which a run file does not keep)."""
    first, second = runfile.to_run_dict(a), runfile.to_run_dict(b)
    return {**first, "digest": None} == {**second, "digest": None}


@pytest.fixture(scope="module")
def finished():
    trainers = [Trainer(SHORT.replace(seed=seed, landscape_every=30 if seed else 0)).start() for seed in range(3)]
    assert all(trainer.join(WAIT) for trainer in trainers)
    return [trainer.snapshot() for trainer in trainers]


def test_a_finished_run_comes_back_from_its_file_as_the_run_file_holds_it(tmp_path, finished):
    for snapshot in finished:
        cache = RunCache(tmp_path)
        cache.put(snapshot.config.key(), snapshot)
        assert cache.get(snapshot.config.key()) is snapshot  # from memory
        cache.flush()
        restarted = RunCache(tmp_path)  # a new server on the same folder
        back = restarted.get(snapshot.config.key())
        assert back is not None and (back.status, back.step, back.layer_names) == ("finished", 120, snapshot.layer_names)
        assert same_file(back, snapshot)


def test_memory_holds_at_most_its_bound_newest_first(tmp_path, finished):
    size = nbytes(finished[0])
    cache = RunCache(None, max_bytes=int(2.5 * size))
    for snapshot in finished:
        cache.put(snapshot.config.key(), snapshot)
    assert cache.memory_bytes() <= 2.5 * size
    assert cache.get(finished[0].config.key()) is None  # the oldest went first; no folder to read it from
    assert cache.get(finished[2].config.key()) is finished[2]


def test_the_folder_holds_at_most_its_bound_and_a_damaged_file_is_ignored(tmp_path, finished):
    cache = RunCache(tmp_path, max_disk_bytes=1)
    for snapshot in finished:
        cache.put(snapshot.config.key(), snapshot)
        cache.flush()
    assert len(list(tmp_path.glob("*.json"))) <= 1
    key = finished[0].config.key()
    (tmp_path / f"{key}.json").write_text("{not json")
    assert RunCache(tmp_path).get(key) is None and not (tmp_path / f"{key}.json").exists()
    assert RunCache(tmp_path).get("../../etc/passwd") is None  # keys only: nothing else becomes a path


def test_live_runs_are_named_for_the_next_server_less_those_that_finished(tmp_path, finished):
    cache = RunCache(tmp_path)
    done = finished[0].config.key()
    cache.write_live([{"key": done, "what": "a", "step": 5}, {"key": "0123456789abcdef", "what": "b", "step": 7}])
    cache.put(done, finished[0])
    cache.flush()
    assert [run["what"] for run in RunCache(tmp_path).read_live()] == ["b"]
    (tmp_path / LIVE).write_text(json.dumps({"not": "a list"}))
    assert RunCache(tmp_path).read_live() == []


def test_the_pool_serves_a_finished_run_from_the_cache_after_a_restart(tmp_path):
    first = RunPool(max_running=1, cache=RunCache(tmp_path))
    try:
        run = first.submit("a", [SHORT]).runs[0]
        assert run.trainer.join(WAIT)
        first.get("a")  # the sweep notes the end and caches it
        first.cache.flush()
    finally:
        first.shutdown(timeout=30)
    second = RunPool(max_running=1, cache=RunCache(tmp_path))  # a restart: nothing in memory
    try:
        again = second.submit("b", [SHORT]).runs[0]
        assert again.done and again.trainer is None and second.counts()["alive_trainers"] == 0
        assert same_file(again.snapshot(), run.snapshot())
    finally:
        second.shutdown(timeout=30)
