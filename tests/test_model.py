"""digitcloud.model: one spec, pinned weights, refusal of anything else."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from digitcloud import model as spec
from digitcloud.errors import WeightsError

torch = pytest.importorskip("torch")


def test_bundled_weights_match_their_pin_and_metadata() -> None:
    assert spec.sha256_of(spec.WEIGHTS.path) == spec.WEIGHTS.sha256
    meta = spec.WEIGHTS.metadata()
    assert meta["sha256"] == spec.WEIGHTS.sha256
    assert meta["weights"] == spec.WEIGHTS.filename
    assert 0.0 <= meta["validation"]["accuracy"] <= 1.0
    assert set(meta["validation"]["per_class_accuracy"]) == {str(d) for d in range(10)}


def test_architecture_is_resnet34_with_one_channel_and_ten_classes() -> None:
    net = spec.build_model().eval()
    assert net.conv1.in_channels == 1 and net.fc.out_features == 10
    assert sum(p.numel() for p in net.parameters()) == pytest.approx(21.28e6, rel=0.01)
    with torch.inference_mode():
        assert net(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


def test_weights_with_another_sha256_are_refused(tmp_path: Path) -> None:
    tampered = tmp_path / "w.safetensors"
    shutil.copy(spec.WEIGHTS.path, tampered)
    with open(tampered, "r+b") as f:
        f.seek(-1, 2)
        last = f.read(1)
        f.seek(-1, 2)
        f.write(bytes([last[0] ^ 1]))
    with pytest.raises(WeightsError, match="refusing to load"):
        spec.load_model(path=tampered, sha256=spec.WEIGHTS.sha256)


def test_missing_weights_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="not found"):
        spec.load_model(path=tmp_path / "nope.safetensors", sha256="0" * 64)


def test_loaded_model_is_deterministic_float32_in_eval_mode() -> None:
    net = spec.load_model()
    assert not net.training
    assert all(p.dtype == torch.float32 for p in net.parameters())
    x = spec.to_model_input(np.zeros((3, 28, 28), dtype=np.uint8))
    assert x.shape == (3, 1, 28, 28)
    assert torch.allclose(x, torch.full_like(x, -spec.MEAN / spec.STD))


def test_prepared_model_gives_the_same_probabilities_with_half_the_weights() -> None:
    # given the shipped weights, and digits: real-looking strokes plus random pixels
    from tests.conftest import stroke_digits

    digits = np.concatenate(
        [stroke_digits(40, seed=5)[0], np.random.default_rng(0).integers(0, 256, (24, 28, 28), dtype=np.uint8)]
    )
    plain = spec.load_model()
    prepared = spec.prepare(spec.load_model())
    # then BatchNorm folding and the dropped layer4 taps change no answer
    expected = spec.predict_probabilities(plain, digits)
    np.testing.assert_allclose(spec.predict_probabilities(prepared, digits), expected, atol=1e-5)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in prepared.modules())
    assert sum(p.numel() for p in prepared.parameters()) < 0.5 * sum(p.numel() for p in plain.parameters())
    # and only 28x28 digits are accepted: at another size the dropped taps would have mattered
    with pytest.raises(ValueError, match="28x28"), torch.inference_mode():
        prepared(torch.zeros(1, 1, 32, 32))
