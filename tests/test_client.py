"""classify() and Client on the local backend with the shipped weights."""

from __future__ import annotations

import io
import pkgutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import digitcloud
from digitcloud import Client, InputError, LocalBackendError, Prediction, classify
from tests.synthetic import draw_digit, encode, photograph

pytest.importorskip("torch")


@pytest.fixture(scope="module")
def client() -> Client:
    return Client(backend="local", batch_size=16)


def test_import_does_not_import_torch() -> None:
    heavy = ("torch", "torchvision", "requests", "pillow_heif")
    code = f"import sys, digitcloud; print(*(m in sys.modules for m in {heavy}))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    # requests loads only when a cloud or URL is used, pillow-heif when a HEIC is read
    assert out.split() == ["False"] * len(heavy)


def test_all_lists_exactly_the_public_names() -> None:
    # submodules become attributes once imported; they are not public names
    submodules = {m.name for m in pkgutil.iter_modules(digitcloud.__path__)}
    public = {name for name in dir(digitcloud) if not name.startswith("_")} - submodules
    assert sorted(digitcloud.__all__) == digitcloud.__all__
    assert set(digitcloud.__all__) - {"__version__"} == public


def test_one_image_in_one_prediction_out(client: Client, tmp_path: Path, rng: np.random.Generator) -> None:
    path = tmp_path / "seven.png"
    path.write_bytes(encode(draw_digit(7, rng)))
    result = client.classify(str(path))
    assert isinstance(result, Prediction) and result.ok
    assert result.backend == "local" and result.index == 0 and result.source == repr(str(path))
    assert result.digit is not None and 0 <= result.digit <= 9
    assert result.probabilities is not None and len(result.probabilities) == 10
    assert sum(result.probabilities) == pytest.approx(1.0, abs=1e-4)
    assert result.confidence == max(result.probabilities)
    assert "digit=" in repr(result)
    assert repr(Prediction(index=0, source="x")).startswith("Prediction(digit=None, confidence=None")


def test_list_in_list_out_same_order_every_kind(
    client: Client, tmp_path: Path, digits: tuple[np.ndarray, np.ndarray]
) -> None:
    torch = pytest.importorskip("torch")
    images, _ = digits
    path = tmp_path / "a.png"
    Image.fromarray(images[0]).save(path)
    batch = images[4:7]
    mixed = [
        str(path),
        encode(Image.fromarray(images[1])),
        Image.fromarray(images[2]),
        images[3],
        batch,  # N x H x W expands to N results in place
        torch.from_numpy(images[7]),
        io.BytesIO(encode(Image.fromarray(images[8]))),
    ]
    results = client.classify(mixed)
    assert isinstance(results, list) and len(results) == 9
    assert [r.index for r in results] == list(range(9))
    expected = client.classify(images[:9])
    assert [r.digit for r in results] == [r.digit for r in expected]
    np.testing.assert_allclose([r.probabilities for r in results], [r.probabilities for r in expected], atol=1e-6)


def test_list_of_one_is_still_a_list(client: Client, digits: tuple[np.ndarray, np.ndarray]) -> None:
    assert isinstance(client.classify([digits[0][0]]), list)
    assert isinstance(client.classify(digits[0][:1]), list)


def test_batched_answers_equal_one_at_a_time(client: Client, digits: tuple[np.ndarray, np.ndarray]) -> None:
    images, _ = digits
    together = client.classify(images)
    alone = [client.classify(img) for img in images]
    assert [r.digit for r in together] == [r.digit for r in alone]
    np.testing.assert_allclose([r.probabilities for r in together], [r.probabilities for r in alone], atol=1e-5)


def test_bad_items_get_named_errors_and_the_rest_are_answered(
    client: Client, tmp_path: Path, digits: tuple[np.ndarray, np.ndarray]
) -> None:
    images, _ = digits
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    mixed = [images[0], str(tmp_path / "broken.png"), np.full((28, 28), np.nan), images[1], str(tmp_path / "gone.png")]
    results = client.classify(mixed)
    assert [r.ok for r in results] == [True, False, False, True, False]
    assert "item 1" in str(results[1].error) and "broken.png" in str(results[1].error)
    assert "item 2" in str(results[2].error) and "NaN" in str(results[2].error)
    assert "gone.png" in str(results[4].error) and results[4].backend is None
    assert isinstance(results[1].error, InputError)
    with pytest.raises(InputError, match=r"broken\.png"):
        results[1].raise_for_error()
    assert results[0].raise_for_error() is results[0]


