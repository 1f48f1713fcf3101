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
Wall times include starting processes and loading data. The goal: bnviz (4) at most 1.15x
the plain loop's time. The machine may be shared: compare within a round, repeat rounds.

    python benchmarks/bench_reproduce.py [--steps 50000] [--rounds 1] [--out DIR] [--skip-threads]
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from bnviz.config import RunConfig  # noqa: E402
from bnviz.data import BatchStream, load_dataset  # noqa: E402
from bnviz.model import build_model  # noqa: E402
from bnviz.reproduce import configs_for, run_reproduction  # noqa: E402
from bnviz.trainer import EVAL_CHUNK  # noqa: E402

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


def plain_seconds(config_dict: dict) -> float:
    """A spawned worker's job: the plain loop of one config."""
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


def timed(label: str, function, *args) -> float:
    """Wall seconds of ``function(*args)``, printed as soon as measured (a full round takes minutes)."""
    start = time.perf_counter()
    function(*args)
    seconds = time.perf_counter() - start
    print(f"    {label}: {seconds:.1f} s", flush=True)
    return seconds


def run_round(configs: list[RunConfig], pool, out_dir: Path, skip_threads: bool) -> dict[str, float]:
    """One measurement of every variant, interleaved plain / bnviz so a busy machine hurts both."""
    steps = configs[0].steps
    times = {}
    times["plain, processes"] = timed("plain, processes", pool.map, plain_seconds, [c.to_dict() for c in configs])
    reproduction = {}
    times["bnviz, processes"] = timed("bnviz, processes", lambda: reproduction.update(
        result=run_reproduction("ioffe-fig1", steps=steps, out_dir=out_dir, parallel="process")))
    times["bnviz, processes (training only)"] = reproduction["result"].train_seconds
    times["plain, sequential"] = timed("plain, sequential", lambda: [plain_loop(c) for c in configs])
    if not skip_threads:
        with tempfile.TemporaryDirectory() as scratch:
            times["bnviz, threads"] = timed("bnviz, threads", lambda: run_reproduction(
                "ioffe-fig1", steps=steps, out_dir=scratch, parallel="thread"))
    times["plain, fused"] = timed("plain, fused", fused_loop, configs)
    print_claims(reproduction["result"])
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
    with multiprocessing.get_context("spawn").Pool(len(configs)) as pool:
        pool.map(plain_seconds, [c.replace(steps=10).to_dict() for c in configs])  # start the workers, warm caches
        with tempfile.TemporaryDirectory() as scratch:
            for index in range(args.rounds):
                out = Path(args.out) if args.out and index == args.rounds - 1 else Path(scratch) / f"round{index}"
                print(f"round {index + 1}:")
                times = run_round(configs, pool, out, args.skip_threads)
                rounds.append(times)
                show(times, args.steps)
    if args.rounds > 1:
        print("median over rounds:")
        show({key: statistics.median(r[key] for r in rounds) for key in rounds[0]}, args.steps)


def show(times: dict[str, float], steps: int) -> None:
    """Wall times, steps/s of both networks together, and each variant's ratio to the two plain references."""
    print(f"  {'variant':<34} {'wall s':>8} {'steps/s':>8} {'/ plain seq':>12} {'/ plain procs':>14}")
    for name, seconds in times.items():
        print(f"  {name:<34} {seconds:>8.1f} {2 * steps / seconds:>8.0f} "
              f"{seconds / times['plain, sequential']:>11.2f}x {seconds / times['plain, processes']:>13.2f}x")
    ratio = times["bnviz, processes"] / times["plain, processes"]
    print(f"  bnviz reproduction / plain loop on both cores: {ratio:.2f}x "
          f"({'within' if ratio <= GOAL else 'over'} the {GOAL}x goal); "
          f"/ plain sequential: {times['bnviz, processes'] / times['plain, sequential']:.2f}x")


if __name__ == "__main__":
    main()
