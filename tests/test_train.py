"""train/: the readers, a smoke run that writes loadable weights, and resume."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import stroke_digits, write_idx, write_kaggle_csv

torch = pytest.importorskip("torch")

from digitcloud import model as spec  # noqa: E402
from train import data  # noqa: E402
from train.__main__ import main as train_main  # noqa: E402
from train.recipe import Recipe, train  # noqa: E402


@pytest.fixture(scope="module")
def small() -> tuple[np.ndarray, np.ndarray]:
    return stroke_digits(60, seed=3)


def test_the_three_readers_agree(tmp_path: Path, small: tuple[np.ndarray, np.ndarray]) -> None:
    images, labels = small
    write_idx(tmp_path / "gz", images, labels, gz=True)
    write_idx(tmp_path / "raw", images, labels, gz=False)
    write_kaggle_csv(tmp_path / "train.csv", images, labels)
    for d in range(10):
        (tmp_path / "folder" / str(d)).mkdir(parents=True)
    for i, (img, label) in enumerate(zip(images, labels, strict=True)):
        Image.fromarray(img).save(tmp_path / "folder" / str(label) / f"{i:03d}.png")
    (tmp_path / "folder" / "3" / "notes.txt").write_text("ignored")

    sets = {name: data.load(tmp_path / name) for name in ("gz", "raw", "train.csv")}
    for name, ds in sets.items():
        np.testing.assert_array_equal(ds.images, images, err_msg=name)
        np.testing.assert_array_equal(ds.labels, labels, err_msg=name)
    assert len({ds.sha256() for ds in sets.values()}) == 1
    folder = data.load(tmp_path / "folder")
    order = np.lexsort((np.arange(60), labels))  # by digit, then by file name
    np.testing.assert_array_equal(folder.images, images[order])
    np.testing.assert_array_equal(folder.labels, labels[order])


def test_unknown_data_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="Kaggle CSV"):
        data.load(tmp_path)


def test_validation_split_is_the_tail_and_never_trained_on(small: tuple[np.ndarray, np.ndarray]) -> None:
    ds = data.Dataset(small[0], small[1], "MNIST IDX test")
    train_set, val_set = data.split(ds, 15)
    np.testing.assert_array_equal(val_set.images, small[0][-15:])
    assert len(train_set) == 45
    assert data.split(ds, None)[1].images.shape[0] == 10  # a sixth when under 60,000


def test_smoke_run_writes_loadable_weights_metadata_and_pictures(
    tmp_path: Path, small: tuple[np.ndarray, np.ndarray]
) -> None:
    write_idx(tmp_path / "mnist", *small)
    out = tmp_path / "weights"
    code = train_main(
        [
            "--data",
            str(tmp_path / "mnist"),
            "--out",
            str(out),
            "--name",
            "smoke",
            "--epochs",
            "1",
            "--batch-size",
            "16",
            "--val-size",
            "20",
            "--checkpoint-dir",
            str(tmp_path / "ckpt"),
            "--device",
            "cpu",
        ]
    )
    assert code == 0
    meta = json.loads((out / "smoke.json").read_text())
    assert meta["sha256"] == spec.sha256_of(out / "smoke.safetensors")
    assert meta["data"]["train"] == 40 and meta["data"]["validation"] == 20
    assert meta["recipe"]["epochs"] == 1 and meta["recipe"]["seed"] == 0
    assert set(meta["validation"]["per_class_accuracy"]) == {str(d) for d in range(10)}
    assert meta["torch"] == torch.__version__
    net = spec.load_model(path=out / "smoke.safetensors", sha256=meta["sha256"])
    assert net(spec.to_model_input(small[0][:2])).shape == (2, 10)
    for picture in ("smoke.confusion.png", "smoke.misclassified.png"):
        with Image.open(out / picture) as img:
            assert img.size[0] > 100


def test_resume_continues_where_it_stopped_and_matches_an_uninterrupted_run(
    tmp_path: Path, small: tuple[np.ndarray, np.ndarray]
) -> None:
    ds = data.Dataset(*small, "test")
    train_set, val_set = data.split(ds, 20)
    recipe = Recipe(epochs=2, batch_size=20)
    device = torch.device("cpu")

    straight, _ = train(recipe, train_set, val_set, tmp_path / "a", device, log=lambda _: None)

    def stop_after_first_epoch(line: str) -> None:
        if line.startswith("epoch 1/2:"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(recipe, train_set, val_set, tmp_path / "b", device, log=stop_after_first_epoch)
    lines: list[str] = []
    resumed, history = train(recipe, train_set, val_set, tmp_path / "b", device, resume=True, log=lines.append)
    assert any(line.startswith("resumed") for line in lines)
    assert [h["epoch"] for h in history] == [1, 2]
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b), name

    with pytest.raises(ValueError, match="different recipe"):
        train(
            Recipe(epochs=3, batch_size=20), train_set, val_set, tmp_path / "b", device, resume=True, log=lambda _: None
        )


def test_pretrained_offline_is_a_clear_error(
    tmp_path: Path,
    small: tuple[np.ndarray, np.ndarray],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # given no internet: torchvision's download fails as urllib does offline (no real request is made)
    import urllib.error

    import torchvision.models._api as api

    def offline(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(api, "load_state_dict_from_url", offline)
    write_idx(tmp_path / "mnist", *small)
    # when training asks for ImageNet weights
    code = train_main(
        [
            "--data",
            str(tmp_path / "mnist"),
            "--out",
            str(tmp_path / "out"),
            "--pretrained",
            "--epochs",
            "1",
            "--checkpoint-dir",
            str(tmp_path / "ckpt"),
        ]
    )
    # then it stops with a message that says why, and writes nothing
    assert code == 2
    assert "could not download the ImageNet weights" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
