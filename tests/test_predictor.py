"""predict.py under the real Cog HTTP server (coglet), and cog.yaml against Cog's own schema."""

from __future__ import annotations

import base64
import io
import json
import struct
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
from PIL import Image

from digitcloud import Client, digits_file, inputs
from digitcloud.model import WEIGHTS
from tests.conftest import ROOT, stroke_digits
from tests.synthetic import encode

pytest.importorskip("torch")
SCHEMA = ROOT.parent / "shared" / "reference" / "cog-config-schema-v1.0.json"


def data_uri(blob: bytes, mime: str = "application/octet-stream") -> str:
    return f"data:{mime};base64,{base64.b64encode(blob).decode()}"


def predict(base: str, payload: dict[str, Any], attempts: int = 20) -> dict[str, Any]:
    """POST /predictions; a 409 (all slots busy) is retried, as any Cog client must."""
    for _ in range(attempts):
        resp = requests.post(f"{base}/predictions", json={"input": payload}, timeout=300)
        if resp.status_code != 409:
            assert resp.status_code == 200, resp.text[:500]
            return resp.json()
        time.sleep(0.2)
    raise AssertionError("server stayed at capacity")


@pytest.fixture(scope="module")
def many_digits() -> np.ndarray:
    """3,000 distinct MNIST-shaped digits: 300 drawn ones at 10 ink intensities (shape and centre
    unchanged, so they pass through the client's normalisation untouched)."""
    base, _ = stroke_digits(300, seed=9)
    levels = np.linspace(0.55, 1.0, 10)
    digits = np.concatenate([np.rint(base * level).astype(np.uint8) for level in levels])
    assert all(np.array_equal(inputs.normalize(d), d) for d in digits[::97])
    return digits


def test_cog_yaml_validates_against_cogs_schema() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    yaml = pytest.importorskip("yaml")
    if not SCHEMA.exists():
        pytest.skip(f"{SCHEMA} is not present")
    config = yaml.safe_load((ROOT / "cog.yaml").read_text())
    jsonschema.validate(config, json.loads(SCHEMA.read_text()))
    assert config["build"]["gpu"] is True and config["run"] == "predict.py:Runner"
    pins = (ROOT / config["build"]["python_requirements"]).read_text()
    for package in ("torch==", "torchvision==", "cog=="):
        assert f"\n{package}" in "\n" + pins, package


def test_every_input_is_optional_as_cog_reads_them() -> None:
    # Cog reads `x: Path = Input(default=None)` as required (its SDK's check_input here; the schema
    # `cog build` bakes in does the same): a pushed model would refuse every request. Optional[...] it
    # must be. (The local server has no schema to ask: `cog build` writes it.)
    from cog import _inspector

    fields = _inspector.create_predictor("predict", "Runner").inputs
    assert set(fields) == {"image", "digits", "request_id"}
    for given in ({"digits": "x.npz"}, {"image": "x.png"}, {"image": "x.png", "request_id": "r"}):
        _inspector.check_input(fields, given)  # raises "<name>: Field required" for a required one


def test_dockerignore_keeps_the_package_and_weights_and_drops_the_rest() -> None:
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines() if line.strip()}
    assert {"tests", "data", ".venv", "**/.git", "**/__pycache__", ".pytest_cache", "runs"} <= ignored
    assert not any(line.startswith(("digitcloud", "predict.py", "cog.yaml")) and "png" not in line for line in ignored)


@pytest.mark.parametrize("fmt", ["JPEG", "HEIC"], ids=["jpeg", "iphone-heic"])
def test_raw_photo_gives_the_same_answer_as_local(cog_server: str, fmt: str) -> None:
    photo = (ROOT / "examples" / "seven.jpg").read_bytes()
    if fmt == "HEIC":  # as an iPhone stores it: turned, with the turn in the file (cog-requirements has pillow-heif)
        pytest.importorskip("pillow_heif")
        photo = encode(Image.open(io.BytesIO(photo)), "HEIC", exif_orientation=6)
    out = predict(cog_server, {"image": data_uri(photo, f"image/{fmt.lower()}"), "request_id": "req-1"})
    assert out["status"] == "succeeded", out
    (entry,) = out["output"]["predictions"]
    local = Client(backend="local").classify(photo)
    assert entry["digit"] == local.digit == 7 and local.probabilities is not None
    np.testing.assert_allclose(entry["probabilities"], local.probabilities, atol=1e-4)
    assert out["output"]["request_id"] == "req-1"
    assert out["output"]["weights_sha256"] == WEIGHTS.sha256


