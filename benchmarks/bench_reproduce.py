"""Reproduction benchmark: the whole ioffe-fig1 reproduction against the plain PyTorch loop.

The same two networks (the BN paper's 784-100-100-100-10 sigmoid MLP, without and with BN),
the same steps, data order, initial weights and held-out evaluations, one torch thread per
network, timed in one run of this script:
1. plain, sequential: the loop anyone would write, one network after the other;
2. plain, processes: the same two loops at once in two spawned processes (one per core);
3. plain, fused: both networks in one loop on the same batch, one backward of the summed
   loss and one optimizer over both (identical training: the networks share no parameter),
   a way to train a pair together in one thread;
4. bnviz, processes: ``run_reproduction("ioffe-fig1")``, every statistic of every step
   recorded, run files written, claims checked, HTML report written;
5. bnviz, threads: the same with both trainers as threads of one process.
Both two-process variants start fresh processes (spawned, importing torch), as a user's
command does: wall times include starting them and loading data, and CPU times are this
process's plus its ended children's (``getrusage``), start-up included. The goal: bnviz (4)
at most 1.15x the plain loop's time. The machine may be shared: compare within a round,
repeat rounds.

    python -m benchmarks.bench_reproduce [--steps 50000] [--rounds 1] [--out DIR] [--skip-threads]
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from bnviz.config import RunConfig
from bnviz.data import BatchStream, load_dataset
from bnviz.model import build_model
from bnviz.reproduce.registry import configs_for
from bnviz.reproduce.run import run_reproduction
from bnviz.trainer import EVAL_CHUNK

GOAL = 1.15  # bnviz's reproduction may take at most this much longer than the plain loop
CHECK_STEPS = 20  # steps of the fused-vs-separate equality check


def evaluate(network, data, config: RunConfig) -> float:
    """Held-out accuracy as the Trainer measures it: eval mode, chunks of EVAL_CHUNK."""
    network.eval()
    size = min(config.eval_size, len(data.test_y))
    correct = 0
    with torch.no_grad():
        for start in range(0, size, EVAL_CHUNK):
            stop = min(start + EVAL_CHUNK, size)
            correct += int((network(data.test_x[start:stop]).argmax(1) == data.test_y[start:stop]).sum())
    network.train()
    return correct / size


def plain_loop(config: RunConfig) -> tuple[float, torch.nn.Module]:
    """(seconds, network) of the plain loop: no hooks, no statistics, the same evaluations."""
    torch.set_num_threads(1)
    data = load_dataset(config.dataset)
    network = build_model(config, data.input_shape, data.num_classes)
    optimizer = torch.optim.SGD(network.parameters(), lr=config.lr)
    stream = BatchStream(data, config.batch_size, config.seed)
    start = time.perf_counter()
    for step in range(1, config.steps + 1):
        x, y = stream.next_batch()
        loss = F.cross_entropy(network(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        loss.item()  # the trainer reads every loss too (divergence check)
        optimizer.step()
        if step % config.eval_every == 0 or step == config.steps:
            evaluate(network, data, config)
    return time.perf_counter() - start, network


def plain_job(config_dict: dict) -> float:
    """A spawned worker's job: wall seconds of the plain loop of one config."""
    return plain_loop(RunConfig.from_dict(config_dict))[0]


def fused_loop(configs: list[RunConfig]) -> tuple[float, list[torch.nn.Module]]:
    """Both networks in one loop: same batch (same seed), summed loss, one backward, one optimizer."""
    torch.set_num_threads(1)
    config = configs[0]
    data = load_dataset(config.dataset)
    networks = [build_model(c, data.input_shape, data.num_classes) for c in configs]
    optimizer = torch.optim.SGD([p for network in networks for p in network.parameters()], lr=config.lr)
    stream = BatchStream(data, config.batch_size, config.seed)
    start = time.perf_counter()
    for step in range(1, config.steps + 1):
        x, y = stream.next_batch()
        losses = torch.stack([F.cross_entropy(network(x), y) for network in networks])  # (networks,)
        optimizer.zero_grad(set_to_none=True)
        losses.sum().backward()  # d(sum)/d(theta_i) = d(loss_i)/d(theta_i): the networks share nothing
        losses.tolist()
        optimizer.step()
        if step % config.eval_every == 0 or step == config.steps:
            for network in networks:
                evaluate(network, data, config)
    return time.perf_counter() - start, networks


def check_fused_is_identical(configs: list[RunConfig]) -> None:
    """The fused loop trains each network exactly as its own loop does (up to float rounding)."""
    short = [c.replace(steps=CHECK_STEPS) for c in configs]
    _, fused = fused_loop(short)
    for config, network in zip(short, fused):
        _, alone = plain_loop(config)
        for a, b in zip(alone.parameters(), network.parameters()):
            assert torch.allclose(a, b, atol=1e-5), f"fused training differs for norm={config.norm}"


