"""What bnviz's command lines share: exit codes, the progress line's width, ``--set`` parsing.

``python -m bnviz`` (``bnviz.cli``) and its ``reproduce`` subcommand (``bnviz.reproduce.cli``)
answer alike: the same exit codes, the same ``KEY=VALUE`` rule with the same message.
"""

from __future__ import annotations

EXIT_OK, EXIT_USAGE, EXIT_FAILED, EXIT_STOPPED = 0, 2, 3, 130  # 130 = 128 + SIGINT, the shell's convention
LINE_WIDTH = 100  # progress lines are padded to this, so a shorter one covers a longer one


def parse_settings(items: list[str]) -> dict[str, str]:
    """``--set KEY=VALUE`` items as {key: value} text (RunConfig.from_dict types them);
    ValueError names a malformed item."""
    settings = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set expects KEY=VALUE (got {item!r})")
        settings[key.strip()] = value.strip()
    return settings