@pytest.mark.parametrize("compressed", [False, True], ids=["npy", "npz"])
def test_batch_of_thousands_matches_local_exactly(cog_server: str, many_digits: np.ndarray, compressed: bool) -> None:
    blob = digits_file.write_digits_file(many_digits, compressed=compressed)
    out = predict(cog_server, {"digits": data_uri(blob)})
    assert out["status"] == "succeeded", out.get("error")
    entries = out["output"]["predictions"]
    assert len(entries) == len(many_digits)
    local = Client(backend="local").classify(many_digits)
    assert [e["digit"] for e in entries] == [r.digit for r in local]
    np.testing.assert_allclose([e["probabilities"] for e in entries], [r.probabilities for r in local], atol=1e-4)
    assert out["output"]["request_id"] is None


def _npy_header_only(count: int) -> bytes:
    """A .npy whose header claims ``count`` digits, followed by almost no data."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "|u1", "fortran_order": False, "shape": (count, 28, 28)})
    return buf.getvalue() + b"\0" * 100


def _npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


BAD_BATCHES = {
    "float dtype": (_npy(np.zeros((3, 28, 28), np.float32)), "must be uint8"),
    "wrong shape": (_npy(np.zeros((3, 28, 27), np.uint8)), "shape [N, 28, 28]"),
    "empty": (_npy(np.zeros((0, 28, 28), np.uint8)), "holds no digits"),
    "over the limit": (_npy_header_only(1_000_000), "batch too large"),
    "a bool for N": (_npy_header_only(True), "shape [N, 28, 28]"),  # type: ignore[arg-type]
    "truncated": (_npy(np.zeros((10, 28, 28), np.uint8))[:-100], "truncated"),
    "not numpy": (b"GIF89a not a batch", "must be .npy or .npz"),
    "corrupt npz": (b"PK\x03\x04" + b"\0" * 40, "corrupt batch file"),
    "pickled objects": (_npy(np.array([object()] * 3)), "must be uint8"),
}


@pytest.mark.parametrize("name", list(BAD_BATCHES))
def test_bad_batch_files_fail_with_a_clear_reason(cog_server: str, name: str) -> None:
    blob, reason = BAD_BATCHES[name]
    out = predict(cog_server, {"digits": data_uri(blob)})
    assert out["status"] == "failed" and reason in out["error"], out


def test_bad_image_is_a_per_item_error(cog_server: str) -> None:
    png_header = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + b"\0" * 8
    out = predict(cog_server, {"image": data_uri(png_header, "image/png")})
    assert out["status"] == "succeeded"
    (entry,) = out["output"]["predictions"]
    assert set(entry) == {"error"} and entry["error"].startswith("image: corrupt"), entry


@pytest.mark.parametrize("payload", [{}, {"image": "x", "digits": "y"}], ids=["neither", "both"])
def test_exactly_one_of_image_or_digits(cog_server: str, payload: dict[str, str]) -> None:
    if payload:
        payload = {"image": data_uri(b"a"), "digits": data_uri(b"b")}
    out = predict(cog_server, payload)
    assert out["status"] == "failed" and "exactly one of 'image'" in out["error"]


def test_concurrent_requests_each_get_their_own_answers(cog_server: str, many_digits: np.ndarray) -> None:
    batches = [many_digits[i * 37 : i * 37 + 20 + i] for i in range(6)]
    expected = [[r.digit for r in Client(backend="local").classify(b)] for b in batches]
    answers: dict[int, Any] = {}

    def send(i: int) -> None:
        answers[i] = predict(
            cog_server, {"digits": data_uri(digits_file.write_digits_file(batches[i])), "request_id": str(i)}
        )

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(batches))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, out in answers.items():
        assert out["output"]["request_id"] == str(i)
        assert [e["digit"] for e in out["output"]["predictions"]] == expected[i]
    assert len(answers) == len(batches)


def test_read_digits_file_round_trips_and_refuses_from_the_header(tmp_path: Path, many_digits: np.ndarray) -> None:
    for compressed in (False, True):
        path = tmp_path / ("b.npz" if compressed else "b.npy")
        path.write_bytes(digits_file.write_digits_file(many_digits[:50], compressed=compressed))
        np.testing.assert_array_equal(digits_file.read_digits_file(path), many_digits[:50])
    fortran = tmp_path / "f.npy"
    np.save(fortran, np.asfortranarray(many_digits[:5]))
    np.testing.assert_array_equal(digits_file.read_digits_file(fortran), many_digits[:5])
    with pytest.raises(inputs.InputError, match="batch too large"):
        digits_file.read_digits_file(tmp_path / "b.npy", max_digits=10)
    with pytest.raises(inputs.InputError, match="batch too large"):
        digits_file.read_digits_file(tmp_path / "b.npz", max_digits=10)
