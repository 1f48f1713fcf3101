"""Engine benchmark: what recording every statistic at every step costs, and what memory it holds.

1. Speed: the BN paper's Figure 1 network (784-100-100-100-10 sigmoid, batch 60, SGD, one
   torch thread), a plain PyTorch loop against bnviz's Trainer thread recording everything
   every step, without and with BN. Both live for the whole measurement and take turns in
   short chunks (A B A B ..., 250 steps each): this machine's speed wanders by +-20% over
   seconds, and turns of a quarter second see the same weather. Prints the ratio of total
   steps/s and the median of the per-chunk ratios (goal: >= 0.90x).
2. Memory: a 200,000-step history fed with real-sized statistics, its bytes and the
   process's RSS along the way (goal: a fixed bound, RSS flat).

    python -m benchmarks.bench_engine [--chunk 250] [--rounds 40] [--memory-steps 200000]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F

from bnviz.config import RunConfig
from bnviz.data import BatchStream, load_dataset
from bnviz.history import History
from bnviz.model import build_model
from bnviz.presets import get_preset
from bnviz.stats import StepStats
from bnviz.trainer import Trainer


class PlainLoop:
    """The loop anyone would write: no hooks, no statistics."""

    def __init__(self, config: RunConfig):
        data = load_dataset(config.dataset)
        self.network = build_model(config, data.input_shape, data.num_classes)
        self.optimizer = torch.optim.SGD(self.network.parameters(), lr=config.lr)
        self.stream = BatchStream(data, config.batch_size, config.seed)

    def train(self, steps: int) -> float:
        """Seconds for ``steps`` steps."""
        start = time.perf_counter()
        for _ in range(steps):
            x, y = self.stream.next_batch()
            loss = F.cross_entropy(self.network(x), y)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            loss.item()  # the trainer reads every loss too (divergence check)
            self.optimizer.step()
        return time.perf_counter() - start


class TrainerTurns:
    """A bnviz Trainer thread, paused between turns, asked for ``steps`` steps at a time."""

    def __init__(self, config: RunConfig):
        self.trainer = Trainer(config).start(paused=True)
        while not self.trainer.snapshot().layer_names:  # set up: model, probe, first snapshot
            time.sleep(0.01)

    def train(self, steps: int) -> float:
        start = time.perf_counter()
        target = self.trainer.snapshot().step + steps
        self.trainer.step(steps)
        snapshot = self.trainer.wait(lambda latest: latest.step >= target)  # no polling: a 5 ms poll cost ~3%
        assert snapshot.status == "paused", snapshot.message
        return time.perf_counter() - start

    def close(self) -> None:
        self.trainer.stop()
        self.trainer.join()


def speed(chunk: int, rounds: int) -> None:
    torch.set_num_threads(1)
    base = get_preset("ioffe-fig1").config.replace(steps=200_000, eval_every=10_000, record_every=1)
    print(f"speed: ioffe-fig1 network, {rounds} turns of {chunk} steps each, A B A B")
    print(f"{'norm':<10} {'plain steps/s':>14} {'bnviz steps/s':>14} {'ratio':>7} {'median turn':>12}")
    for norm in ("none", "batchnorm"):
        config = base.replace(norm=norm)
        plain, ours = PlainLoop(config), TrainerTurns(config)
        plain.train(300), ours.train(300)  # warm-up: caches, allocator, the ring's first touch
        plain_seconds, our_seconds = [], []
        for _ in range(rounds):
            plain_seconds.append(plain.train(chunk))
            our_seconds.append(ours.train(chunk))
        ours.close()
        ratios = [a / b for a, b in zip(plain_seconds, our_seconds)]
        total = chunk * rounds
        print(f"{norm:<10} {total / sum(plain_seconds):>14.0f} {total / sum(our_seconds):>14.0f} "
              f"{sum(plain_seconds) / sum(our_seconds):>6.2f}x {statistics.median(ratios):>11.2f}x")


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
            saturation=rng.random((k, layers)), near_zero=rng.random((k, layers)),
            nonfinite=np.zeros((k, layers), np.int64), grad_norm=rng.random((k, layers))))
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
    parser.add_argument("--chunk", type=int, default=250, help="steps per turn")
    parser.add_argument("--rounds", type=int, default=40, help="turns of each")
    parser.add_argument("--memory-steps", type=int, default=200_000)
    args = parser.parse_args()
    speed(args.chunk, args.rounds)
    memory(args.memory_steps)


if __name__ == "__main__":
    main()
