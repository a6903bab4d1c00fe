from __future__ import annotations

import gzip
import signal
import socket
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import urllib3.util.connection

from tests.synthetic import draw_digit

SHARED_MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees the developer's Replicate token or digitcloud settings."""
    import os

    for name in list(os.environ):
        if name.startswith(("REPLICATE_", "DIGITCLOUD_")):
            monkeypatch.delenv(name)


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A fake Replicate API on loopback with the client's environment pointing at it, and a local
    backend that answers with the server's oracle (the fault tests' set-up; tests/fakes/harness.py)."""
    from tests.fakes.harness import oracle_locally, start

    server = start(monkeypatch)
    oracle_locally(monkeypatch)
    yield server
    server.close()


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


def stroke_digits(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` drawn digits normalised to MNIST style, and their labels (0..9 cycling)."""
    from digitcloud.photo import normalize_grey

    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 10
    images = np.stack([normalize_grey(np.asarray(draw_digit(int(d), rng, 56), dtype=np.float32)) for d in labels])
    return images, labels


@pytest.fixture(scope="session")
def digits() -> tuple[np.ndarray, np.ndarray]:
    return stroke_digits(40)


def write_idx(folder: Path, images: np.ndarray, labels: np.ndarray, gz: bool = True) -> None:
    """MNIST's IDX format: big-endian magic, dims, then the raw uint8 data."""
    folder.mkdir(parents=True, exist_ok=True)
    image_bytes = struct.pack(">IIII", 0x0803, len(images), 28, 28) + images.astype(np.uint8).tobytes()
    label_bytes = struct.pack(">II", 0x0801, len(labels)) + labels.astype(np.uint8).tobytes()
    opener = gzip.open if gz else open
    suffix = ".gz" if gz else ""
    with opener(folder / f"train-images-idx3-ubyte{suffix}", "wb") as f:
        f.write(image_bytes)
    with opener(folder / f"train-labels-idx1-ubyte{suffix}", "wb") as f:
        f.write(label_bytes)


def write_kaggle_csv(path: Path, images: np.ndarray, labels: np.ndarray | None) -> None:
    header = (["label"] if labels is not None else []) + [f"pixel{i}" for i in range(784)]
    lines = [",".join(header)]
    for i, img in enumerate(images):
        values = ([str(int(labels[i]))] if labels is not None else []) + [str(int(v)) for v in img.reshape(-1)]
        lines.append(",".join(values))
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="session")
def mnist_train() -> tuple[np.ndarray, np.ndarray]:
    """The 60,000 digits of ../shared/data/mnist and their labels, when that data is present."""
    if not (SHARED_MNIST / "train-images-idx3-ubyte.gz").exists():
        pytest.skip("../shared/data/mnist is not present")
    with gzip.open(SHARED_MNIST / "train-images-idx3-ubyte.gz") as f:
        images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
    with gzip.open(SHARED_MNIST / "train-labels-idx1-ubyte.gz") as f:
        labels = np.frombuffer(f.read(), np.uint8, offset=8).astype(np.int64)
    return images, labels


@pytest.fixture(scope="session")
def mnist_validation(mnist_train: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The last 2,000 digits of ../shared/data/mnist (never trained on), when that data is present."""
    images, labels = mnist_train
    return images[-2000:], labels[-2000:]


ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def cog_server(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """The real Cog HTTP server (coglet) running this repo's predict.py on a free loopback port.

    COG_MAX_CONCURRENCY=8 is what `cog build` bakes in from predict.py's @cog.concurrent(max=8).
    """
    import os
    import subprocess
    import sys
    import time

    import requests

    pytest.importorskip("cog")
    port = _free_port()
    log_path = tmp_path_factory.mktemp("cog") / "server.log"
    env = {
        **os.environ,
        "PORT": str(port),
        "COG_PREDICT_TYPE_STUB": "predict.py:Runner",
        "COG_MAX_CONCURRENCY": "8",
        # the worker subprocess runs `python` from PATH: make it this interpreter's
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cog.server.http", "--host", "127.0.0.1"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        status = None
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"cog server exited ({proc.returncode}):\n{log_path.read_text()[-3000:]}")
            try:
                status = requests.get(f"{base}/health-check", timeout=2).json().get("status")
            except requests.RequestException:
                status = None
            if status == "READY":
                break
            if status == "SETUP_FAILED":
                pytest.fail(f"predict.py setup failed:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.3)
        else:
            pytest.fail(f"cog server not READY after 180 s (last status {status}):\n{log_path.read_text()[-3000:]}")
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def connects(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """Every TCP connection urllib3 opens (host, port), recorded, then really attempted."""
    calls: list[tuple[str, int]] = []
    real = urllib3.util.connection.create_connection

    def counting(address: tuple[str, int], *args: object, **kwargs: object) -> socket.socket:
        calls.append(address)
        return real(address, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(urllib3.util.connection, "create_connection", counting)
    return calls


@pytest.fixture
def ctrl_c_raises() -> Iterator[None]:
    """SIGINT raises KeyboardInterrupt during the test, as in a terminal. A process started in the
    background by a non-interactive shell (`cmd &`, nohup) inherits SIGINT ignored, and Python then
    leaves it ignored: a test's `os.kill(getpid(), SIGINT)` would do nothing."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
