"""Engine benchmark: what recording every statistic at every step costs, and what memory it holds.

1. Speed: the BN paper's Figure 1 network (784-100-100-100-10 sigmoid, batch 60, SGD, one
   torch thread), a plain PyTorch loop against bnviz's Trainer recording everything every
   step, without and with BN, interleaved A B A B so a noisy machine hurts both alike;
   median steps/s of several rounds and the ratio (goal: >= 0.90x).
2. Memory: a 200,000-step history fed with real-sized statistics, its bytes and the
   process's RSS along the way (goal: a fixed bound, RSS flat).

    python benchmarks/bench_engine.py [--steps 3000] [--rounds 5] [--memory-steps 200000]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from bnviz.config import RunConfig  # noqa: E402
from bnviz.data import BatchStream, load_dataset  # noqa: E402
from bnviz.history import History  # noqa: E402
from bnviz.model import build_model  # noqa: E402
from bnviz.presets import get_preset  # noqa: E402
from bnviz.stats import StepStats  # noqa: E402
from bnviz.trainer import Trainer  # noqa: E402


def plain_loop(config: RunConfig) -> float:
    """Steps/s of the loop anyone would write: no hooks, no statistics."""
    data = load_dataset(config.dataset)
    network = build_model(config, data.input_shape, data.num_classes)
    optimizer = torch.optim.SGD(network.parameters(), lr=config.lr)
    stream = BatchStream(data, config.batch_size, config.seed)
    start = time.perf_counter()
    for _ in range(config.steps):
        x, y = stream.next_batch()
        loss = F.cross_entropy(network(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        loss.item()  # the trainer reads every loss too (divergence check)
        optimizer.step()
    return config.steps / (time.perf_counter() - start)


def trainer_run(config: RunConfig) -> float:
    """Steps/s of a Trainer recording every statistic every step, start to finish (setup included)."""
    start = time.perf_counter()
    trainer = Trainer(config).start()
    trainer.join()
    elapsed = time.perf_counter() - start
    snapshot = trainer.snapshot()
    assert snapshot.status == "finished", snapshot.message
    return config.steps / elapsed


def speed(steps: int, rounds: int) -> None:
    torch.set_num_threads(1)
    base = get_preset("ioffe-fig1").config.replace(steps=steps, eval_every=steps, record_every=1)
    print(f"speed: ioffe-fig1 network, {steps} steps per measurement, {rounds} rounds, A B A B")
    print(f"{'norm':<10} {'plain steps/s':>14} {'bnviz steps/s':>14} {'ratio':>7}   (ratio per round)")
    plain_loop(base.replace(steps=300))  # warm-up: caches, allocator
    trainer_run(base.replace(steps=300))
    for norm in ("none", "batchnorm"):
        config = base.replace(norm=norm)
        plain, ours = [], []
        for _ in range(rounds):
            plain.append(plain_loop(config))
            ours.append(trainer_run(config))
        ratios = [b / a for a, b in zip(plain, ours)]
        print(f"{norm:<10} {statistics.median(plain):>14.0f} {statistics.median(ours):>14.0f} "
              f"{statistics.median(ratios):>6.2f}x   ({', '.join(f'{r:.2f}' for r in ratios)})")


def memory(total_steps: int, layers: int = 3, chunk: int = 128) -> None:
    """Feed a History the statistics of a long run (random, real-sized) and watch its bytes and RSS."""
    rng = np.random.default_rng(0)
    history = History()
    print(f"\nmemory: {total_steps} steps of {layers} layers into one History")
    print(f"{'steps':>8} {'columns':>8} {'stride':>7} {'history MB':>11} {'RSS MB':>8}")
    report_at = {total_steps // 8 * i for i in range(1, 9)}
    done = 0
    while done < total_steps:
        k = min(chunk, total_steps - done)
        history.add(StepStats(
            steps=np.arange(done + 1, done + k + 1), loss=rng.random(k),
            hist_pre=rng.integers(0, 200, (k, layers, 48)), hist_post=rng.random((k, layers, 40)),
            mean=rng.normal(size=(k, layers)), std=rng.random((k, layers)),
            percentiles=rng.normal(size=(k, layers, 3)), unit_percentiles=rng.normal(size=(k, layers, 3)),
            saturation=rng.random((k, layers)), nonfinite=np.zeros((k, layers), np.int64),
            grad_norm=rng.random((k, layers))))
        done += k
        if any(done >= mark > done - k for mark in report_at):
            rss = _rss_mb()
            print(f"{done:>8} {history.size:>8} {history.stride:>7} {history.nbytes() / 1e6:>11.2f} {rss:>8.0f}")


def _rss_mb() -> float:
    try:
        with open(f"/proc/{os.getpid()}/statm") as file:
            return int(file.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--memory-steps", type=int, default=200_000)
    args = parser.parse_args()
    speed(args.steps, args.rounds)
    memory(args.memory_steps)


if __name__ == "__main__":
    main()
