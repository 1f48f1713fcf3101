"""How a reproduction's setup differs from its source, in numbers, before anything trains.

Each reproduction lists its differences as text with ``{fields}`` (``bnviz.reproduce.registry``);
``differences(name, config)`` fills them from the config and the data it will train on, so a
bad template or data folder fails at once, not after a 50,000-step run.
"""

from __future__ import annotations

from bnviz.config import RunConfig
from bnviz.reproduce.registry import get_reproduction

MNIST_TRAIN = 60_000  # the full MNIST training set the papers and the book use


def setup_facts(config: RunConfig, data_dir: str | None = None) -> dict:
    """Numbers the differences' text refers to; loads the data (a bad data_dir is a ValueError here)."""
    from bnviz.data import load_dataset  # imports torch

    data = load_dataset(config.dataset, data_dir)
    train = len(data.train_y)
    seen = config.steps * config.batch_size
    return dict(config.to_dict(), train=train, source=data.source, epochs=seen / train, full_epochs=seen / MNIST_TRAIN,
                evaluated=min(config.eval_size, len(data.test_y)))


def differences(name: str, config: RunConfig, data_dir: str | None = None) -> tuple[str, ...]:
    """The reproduction's differences from its source, each a sentence with our numbers."""
    facts = setup_facts(config, data_dir)
    return tuple(text.format(**facts) for text in get_reproduction(name).differences)
