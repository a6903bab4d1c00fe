"""Fault matrix, input and local-model rows not covered elsewhere: I7 (odd and Unicode paths),
I10 (10^5 items from a generator through the loopback Replicate API, memory bounded), M2
(malicious weights)."""

from __future__ import annotations

import math
import os
import pickle
import tracemalloc
import unicodedata
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from digitcloud import Client, InputError
from tests.conftest import stroke_digits
from tests.fakes.harness import check_ledger, expected, oracle_locally, quick, start
from tests.fakes.replicate_server import oracle

ODD_NAMES = [
    unicodedata.normalize("NFC", "caf\u00e9.png"),
    unicodedata.normalize("NFD", "caf\u00e9.png"),  # a different file from the NFC one, by design
    "\U0001f600 emoji.png",
    "\u05e1\u05e4\u05e8\u05d4 rtl.png",  # Hebrew, right to left
    "with spaces .png",
    "new\nline.png",
    os.fsdecode(b"bad-utf8-\xff\xfe.png"),  # not valid UTF-8: Python carries it as surrogates
]


def test_i7_odd_and_unicode_paths_are_read_and_named_safely(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    oracle_locally(monkeypatch)
    digits = stroke_digits(len(ODD_NAMES), seed=61)[0]
    paths = []
    for name, digit in zip(ODD_NAMES, digits, strict=True):
        path = tmp_path / name
        Image.fromarray(digit).save(path, format="PNG")
        paths.append(path)
    assert len(set(os.listdir(tmp_path))) == len(ODD_NAMES)  # NFC and NFD really are two files
    inputs = [str(p) for p in paths] + [paths[0], str(paths[0]), tmp_path / "missing\n\u00e9.png"]
    with Client(backend="local") as client:
        results = client.classify(inputs)
    assert [r.index for r in results] == list(range(len(inputs)))
    want = expected(digits)
    # every odd name is read; a duplicate (as Path, then as str) gets its own result
    assert [r.digit for r in results[: len(ODD_NAMES)]] == want
    assert results[len(ODD_NAMES)].digit == results[len(ODD_NAMES) + 1].digit == want[0]
    missing = results[-1]
    assert isinstance(missing.error, InputError) and "missing" in str(missing.error)
    for r in results:  # names are shown by repr: a newline cannot forge a log line
        assert "\n" not in r.source and "\n" not in str(r.error or "")
    # bytes are image contents (README "Inputs"), never a path: a path given as bytes is a named error
    (as_bytes,) = Client(backend="local").classify([os.fsencode(paths[0])])
    assert isinstance(as_bytes.error, InputError) and as_bytes.error.index == 0


def test_i10_hundred_thousand_items_from_a_generator_stream_in_bounded_memory(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    n, batch_size, block = 100_000, 2048, 500
    base = stroke_digits(block, seed=62)[0]
    labels = np.array(expected(base))
    fake = start(monkeypatch)
    fake.remove_data = True  # the fake's own ledger must not count as the client's memory
    oracle_locally(monkeypatch)

    def images() -> Iterator[np.ndarray]:
        """10^5 digits made lazily, in blocks of 500 (one at a time, the per-image checks of
        ``inputs`` would make this test minutes long, for nothing it does not already test)."""
        for _ in range(n // block):
            yield base.copy()

    try:
        with Client(model="o/n", batch_size=batch_size, max_concurrency=2) as client:
            quick(client)
            tracemalloc.start()
            try:
                count = wrong = 0
                for r in client.classify_iter(images()):
                    wrong += r.index != count or r.backend != "replicate" or r.digit != labels[count % block]
                    count += 1
                peak = tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()
        assert count == n and wrong == 0
        # the inputs alone are 78 MB as one array; streaming keeps a few chunks in flight
        assert peak < 48 * 2**20, f"peak {peak / 2**20:.0f} MiB"
        assert len(fake.accepted_creates) == math.ceil(n / batch_size)  # no 429, no retry
        check_ledger(fake)
    finally:
        fake.close()


class _Evil:
    """Unpickling this writes a marker file: what a malicious weights file would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, ...]:
        return (Path.write_text, (self.marker, "pwned"))


def test_m2_malicious_pickle_weights_never_run(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from digitcloud import model
    from digitcloud.errors import WeightsError

    marker = tmp_path / "marker"
    evil = tmp_path / "evil.safetensors"
    evil.write_bytes(pickle.dumps({"conv1.weight": _Evil(marker)}))
    # with the pinned sha256 it is refused before a byte of it is parsed
    with pytest.raises(WeightsError, match="sha256"):
        model.load_model(path=evil)
    # even with its own sha256 (a pin changed too), it is read as safetensors, never unpickled
    with pytest.raises(Exception) as exc:  # any refusal will do; running it will not
        model.load_model(path=evil, sha256=model.sha256_of(evil))
    assert not isinstance(exc.value, AssertionError)
    assert not marker.exists()
    # and nothing in the package or the predictor ever unpickles
    root = Path(__file__).resolve().parents[1]
    for source in [*root.joinpath("digitcloud").glob("*.py"), root / "predict.py"]:
        text = source.read_text()
        assert "pickle.load" not in text and "torch.load(" not in text, source
    assert oracle(np.zeros((1, 28, 28), np.uint8)).shape == (1, 10)


def test_i6_missing_directory_and_broken_symlink_are_named_and_neighbours_succeed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    oracle_locally(monkeypatch)
    digits = stroke_digits(2, seed=63)[0]
    good = [tmp_path / "a.png", tmp_path / "b.png"]
    for path, digit in zip(good, digits, strict=True):
        Image.fromarray(digit).save(path)
    (tmp_path / "dangling.png").symlink_to(tmp_path / "gone.png")
    (tmp_path / "folder").mkdir()
    inputs = [good[0], tmp_path / "dangling.png", tmp_path / "missing.png", tmp_path / "folder", good[1]]
    with Client(backend="local") as client:
        results = client.classify(inputs)
    assert [r.index for r in results] == list(range(5))
    assert [r.digit for r in (results[0], results[4])] == expected(digits)
    for r in results[1:4]:
        assert isinstance(r.error, InputError) and f"item {r.index} " in str(r.error)
    assert "dangling.png" in str(results[1].error) and "missing.png" in str(results[2].error)
