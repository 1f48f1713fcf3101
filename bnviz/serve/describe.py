"""A run in a few words: the preset it is closest to, its norm, and the settings it changed.

The class view lists a server's runs, and a restart notice names the runs it lost; both say
what a run is the way a teacher thinks of it ("ioffe-fig1 · BatchNorm · lr 0.1"), not as a
key. The preset is the one whose config differs in the fewest settings (norm aside: a
comparison's runs differ in norm only).
"""

from __future__ import annotations

from bnviz.config import RunConfig, field_names
from bnviz.presets import PRESETS
from bnviz.style import NORM_LABELS


def closest_preset(config: RunConfig) -> tuple[str, list[str]]:
    """(preset name, ["lr 0.1", ...]): the nearest preset and the settings that differ from it."""
    def differences(preset) -> list[str]:
        return [f"{name} {getattr(config, name)}" for name in field_names()
                if name != "norm" and getattr(config, name) != getattr(preset.config, name)]
    name = min(PRESETS, key=lambda key: len(differences(PRESETS[key])))
    return name, differences(PRESETS[name])


def describe(config: RunConfig) -> str:
    name, changed = closest_preset(config)
    return " · ".join([name, NORM_LABELS[config.norm], *([", ".join(changed)] if changed else [])])
