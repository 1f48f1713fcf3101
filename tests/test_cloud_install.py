"""What Streamlit Community Cloud installs from requirements.txt: the CPU build of torch, with uv and with pip.

PyPI's Linux torch wheel is the CUDA build (several GB); PyTorch's CPU index has ``2.13.0+cpu``.
requirements.txt names that index with ``--extra-index-url``; Cloud installs with uv first, then
pip. pip takes the best version over every index (``2.13.0+cpu`` sorts above ``2.13.0``). uv by
default takes each package from the first index that has it, and an extra index comes first:
a package the CPU index also holds (numpy) would be limited to that index's versions, and the
pinned one may not be there; pyproject.toml's ``[tool.uv.pip]`` has uv weigh every index as pip does.

This machine cannot reach PyTorch's index, so a stand-in serves on loopback: a "PyPI" with
torch 2.13.0 (the CUDA build's place), numpy 2.4.6, streamlit and plotly, and a "CPU index"
with torch 2.13.0+cpu and an older numpy. The repo's own requirements.txt (its CPU index URL
pointed at the stand-in) and pyproject.toml are resolved by pip and by uv, as Cloud would.
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CPU_INDEX = "https://download.pytorch.org/whl/cpu"  # as requirements.txt names it
PYPI = {"torch": ["2.13.0"], "numpy": ["2.4.6", "2.0.0"], "streamlit": ["1.67.0"], "plotly": ["7.1.0"], "orjson": ["3.13.0"]}
CPU = {"torch": ["2.13.0+cpu"], "numpy": ["2.0.0"]}  # PyTorch's index also holds numpy, not the pinned release
UV = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")


def wheel(folder: Path, name: str, version: str) -> str:
    """A minimal, valid pure-Python wheel with no dependencies; returns its file name."""
    filename = f"{name}-{version}-py3-none-any.whl"
    info = f"{name}-{version}.dist-info"
    files = {f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
             f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: bnviz-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    record = []
    with zipfile.ZipFile(folder / filename, "w") as archive:
        for path, text in files.items():
            archive.writestr(path, text)
            digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
            record.append(f"{path},sha256={digest},{len(text.encode())}")
        archive.writestr(f"{info}/RECORD", "\n".join(record + [f"{info}/RECORD,,"]) + "\n")
    return filename


def simple_index(root: Path, name: str, packages: dict[str, list[str]]) -> None:
    """A PEP 503 index at root/name/: one page per project linking its wheels."""
    for project, versions in packages.items():
        page = root / name / project
        page.mkdir(parents=True)
        links = "".join(f'<a href="{f}">{f}</a><br>' for f in (wheel(page, project, v) for v in versions))
        (page / "index.html").write_text(f"<!DOCTYPE html><html><body>{links}</body></html>")


@pytest.fixture(scope="module")
def indexes(tmp_path_factory):
    """(PyPI stand-in URL, CPU index stand-in URL), served from loopback for the module."""
    root = tmp_path_factory.mktemp("indexes")
    simple_index(root, "pypi", PYPI)
    simple_index(root, "cpu", CPU)
    handler = lambda *args: http.server.SimpleHTTPRequestHandler(*args, directory=str(root))  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.RequestHandlerClass.log_message = lambda *args: None
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    yield f"{base}/pypi/", f"{base}/cpu/"
    server.shutdown()


def workspace(tmp_path: Path, cpu_url: str, with_uv_settings: bool = True) -> Path:
    """The repo's requirements.txt (CPU index pointed at the stand-in) and pyproject.toml, as Cloud sees them."""
    text = (ROOT / "requirements.txt").read_text()
    assert f"--extra-index-url {CPU_INDEX}" in text
    (tmp_path / "requirements.txt").write_text(text.replace(CPU_INDEX, cpu_url.rstrip("/")))
    project = (ROOT / "pyproject.toml").read_text()
    if not with_uv_settings:
        project = re.sub(r"\[tool\.uv\.pip\][^\[]*", "", project)
    (tmp_path / "pyproject.toml").write_text(project)
    return tmp_path


def clean_environment(tmp_path: Path) -> dict[str, str]:
    """This machine's pip settings (local wheel folders, a constraints file) and uv's left out."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PIP_", "UV_"))}
    return env | {"PIP_CONFIG_FILE": os.devnull, "UV_CACHE_DIR": str(tmp_path / "uv-cache"), "UV_NO_PROGRESS": "1"}


def pip_picks(folder: Path, pypi: str) -> dict[str, str]:
    report = folder / "report.json"
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--isolated", "--dry-run", "--ignore-installed",
                           "--disable-pip-version-check", "--index-url", pypi, "--report", str(report),
                           "-r", "requirements.txt"], cwd=folder, env=clean_environment(folder),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return {item["metadata"]["name"]: item["metadata"]["version"] for item in json.loads(report.read_text())["install"]}


def uv_picks(folder: Path, pypi: str) -> subprocess.CompletedProcess:
    return subprocess.run([UV, "pip", "compile", "requirements.txt", "--index-url", pypi, "--python-version", "3.11",
                           "--no-header", "--no-annotate"], cwd=folder, env=clean_environment(folder),
                          capture_output=True, text=True, timeout=300)


def pins(output: str) -> dict[str, str]:
    return dict(line.split("==", 1) for line in output.splitlines() if "==" in line and not line.startswith("#"))


def test_pip_installs_the_cpu_build_and_the_pinned_numpy(indexes, tmp_path):
    pypi, cpu = indexes
    picked = pip_picks(workspace(tmp_path, cpu), pypi)
    assert picked["torch"] == "2.13.0+cpu" and picked["numpy"] == "2.4.6"
    assert (picked["streamlit"], picked["plotly"]) == ("1.67.0", "7.1.0")


@pytest.mark.skipif(UV is None, reason="uv is in requirements-dev.txt: pip install -r requirements-dev.txt")
def test_uv_installs_what_pip_does_with_the_repos_settings(indexes, tmp_path):
    pypi, cpu = indexes
    done = uv_picks(workspace(tmp_path, cpu), pypi)
    assert done.returncode == 0, done.stderr[-3000:]
    picked = pins(done.stdout)
    assert picked["torch"] == "2.13.0+cpu" and picked["numpy"] == "2.4.6"
    assert (picked["streamlit"], picked["plotly"]) == ("1.67.0", "7.1.0")


@pytest.mark.skipif(UV is None, reason="uv is in requirements-dev.txt: pip install -r requirements-dev.txt")
def test_without_them_uv_keeps_to_the_first_index_and_cannot_find_the_pinned_numpy(indexes, tmp_path):
    """The rule the settings answer: the CPU index holds numpy, so uv looks nowhere else for it."""
    pypi, cpu = indexes
    done = uv_picks(workspace(tmp_path, cpu, with_uv_settings=False), pypi)
    assert done.returncode != 0 and "numpy" in done.stderr, done.stdout + done.stderr
