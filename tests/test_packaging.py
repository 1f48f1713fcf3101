"""The package as pip sees it: pyproject's pins agree with the requirements files, and the
``bnviz`` command that ``pip install -e .`` (in requirements-dev.txt) installs runs the CLI."""

import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PIN = re.compile(r"^([A-Za-z0-9_.\[\]-]+)\s*==\s*([^\s;#]+)")


def pins(path: Path) -> dict[str, str]:
    """name -> version of every `name==version` line (options, includes and comments skipped)."""
    found = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        match = PIN.match(line.strip())
        if match:
            found[match.group(1).lower()] = match.group(2).split("+")[0]  # a local label (+cpu) is the same release
    return found


def test_pyproject_pins_the_requirements():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    listed = pins(ROOT / "requirements.txt")
    declared = {name: version for name, version in (PIN.match(d).groups() for d in project["dependencies"])}
    assert {name.lower(): version for name, version in declared.items()} == listed
    test_pins = {name.lower(): version for name, version in (PIN.match(d).groups() for d in project["optional-dependencies"]["test"])}
    dev = pins(ROOT / "requirements-dev.txt")
    assert {name: dev.pop(name) for name in listed} == listed  # the app's pins, repeated (not its CPU index)
    assert test_pins == dev


def test_the_bnviz_command_runs_the_cli():
    command = Path(sys.executable).with_name("bnviz")
    assert command.exists(), "pip install -r requirements-dev.txt installs the package and its `bnviz` command"
    listed = subprocess.run([str(command), "presets"], capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0, listed.stderr
    module = subprocess.run([sys.executable, "-m", "bnviz", "presets"], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert listed.stdout == module.stdout and "ioffe-fig1" in listed.stdout