def test_order_is_kept_across_many_chunks(digits: tuple[np.ndarray, np.ndarray]) -> None:
    images, _ = digits
    small = Client(backend="local", batch_size=3)
    many = [images[i % len(images)] if i % 7 else np.zeros((2, 2, 2, 2, 2)) for i in range(50)]
    results = small.classify(many)
    assert len(results) == 50 and [r.index for r in results] == list(range(50))
    assert [r.ok for r in results] == [bool(i % 7) for i in range(50)]
    reference = {i: r.digit for i, r in enumerate(Client(backend="local").classify(images))}
    assert all(r.digit == reference[i % len(images)] for i, r in enumerate(results) if r.ok)


def test_classify_iter_streams_a_generator(digits: tuple[np.ndarray, np.ndarray]) -> None:
    images, _ = digits
    pulled = []

    def source():  # type: ignore[no-untyped-def]
        for img in images:
            pulled.append(1)
            yield img

    stream = Client(backend="local", batch_size=4).classify_iter(source())
    first = next(stream)
    assert first.index == 0 and len(pulled) == 4  # one chunk read, not the whole input
    assert len([first, *stream]) == len(images)


def test_model_failure_on_one_digit_spares_the_others(
    monkeypatch: pytest.MonkeyPatch, digits: tuple[np.ndarray, np.ndarray]
) -> None:
    images, _ = digits
    c = Client(backend="local")
    real = c._local.predict
    poisoned = images[2]

    def flaky(batch: np.ndarray) -> np.ndarray:
        if any(np.array_equal(d, poisoned) for d in batch):
            raise RuntimeError("simulated kernel failure")
        return real(batch)

    monkeypatch.setattr(c._local, "predict", flaky)
    results = c.classify(images[:5])
    assert [r.ok for r in results] == [True, True, False, True, True]
    assert isinstance(results[2].error, LocalBackendError) and "simulated kernel failure" in str(results[2].error)


def test_module_level_classify_with_settings(digits: tuple[np.ndarray, np.ndarray]) -> None:
    images, _ = digits
    assert classify(images[0], backend="local").backend == "local"
    assert [r.digit for r in classify(images[:3])] == [r.digit for r in classify(images[:3], batch_size=1)]


def test_photo_of_a_digit_gets_the_label_of_its_clean_version(client: Client) -> None:
    # given clean drawn digits and large, off-centre photos of the same strokes on paper
    rng = np.random.default_rng(11)
    agree = 0
    for digit in range(10):
        ink = draw_digit(digit, rng)
        clean = client.classify(ink)
        photo = photograph(ink, rng, size=(1000, 750), paper="cream", offset=(0.75, 0.3), digit_height=0.3)
        # when the photo goes in as a JPEG
        from_photo = client.classify(encode(photo, "JPEG", quality=88))
        # then it gets the label its clean version gets
        agree += clean.digit == from_photo.digit
    assert agree == 10


def test_without_torch_the_error_names_the_extra_to_install() -> None:
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import numpy as np, digitcloud\n"
        "try:\n"
        "    digitcloud.classify(np.zeros((28, 28), dtype=np.uint8) + np.eye(28, dtype=np.uint8) * 255)\n"
        "except digitcloud.MissingDependencyError as exc:\n"
        "    print('missing:', exc, isinstance(exc, ImportError))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "missing:" in out and "pip install 'digitcloud[local]'" in out and out.strip().endswith("True")


def test_an_outage_without_a_local_model_costs_only_its_own_chunk(
    digits: tuple[np.ndarray, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    from digitcloud import CloudUnavailableError, MissingDependencyError

    images = digits[0][:6]
    calls = []

    def cloud(batch: np.ndarray, stop: object = None) -> list[np.ndarray]:
        calls.append(len(batch))
        if len(calls) == 2:
            raise CloudUnavailableError("HTTP 503 from the cloud", status=503)
        return list(np.eye(10, dtype=np.float32)[[3] * len(batch)])

    def no_torch(batch: np.ndarray) -> np.ndarray:
        raise MissingDependencyError("the local model needs torch: pip install 'digitcloud[local]'")

    with Client(cog_url="http://127.0.0.1:9", batch_size=2, max_concurrency=1) as client:  # a cloud-only install
        assert client._cloud is not None
        monkeypatch.setattr(client._cloud, "predict", cloud)
        monkeypatch.setattr(client._local, "predict", no_torch)
        results = client.classify(images)
    assert [r.index for r in results] == list(range(6))
    assert [r.digit for r in results] == [3, 3, None, None, 3, 3]  # the answered chunks are kept
    assert all(isinstance(r.error, CloudUnavailableError) for r in results[2:4])
    assert "503" in str(results[2].error) and "no local fallback" in str(results[2].error)
