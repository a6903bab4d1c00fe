"""What `pip install digitcloud` gives a user: the built wheel, installed apart from this checkout.

The wheel is built from a copy of this checkout without its build outputs (a stale ``build/lib``
would otherwise hand the wheel files the configuration no longer names), without build isolation
(no package index: the setuptools in this environment builds it); it is installed with
``--target`` into a temporary folder and used from another directory with only that folder on
``PYTHONPATH``, so neither this checkout nor its editable install can stand in for a file the wheel
forgot.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from digitcloud import model as spec
from tests.synthetic import draw_digit, encode

ROOT = Path(__file__).resolve().parents[1]
# what a checkout collects besides its sources: build outputs, environments, caches, training runs
LOCAL_ONLY = ("build", "dist", "*.egg-info", ".venv", ".git", "runs", "__pycache__", ".*_cache", ".hypothesis")
PIP = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    source = out / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*LOCAL_ONLY))
    build = [*PIP, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q", "-w", str(out), str(source)]
    subprocess.run(build, check=True, capture_output=True, timeout=300)
    (built,) = out.glob("digitcloud-*.whl")
    return built


def test_the_wheel_holds_the_package_its_pinned_weights_and_nothing_else(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    weights = f"digitcloud/weights/{spec.WEIGHTS.filename}"
    assert weights in names and weights.replace(".safetensors", ".json") in names
    assert "digitcloud/py.typed" in names
    version = wheel.name.split("-")[1]
    assert {n.split("/")[0] for n in names} == {"digitcloud", f"digitcloud-{version}.dist-info"}  # no tests/, train/
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "digitcloud = digitcloud.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_an_installed_wheel_classifies_offline_from_another_directory(wheel: Path, tmp_path: Path) -> None:
    # given the wheel installed on its own, and a photo of a 7 in an unrelated folder
    site = tmp_path / "site"
    install = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--no-deps",
        "--no-index",
        "-q",
        "--target",
        str(site),
        str(wheel),
    ]
    subprocess.run(install, check=True, capture_output=True, timeout=300)
    work = tmp_path / "work"
    work.mkdir()
    (work / "seven.png").write_bytes(encode(draw_digit(7, np.random.default_rng(1))))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REPLICATE", "DIGITCLOUD"))}
    env["PYTHONPATH"] = str(site)
    # when a user imports it and classifies, with no token (so: the local CPU)
    code = (
        "import digitcloud, warnings; warnings.simplefilter('ignore');"
        "r = digitcloud.classify('seven.png');"
        "print(digitcloud.__file__); print(r.digit, r.backend)"
    )
    run = subprocess.run([sys.executable, "-c", code], cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    where, answer = run.stdout.split("\n")[:2]
    # then the installed copy answered (its bundled, sha256-checked weights), not this checkout
    assert Path(where).resolve().is_relative_to(site.resolve())
    assert answer == "7 local"
    # and the console script works from the same install
    script = site / "bin" / "digitcloud"
    cli = subprocess.run(
        [sys.executable, str(script), "classify", "seven.png", "--backend", "local", "--format", "csv"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert cli.returncode == 0, cli.stderr
    header, row = cli.stdout.splitlines()
    assert header.startswith("index,source,digit,") and row.startswith("0,'seven.png',7,")
