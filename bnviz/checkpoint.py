"""A run's whole state between two steps, as bytes: what a fork starts from and a yielded turn continues from.

1. The network's and the optimizer's state dicts (weights, BN running statistics, momentum or
   Adam's moments), every ``torch.Generator`` a module keeps (noisy BN's noise) and torch's
   global generator;
2. the data stream's position: its generator, this epoch's order, the next batch's index;
3. the step, the learning rate and its live changes, and everything recorded so far: the
   history's columns and every sampled series (accuracy, landscape, ...), whatever their name.

A checkpoint is taken between publishes (the probe has just been drained, so nothing is half
recorded) by the trainer's own thread. It is pickled bytes: the web server keeps it opaque
and never imports torch; only a trainer (in this process or a run's) reads it back, so
nothing from outside is ever unpickled. A run restored from it continues exactly as the
original does (``tests/test_fork.py``).
"""

from __future__ import annotations

import pickle

import torch

from bnviz.history import History, Series

SCALARS = ("_step", "_last_eval", "_base_lr", "_lr_events", "_rate")  # the trainer's own counters
RECORDS = ("_evaluations",)  # the accuracies and BN running statistics measured so far (bnviz.evaluation)
STREAM = ("epoch", "_order", "_position")  # BatchStream's position; its generator travels as a state


def capture(trainer) -> bytes:
    """The trainer's state now; call it from its thread between steps, or after it has ended."""
    network, stream = trainer._network, trainer._stream
    state = {
        "config": trainer.config.to_dict(),
        "network": network.state_dict(),
        "optimizer": trainer._optimizer.state_dict(),
        "generators": {name: generator.get_state() for name, generator in _generators(network)},
        "global_generator": torch.get_rng_state(),
        "stream": {name: getattr(stream, name) for name in STREAM} | {"generator": stream._generator.get_state()},
        "scalars": {name: getattr(trainer, name) for name in SCALARS},
        "records": {name: value for name, value in vars(trainer).items()
                    if isinstance(value, (History, Series)) or name in RECORDS},
    }
    return pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)


def restore(trainer, data: bytes) -> int:
    """Put a captured state into a trainer that has just been set up for the same config; returns its step."""
    state = pickle.loads(data)  # bytes a trainer of this server captured, never a visitor's
    if state["config"] != trainer.config.to_dict():
        raise ValueError("a checkpoint resumes only the config it was taken from")
    network, stream = trainer._network, trainer._stream
    network.load_state_dict(state["network"])
    trainer._optimizer.load_state_dict(state["optimizer"])
    generators = dict(_generators(network))
    for name, value in state["generators"].items():
        generators[name].set_state(value)
    torch.set_rng_state(state["global_generator"])
    stream._generator.set_state(state["stream"].pop("generator"))
    for name, value in {**state["stream"], **state["scalars"], **state["records"]}.items():
        setattr(stream if name in STREAM else trainer, name, value)
    return trainer._step


def _generators(network):
    """(module path, generator) of every torch.Generator a module keeps as an attribute."""
    for path, module in network.named_modules():
        for name, value in vars(module).items():
            if isinstance(value, torch.Generator):
                yield f"{path}.{name}", value