def cpu_seconds() -> float:
    """CPU time of this process (all threads) and of its children that have ended and been waited for."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def measure(label: str, function) -> tuple[float, float]:
    """(wall, CPU) seconds of ``function()``, whose worker processes have ended when it returns;
    printed at once: a round takes minutes."""
    wall, cpu = time.perf_counter(), cpu_seconds()
    function()
    wall, cpu = time.perf_counter() - wall, cpu_seconds() - cpu
    print(f"    {label}: {wall:.1f} s wall, {cpu:.1f} s CPU", flush=True)
    return wall, cpu


def run_round(configs: list[RunConfig], out_dir: Path, skip_threads: bool) -> dict[str, tuple[float, float]]:
    """One measurement of every variant, interleaved plain / bnviz so a busy machine hurts both."""
    steps = configs[0].steps
    found = {}

    def plain_processes() -> None:
        with multiprocessing.get_context("spawn").Pool(len(configs)) as pool:  # fresh, as run_reproduction's
            pool.map(plain_job, [c.to_dict() for c in configs])
            pool.close()
            pool.join()  # ended and waited for: their CPU is in RUSAGE_CHILDREN

    def bnviz(parallel: str, out: Path) -> None:
        found[parallel] = run_reproduction("ioffe-fig1", steps=steps, out_dir=out, parallel=parallel, seeds=1)

    times = {"plain, processes": measure("plain, processes", plain_processes),
             "bnviz, processes": measure("bnviz, processes", lambda: bnviz("process", out_dir)),
             "plain, sequential": measure("plain, sequential", lambda: [plain_loop(c) for c in configs])}
    if not skip_threads:
        with tempfile.TemporaryDirectory() as scratch:
            times["bnviz, threads"] = measure("bnviz, threads", lambda: bnviz("thread", Path(scratch)))
    times["plain, fused"] = measure("plain, fused", lambda: fused_loop(configs))
    print_claims(found["process"])
    return times


def print_claims(result) -> None:
    for claim in result.claims:
        print(f"    {claim.line}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=50_000, help="steps per network (default: the paper's 50,000)")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--out", help="keep the bnviz reproduction's report and run files here (default: a temp dir)")
    parser.add_argument("--skip-threads", action="store_true", help="skip the bnviz-in-threads variant")
    args = parser.parse_args()
    configs = list(configs_for("ioffe-fig1", steps=args.steps).values())
    print(f"ioffe-fig1: 2 networks x {args.steps:,} steps, batch {configs[0].batch_size}, "
          f"eval every {configs[0].eval_every} steps on {configs[0].eval_size} images; {args.rounds} round(s)")
    check_fused_is_identical(configs)
    print(f"fused loop check: after {CHECK_STEPS} steps both networks equal their own loops' (atol 1e-5)")
    rounds = []
    with tempfile.TemporaryDirectory() as scratch:
        for index in range(args.rounds):
            out = Path(args.out) if args.out and index == args.rounds - 1 else Path(scratch) / f"round{index}"
            print(f"round {index + 1}:")
            times = run_round(configs, out, args.skip_threads)
            rounds.append(times)
            show(times, args.steps)
    if args.rounds > 1:
        print("median over rounds:")
        show({key: tuple(statistics.median(r[key][i] for r in rounds) for i in (0, 1)) for key in rounds[0]}, args.steps)


def show(times: dict[str, tuple[float, float]], steps: int) -> None:
    """Wall and CPU seconds, steps/s of both networks together, and ratios to the plain loop.

    The CPU ratio does not depend on what else the machine runs: with one core per run and
    nothing else running, the wall-time ratio of the two-process variants approaches it.
    """
    seq_wall, seq_cpu = times["plain, sequential"]
    procs_wall, procs_cpu = times["plain, processes"]
    print(f"  {'variant':<20} {'wall s':>8} {'CPU s':>8} {'steps/s':>8} {'wall / plain seq':>17} "
          f"{'wall / plain procs':>19} {'CPU / plain':>12}")
    for name, (wall, cpu) in times.items():
        print(f"  {name:<20} {wall:>8.1f} {cpu:>8.1f} {2 * steps / wall:>8.0f} {wall / seq_wall:>16.2f}x "
              f"{wall / procs_wall:>18.2f}x {cpu / procs_cpu:>11.2f}x")
    wall, cpu = times["bnviz, processes"]
    print(f"  bnviz reproduction vs the plain loop on both cores: wall {wall / procs_wall:.2f}x, CPU {cpu / procs_cpu:.2f}x "
          f"(goal <= {GOAL}x); wall vs the plain loop one network after the other: {wall / seq_wall:.2f}x")


if __name__ == "__main__":
    main()
