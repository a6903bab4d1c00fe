"""train/: the readers, a smoke run that writes loadable weights, and resume."""

from __future__ import annotations

import dataclasses
import itertools
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import stroke_digits, write_idx, write_kaggle_csv

torch = pytest.importorskip("torch")

from safetensors import safe_open  # noqa: E402

from digitcloud import model as spec  # noqa: E402
from train import data  # noqa: E402
from train.__main__ import main as train_main  # noqa: E402
from train.__main__ import parse_args  # noqa: E402
from train.export import export, safetensors_bytes  # noqa: E402
from train.recipe import Recipe, recalibrate_batchnorm, train  # noqa: E402


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
    order = np.lexsort((np.arange(60), labels))  # read by digit, then by file name
    shuffled = order[np.random.default_rng(0).permutation(60)]  # then shuffled with a fixed seed
    np.testing.assert_array_equal(folder.images, images[shuffled])
    np.testing.assert_array_equal(folder.labels, labels[shuffled])
    # so --limit and the validation tail hold every digit, not only the first few
    assert set(folder.subset(30).labels) == set(labels)


def test_kaggle_csv_for_training_skips_blank_lines_and_names_bad_rows(
    tmp_path: Path, small: tuple[np.ndarray, np.ndarray]
) -> None:
    images, labels = small
    write_kaggle_csv(tmp_path / "train.csv", images[:5], labels[:5])
    header, *rows = (tmp_path / "train.csv").read_text().splitlines()
    (tmp_path / "bom.csv").write_text("\ufeff" + "\n".join([header, rows[0], "", *rows[1:], "", ""]) + "\n")
    ds = data.load(tmp_path / "bom.csv")  # a byte-order mark and blank lines, as editors leave them
    np.testing.assert_array_equal(ds.images, images[:5])
    np.testing.assert_array_equal(ds.labels, labels[:5])
    (tmp_path / "ten.csv").write_text("\n".join([header, rows[0], "10" + rows[1][1:]]) + "\n")
    with pytest.raises(ValueError, match=r"row 2: label must be 0\.\.9"):
        data.load(tmp_path / "ten.csv")
    (tmp_path / "short.csv").write_text("\n".join([header, rows[0][:-2]]) + "\n")
    with pytest.raises(ValueError, match="row 1: 784 values, expected 785"):
        data.load(tmp_path / "short.csv")


def test_batches_never_end_with_a_single_digit(tmp_path: Path, small: tuple[np.ndarray, np.ndarray]) -> None:
    from train.recipe import batch_bounds

    # 41 training digits at batch 20: the last batch would hold one digit, which BatchNorm refuses
    write_idx(tmp_path / "mnist", *small)
    args = ["--data", str(tmp_path / "mnist"), "--val-size", "19", "--batch-size", "20", "--epochs", "1"]
    out = ["--teachers", "0", "--out", str(tmp_path / "o"), "--checkpoint-dir", str(tmp_path / "c"), "--device", "cpu"]
    assert train_main([*args, *out]) == 0

    assert batch_bounds(307, 256) == [(0, 256), (256, 307)]
    assert batch_bounds(257, 256) == [(0, 257)]  # not (256, 257): BatchNorm cannot train on one digit
    assert batch_bounds(512, 256) == [(0, 256), (256, 512)]
    for count in range(1, 80):
        bounds = batch_bounds(count, 16)
        assert bounds[0][0] == 0 and bounds[-1][1] == count
        assert all(a[1] == b[0] for a, b in itertools.pairwise(bounds))
        assert count == 1 or all(end - start > 1 for start, end in bounds)


def test_impossible_arguments_are_refused_before_any_work(capsys: pytest.CaptureFixture[str]) -> None:
    refused = {
        ("--limit", "0"): "--limit must be at least 1; got 0",
        ("--threads", "0"): "--threads must be at least 1; got 0",
        ("--epochs", "0"): "--epochs must be at least 1; got 0",
        ("--teacher-epochs", "0"): "--teacher-epochs must be at least 1; got 0",
        ("--val-size", "-5"): "--val-size must be at least 1; got -5",
        ("--teachers", "-1"): "--teachers must be 0 or more; got -1",
        ("--max-lr", "0"): "--max-lr must be above 0; got 0.0",
        ("--max-lr", "nan"): "--max-lr must be above 0; got nan",
        ("--teacher-max-lr", "-0.1"): "--teacher-max-lr must be above 0; got -0.1",
        ("--ema-decay", "1"): "--ema-decay must be from 0 (off) to below 1; got 1.0",
        ("--ema-decay", "-0.5"): "--ema-decay must be from 0 (off) to below 1; got -0.5",
        ("--device", "mps"): "invalid choice: 'mps'",
        ("--elastic", "1.5"): "--elastic is a share of the digits, from 0 to 1; got 1.5",
        ("--thicker-pen", "0"): "--thicker-pen must be at least 1 pixel; got 0",
        ("--rotate", "-5"): "--rotate must be from 0 to 180 degrees; got -5.0",
        ("--rotate", "nan"): "--rotate must be from 0 to 180 degrees; got nan",
        ("--teacher-architecture", "vgg"): "invalid choice: 'vgg'",
    }
    for bad, message in refused.items():
        with pytest.raises(SystemExit) as exc:
            train_main(["--data", "x", "--out", "y", *bad])
        assert exc.value.code == 2, bad
        assert message in capsys.readouterr().err, bad
    # the edges of what is allowed still parse (0 turns the EMA off)
    args = parse_args(["--data", "x", "--out", "y", "--ema-decay", "0", "--teachers", "0", "--max-lr", "1e-4"])
    assert (args.ema_decay, args.teachers, args.max_lr) == (0.0, 0, 1e-4)
    if not torch.cuda.is_available():
        assert train_main(["--data", "x", "--out", "y", "--device", "cuda"]) == 2
        assert "no CUDA GPU" in capsys.readouterr().err


def test_a_truncated_or_corrupt_idx_file_is_a_clear_error_naming_it(
    tmp_path: Path, small: tuple[np.ndarray, np.ndarray]
) -> None:
    for gz in (False, True):
        folder = tmp_path / f"gz-{gz}"
        write_idx(folder, *small, gz=gz)
        images = next(folder.glob("train-images*"))
        whole = images.read_bytes()
        for broken in (whole[: len(whole) // 2], b"not an idx file"):
            images.write_bytes(broken)
            with pytest.raises(ValueError, match="is not a complete IDX file") as exc:
                data.load(folder)
            assert images.name in str(exc.value)


def test_the_command_reports_bad_data_as_a_message_not_a_traceback(
    tmp_path: Path, small: tuple[np.ndarray, np.ndarray], capsys: pytest.CaptureFixture[str]
) -> None:
    write_idx(tmp_path / "mnist", *small)
    run = ["--out", str(tmp_path / "o"), "--teachers", "0", "--epochs", "1", "--device", "cpu"]
    assert train_main(["--data", str(tmp_path / "mnist"), "--val-size", "60", *run]) == 2
    assert capsys.readouterr().err == "error: validation size 60 does not fit 60 digits\n"
    assert train_main(["--data", str(tmp_path / "missing"), *run]) == 2
    assert "missing' is not a Kaggle CSV" in capsys.readouterr().err
    images = next((tmp_path / "mnist").glob("train-images*"))
    images.write_bytes(images.read_bytes()[:100])
    assert train_main(["--data", str(tmp_path / "mnist"), *run]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and images.name in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()  # nothing was trained or written


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
            "--teachers",
            "1",
            "--teacher-epochs",
            "1",
        ]
    )
    assert code == 0
    meta = json.loads((out / "smoke.json").read_text())
    assert meta["sha256"] == spec.sha256_of(out / "smoke.safetensors")
    assert meta["data"]["train"] == 40 and meta["data"]["validation"] == 20
    assert meta["data"]["validation_held_out"] is True and meta["validation"]["held_out"] is True
    assert meta["recipe"]["epochs"] == 1 and meta["recipe"]["seed"] == 0
    assert meta["recipe"]["teachers"] == 1 and len(meta["teachers"]) == 1
    assert meta["teachers"][0]["history"][0]["epoch"] == 1
    assert set(meta["validation"]["per_class_accuracy"]) == {str(d) for d in range(10)}
    assert meta["torch"] == torch.__version__
    net = spec.load_model(path=out / "smoke.safetensors", sha256=meta["sha256"])
    assert net(spec.to_model_input(small[0][:2])).shape == (2, 10)
    for picture in ("smoke.confusion.png", "smoke.misclassified.png"):
        with Image.open(out / picture) as img:
            assert img.size[0] > 100


def test_export_writes_the_same_bytes_for_the_same_tensors(tmp_path: Path) -> None:
    # safetensors alone orders these keys differently from one call to the next
    metadata = {f"key{i}": str(i) for i in range(6)}
    state = {"b": torch.arange(6, dtype=torch.float16), "a": torch.ones(2, 3)}
    files = {safetensors_bytes(state, metadata) for _ in range(20)}
    assert len(files) == 1
    (tmp_path / "w.safetensors").write_bytes(files.pop())
    with safe_open(tmp_path / "w.safetensors", "pt") as f:
        assert f.metadata() == metadata and set(f.keys()) == set(state)
        for name, tensor in state.items():
            assert torch.equal(f.get_tensor(name), tensor), name


def test_exporting_the_shipped_model_rewrites_its_file_byte_for_byte(tmp_path: Path) -> None:
    path, sha = export(spec.load_model(), tmp_path, spec.WEIGHTS.path.stem, {})
    assert sha == spec.WEIGHTS.sha256
    assert path.read_bytes() == spec.WEIGHTS.path.read_bytes()


def test_resume_continues_where_it_stopped_and_matches_an_uninterrupted_run(
    tmp_path: Path, small: tuple[np.ndarray, np.ndarray]
) -> None:
    ds = data.Dataset(*small, "test")
    train_set, val_set = data.split(ds, 20)
    # one teacher, distillation and the weight EMA: every piece of state a resume must restore
    recipe = Recipe(epochs=2, batch_size=20, teachers=1, teacher_epochs=1, ema_decay=0.9)
    device = torch.device("cpu")

    straight = train(recipe, train_set, val_set, tmp_path / "a", device, log=lambda _: None).model

    def stop_after_first_epoch(line: str) -> None:
        if line.startswith("epoch 1/2:"):  # the student's first epoch, after the teacher's
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(recipe, train_set, val_set, tmp_path / "b", device, log=stop_after_first_epoch)
    lines: list[str] = []
    trained = train(recipe, train_set, val_set, tmp_path / "b", device, resume=True, log=lines.append)
    resumed, history = trained.model, trained.history
    assert any(line.startswith("teacher 1: resumed") for line in lines)
    assert any(line.startswith("resumed") for line in lines)
    # --resume where nothing was written yet says so, rather than starting over in silence
    fresh: list[str] = []
    train(recipe, train_set, val_set, tmp_path / "c", device, resume=True, log=fresh.append)
    assert any(line.startswith("teacher 1: no checkpoint at") for line in fresh)
    assert any(line.startswith("no checkpoint at") for line in fresh)
    assert [h["epoch"] for h in history] == [1, 2]
    assert [h["epoch"] for h in trained.teachers[0]["history"]] == [1]
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b), name

    with pytest.raises(ValueError, match="different recipe"):
        train(
            Recipe(epochs=3, batch_size=20, teachers=1, teacher_epochs=1, ema_decay=0.9),
            train_set,
            val_set,
            tmp_path / "b",
            device,
            resume=True,
            log=lambda _: None,
        )
    # a checkpoint written before a recipe field existed resumes: the field's default trained then
    state = torch.load(tmp_path / "b" / "last.pt", weights_only=True)
    del state["recipe"]["teacher_architecture"], state["recipe"]["augmentation"]["elastic_p"]
    torch.save(state, tmp_path / "b" / "last.pt")
    older: list[str] = []
    train(recipe, train_set, val_set, tmp_path / "b", device, resume=True, log=older.append)
    assert any(line.startswith("resumed") for line in older)
    # the same recipe on the validation digits too (what --final trains on): not the run it resumes
    with pytest.raises(ValueError, match="trained on different digits"):
        train(recipe, ds, val_set, tmp_path / "b", device, resume=True, log=lambda _: None)


def test_resume_reuses_teachers_for_a_student_with_other_settings(
    tmp_path: Path, small: tuple[np.ndarray, np.ndarray]
) -> None:
    # an hour of teachers is not retrained because the student gets more epochs or another distillation weight
    train_set, val_set = data.split(data.Dataset(*small, "test"), 20)
    first = Recipe(epochs=1, batch_size=20, teachers=1, teacher_epochs=1, teacher_architecture="small-cnn")
    train(first, train_set, val_set, tmp_path / "a", torch.device("cpu"), log=lambda _: None)
    teacher_file = tmp_path / "a" / "teacher-0" / "last.pt"
    written = teacher_file.read_bytes()
    (tmp_path / "b" / "teacher-0").mkdir(parents=True)
    (tmp_path / "b" / "teacher-0" / "last.pt").write_bytes(written)  # the teachers only, no student yet
    student = dataclasses.replace(first, epochs=2, distill_weight=0.8, temperature=3.0, teachers=2)
    lines: list[str] = []
    trained = train(student, train_set, val_set, tmp_path / "b", torch.device("cpu"), resume=True, log=lines.append)
    assert "teacher 1: resumed from" in lines[0] and "after epoch 1" in lines[0]
    assert lines[1].startswith("teacher 2: no checkpoint at")  # the new second teacher trains
    assert any(line.startswith("no checkpoint at") for line in lines)  # and the new student
    assert [h["epoch"] for h in trained.history] == [1, 2]
    assert (tmp_path / "b" / "teacher-0" / "last.pt").read_bytes() == written  # resumed, not trained again
    # what the teacher was trained with still counts: a wider pen would have made another teacher
    wider = dataclasses.replace(first, augmentation=dataclasses.replace(first.augmentation, thicker_px=3))
    with pytest.raises(ValueError, match=r"teacher-0/last.pt was written by a different recipe \(augmentation\)"):
        train(wider, train_set, val_set, tmp_path / "b", torch.device("cpu"), resume=True, log=lambda _: None)
    # and the student itself is compared on every field
    with pytest.raises(
        ValueError,
        match=r"b/last.pt was written by a different recipe \(epochs, teachers, distill_weight, temperature\)",
    ):
        train(first, train_set, val_set, tmp_path / "b", torch.device("cpu"), resume=True, log=lambda _: None)


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
    # and an OSError that is not the download (a checkpoint folder that cannot be made) is not blamed on it
    monkeypatch.setattr(api, "load_state_dict_from_url", lambda *a, **k: spec.build_model().state_dict())
    (tmp_path / "a-file").write_text("")
    with pytest.raises(OSError):
        train_main(
            [
                *["--data", str(tmp_path / "mnist"), "--out", str(tmp_path / "out"), "--epochs", "1"],
                *["--checkpoint-dir", str(tmp_path / "a-file" / "ckpt"), "--teachers", "0"],
            ]
        )


def test_augmentation_keeps_shape_and_range_and_repeats_from_its_seed(small: tuple[np.ndarray, np.ndarray]) -> None:
    from train.augment import Augmentation, augment

    x = torch.from_numpy(small[0][:32]).unsqueeze(1).float() / 255
    a = augment(x.clone(), Augmentation(), torch.Generator().manual_seed(1))
    b = augment(x.clone(), Augmentation(), torch.Generator().manual_seed(1))
    c = augment(x.clone(), Augmentation(), torch.Generator().manual_seed(2))
    assert a.shape == x.shape and float(a.min()) >= 0 and float(a.max()) <= 1
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_elastic_warp_moves_pixels_smoothly_by_elastic_px_for_the_chosen_share() -> None:
    from train.augment import Augmentation, elastic_field

    cpu = torch.device("cpu")
    field = elastic_field(512, 28, Augmentation(elastic_p=1.0, elastic_px=1.5), torch.Generator().manual_seed(0), cpu)
    assert field.shape == (512, 28, 28, 2)
    pixels = field * 28 / 2  # affine_grid units → pixels
    assert 1.3 < float(pixels[:, 10:18, 10:18].std()) < 1.7
    # smooth: a pixel moves almost as its neighbour does (white noise would not correlate at all)
    here, right = pixels[:, 10:18, 10:17].flatten(), pixels[:, 10:18, 11:18].flatten()
    assert float(torch.corrcoef(torch.stack([here, right]))[0, 1]) > 0.9
    half = elastic_field(512, 28, Augmentation(elastic_p=0.5), torch.Generator().manual_seed(0), cpu)
    warped = (half.flatten(1).abs().amax(1) > 0).float().mean()
    assert 0.4 < float(warped) < 0.6


def test_elastic_warp_keeps_the_ink_and_is_not_drawn_when_off(
    small: tuple[np.ndarray, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    from train import augment as aug_module
    from train.augment import Augmentation, augment

    x = torch.from_numpy(small[0][:64]).unsqueeze(1).float() / 255
    still = Augmentation(rotate_deg=0, scale=0, shear_deg=0, shift_px=0, stroke_p=0, blur_p=0)
    warped = augment(x.clone(), dataclasses.replace(still, elastic_p=1.0), torch.Generator().manual_seed(0))
    assert not torch.allclose(warped, x, atol=0.05)
    # a warp squeezes some strokes and stretches others, but erases or smears no digit
    ink = warped.sum(dim=(1, 2, 3)) / x.sum(dim=(1, 2, 3))
    assert 0.95 < float(ink.mean()) < 1.08 and float(ink.min()) > 0.5 and float(ink.max()) < 2
    # off (the default) draws nothing, so recipes from before the option train exactly as they did
    monkeypatch.setattr(aug_module, "elastic_field", lambda *a: pytest.fail("elastic field drawn while off"))
    augment(x.clone(), Augmentation(), torch.Generator().manual_seed(0))


def test_stroke_width_thickens_and_thins_the_pen(small: tuple[np.ndarray, np.ndarray]) -> None:
    from train.augment import stroke_width

    x = torch.from_numpy(small[0][:64]).unsqueeze(1).float() / 255
    ink = x.sum(dim=(1, 2, 3))
    changed = stroke_width(x, 1.0, torch.Generator().manual_seed(0)).sum(dim=(1, 2, 3))
    assert bool((changed > ink * 1.05).any()) and bool((changed < ink * 0.95).any())
    assert torch.equal(stroke_width(x, 0.0, torch.Generator().manual_seed(0)), x)


def test_a_wider_thicker_pen_grows_the_same_chosen_strokes_further(small: tuple[np.ndarray, np.ndarray]) -> None:
    from train.augment import Augmentation, stroke_width

    x = torch.from_numpy(small[0][:64]).unsqueeze(1).float() / 255
    ink = x.sum(dim=(1, 2, 3))
    one, two = (stroke_width(x, 1.0, torch.Generator().manual_seed(0), px).sum(dim=(1, 2, 3)) for px in (1, 2))
    # the same digits are drawn thicker, thinner and by the same amounts; only the dilation widens
    thicker = one > ink
    assert 10 < int(thicker.sum()) < 54
    assert bool((two[thicker] > one[thicker]).all()) and float((two[thicker] / one[thicker]).mean()) > 1.1
    assert torch.equal(two[~thicker], one[~thicker])
    # the default recipe keeps the 1-pixel pen it was tuned with
    assert Augmentation().thicker_px == 1
    assert parse_args(["--data", "x", "--out", "y"]).thicker_pen == 1


def test_blur_keeps_the_ink_and_softens_edges(small: tuple[np.ndarray, np.ndarray]) -> None:
    from train.augment import blur

    x = torch.from_numpy(small[0][:64]).unsqueeze(1).float() / 255
    soft = blur(x, 1.0, torch.Generator().manual_seed(0))
    # mass is nearly preserved (only ink at the border leaks out); sharp edges get smaller
    assert torch.allclose(soft.sum(dim=(1, 2, 3)), x.sum(dim=(1, 2, 3)), rtol=0.05)
    edges = lambda t: (t[..., 1:] - t[..., :-1]).abs().sum()  # noqa: E731
    assert float(edges(soft)) < float(edges(x))


def test_teachers_take_their_own_peak_learning_rate(tmp_path: Path, small: tuple[np.ndarray, np.ndarray]) -> None:
    # a fine-tune gives the student a small --max-lr; teachers train from scratch and want a large one
    train_set, val_set = data.split(data.Dataset(*small, "test"), 20)
    recipe = Recipe(epochs=1, batch_size=20, max_lr=0.01, teachers=1, teacher_epochs=1, teacher_max_lr=0.2)
    train(recipe, train_set, val_set, tmp_path, torch.device("cpu"), log=lambda _: None)
    peaks = {}
    for who, folder in (("teacher", tmp_path / "teacher-0"), ("student", tmp_path)):
        state = torch.load(folder / "last.pt", weights_only=True)
        peaks[who] = {group["max_lr"] for group in state["optimizer"]["param_groups"]}
    assert peaks == {"teacher": {0.2}, "student": {0.01}}


def test_small_cnn_teachers_are_trained_distilled_from_and_recorded(
    tmp_path: Path, small: tuple[np.ndarray, np.ndarray]
) -> None:
    from train.small_cnn import build_small_cnn

    train_set, val_set = data.split(data.Dataset(*small, "test"), 20)
    recipe = Recipe(epochs=1, batch_size=20, teachers=2, teacher_epochs=1, teacher_architecture="small-cnn")
    trained = train(recipe, train_set, val_set, tmp_path, torch.device("cpu"), log=lambda _: None)
    assert len(trained.teachers) == 2
    expected = {name: tuple(t.shape) for name, t in build_small_cnn().state_dict().items()}
    for i in range(2):  # each teacher trained is the small network, not a resnet
        state = torch.load(tmp_path / f"teacher-{i}" / "last.pt", weights_only=True)
        assert {name: tuple(t.shape) for name, t in state["model"].items()} == expected
        assert state["recipe"]["teacher_architecture"] == "small-cnn"
    # the student is still the shipped architecture
    assert {k for k, _ in trained.model.named_parameters()} == {k for k, _ in spec.build_model().named_parameters()}
    with pytest.raises(ValueError, match="unknown teacher architecture 'vgg'; known: resnet34-no-maxpool, small-cnn"):
        train(
            dataclasses.replace(recipe, teacher_architecture="vgg"),
            train_set,
            val_set,
            tmp_path / "v",
            torch.device("cpu"),
        )


def test_the_small_cnn_reads_a_digit_batch_into_ten_logits() -> None:
    from train.small_cnn import build_small_cnn

    net = build_small_cnn().eval()
    assert net(spec.to_model_input(np.zeros((3, 28, 28), np.uint8))).shape == (3, 10)
    assert 300_000 < sum(p.numel() for p in net.parameters()) < 350_000  # "0.33 M parameters", as its docstring says


def test_the_teacher_is_the_shipped_architecture_without_its_max_pool() -> None:
    from train.recipe import build_teacher

    features: dict[str, tuple[int, ...]] = {}
    teacher, student = build_teacher(), spec.build_model()
    for name, net in (("teacher", teacher), ("student", student)):
        net.layer4.register_forward_hook(lambda _m, _i, out, name=name: features.__setitem__(name, out.shape))
        net.eval()(torch.zeros(1, 1, 28, 28))
    assert features["teacher"][-1] == 2 * features["student"][-1]
    assert {k for k, _ in teacher.named_parameters()} == {k for k, _ in student.named_parameters()}


def test_recalibration_fits_batchnorm_statistics_to_the_weights_and_republishes(
    tmp_path: Path, small: tuple[np.ndarray, np.ndarray]
) -> None:
    from train.recalibrate import main as recalibrate_main
    from train.recipe import recalibrate_batchnorm

    # given exported weights whose BatchNorm statistics no longer fit them (as an EMA's may not)
    write_idx(tmp_path / "mnist", *small)
    out = tmp_path / "w"
    common = ["--data", str(tmp_path / "mnist"), "--val-size", "20", "--device", "cpu"]
    args = ["--out", str(out), "--name", "run", "--epochs", "1", "--batch-size", "20", "--teachers", "0"]
    assert train_main([*common[:2], *args, *common[2:], "--checkpoint-dir", str(tmp_path / "c")]) == 0
    meta = json.loads((out / "run.json").read_text())
    net = spec.load_model(path=out / "run.safetensors", sha256=meta["sha256"])
    bn = net.bn1
    bn.running_mean.fill_(5.0)
    # when the statistics are re-estimated over digits
    recalibrate_batchnorm(net, small[0][:40])
    # then they are those of the first conv's output on those digits
    with torch.no_grad():
        features = net.conv1(spec.to_model_input(small[0][:40]))
    torch.testing.assert_close(bn.running_mean, features.mean(dim=(0, 2, 3)), atol=1e-4, rtol=1e-3)
    assert not net.training

    # and the command writes a new, loadable, pinned file that records where it came from
    code = recalibrate_main(
        [
            "--weights",
            str(out / "run.safetensors"),
            "--sha256",
            meta["sha256"],
            *common[:4],
            "--out",
            str(out),
            "--name",
            "again",
        ]
    )
    assert code == 0
    again = json.loads((out / "again.json").read_text())
    assert again["batchnorm_recalibrated"]["from"]["sha256"] == meta["sha256"]
    assert again["recipe"] == meta["recipe"] and again["validation"]["accuracy"] >= 0
    assert again["batchnorm_recalibrated"]["digits"] == 40 and again["validation"]["held_out"] is True
    spec.load_model(path=out / "again.safetensors", sha256=again["sha256"])
    (tmp_path / "other").mkdir()
    write_idx(tmp_path / "other", small[0][::-1].copy(), small[1][::-1].copy())
    wrong = ["--weights", str(out / "run.safetensors"), "--sha256", meta["sha256"], "--data", str(tmp_path / "other")]
    assert recalibrate_main([*wrong, "--out", str(out), "--name", "x"]) == 2
    # the run's own split by default; another --val-size would feed validation digits to the statistics
    mine = ["--weights", str(out / "run.safetensors"), "--sha256", meta["sha256"], "--data", str(tmp_path / "mnist")]
    assert recalibrate_main([*mine, "--val-size", "10", "--out", str(out), "--name", "y"]) == 2
    assert recalibrate_main([*mine, "--out", str(out), "--name", "z"]) == 0
    assert json.loads((out / "z.json").read_text())["batchnorm_recalibrated"]["digits"] == 40


def first_run(tmp_path: Path, small: tuple[np.ndarray, np.ndarray]) -> tuple[list[str], list[str], Path]:
    """A one-epoch run on ``small`` exported to ``tmp_path/a/first.safetensors``; its arguments and the file."""
    write_idx(tmp_path / "mnist", *small)
    common = ["--data", str(tmp_path / "mnist"), "--val-size", "20", "--device", "cpu", "--teachers", "0"]
    run = ["--epochs", "1", "--batch-size", "20", "--ema-decay", "0"]
    first = [*common, *run, "--out", str(tmp_path / "a"), "--name", "first", "--checkpoint-dir", str(tmp_path / "ca")]
    assert train_main(first) == 0
    return common, run, tmp_path / "a" / "first.safetensors"


def test_init_fine_tunes_from_exported_weights_and_records_them(
    tmp_path: Path, small: tuple[np.ndarray, np.ndarray], capsys: pytest.CaptureFixture[str]
) -> None:
    from digitcloud.errors import WeightsError

    # given a first run's exported weights
    common, run, source = first_run(tmp_path, small)
    before = spec.load_model(path=source, sha256=spec.sha256_of(source))

    # when a run starts from them with a learning rate too small to move the weights
    tuned_args = [*common, *run, "--max-lr", "1e-9", "--out", str(tmp_path / "b"), "--name", "tuned", "--rotate", "20"]
    assert train_main([*tuned_args, "--init", str(source), "--checkpoint-dir", str(tmp_path / "cb")]) == 0
    meta = json.loads((tmp_path / "b" / "tuned.json").read_text())
    after = spec.load_model(path=tmp_path / "b" / "tuned.safetensors", sha256=meta["sha256"])

    # then its weights are the first run's (to fp16), not a fresh initialisation, and the metadata says so
    for name in ("conv1.weight", "layer3.0.conv1.weight", "fc.weight"):
        torch.testing.assert_close(after.get_parameter(name), before.get_parameter(name), atol=2e-3, rtol=0)
    fresh = spec.build_model()
    assert not torch.allclose(fresh.conv1.weight, before.conv1.weight, atol=2e-3)
    assert meta["init"] == {"weights": "first.safetensors", "sha256": spec.sha256_of(source)}
    assert meta["recipe"]["init_sha256"] == spec.sha256_of(source)
    assert meta["recipe"]["augmentation"]["rotate_deg"] == 20.0  # the wider turn it was asked for

    # a missing file is a clear error before any work; a file that changed under its recorded hash is refused
    assert train_main([*tuned_args, "--init", str(tmp_path / "nope.safetensors")]) == 2
    assert "nope.safetensors' is not a file" in capsys.readouterr().err
    recipe = Recipe(epochs=1, batch_size=20, teachers=0, init_sha256="0" * 64)
    ds = data.Dataset(*small, "test")
    with pytest.raises(WeightsError, match="refusing to load it"):
        train(recipe, *data.split(ds, 20), tmp_path / "cc", torch.device("cpu"), log=lambda _: None, init=source)
    # and --init cannot be combined with --pretrained
    with pytest.raises(SystemExit):
        train_main([*tuned_args, "--init", str(source), "--pretrained"])


def test_teacher_weights_are_distilled_from_as_they_are_and_recorded(
    tmp_path: Path, small: tuple[np.ndarray, np.ndarray], capsys: pytest.CaptureFixture[str]
) -> None:
    from digitcloud.errors import WeightsError

    # given a first run's exported weights (the shipped architecture)
    common, run, source = first_run(tmp_path, small)
    sha256 = spec.sha256_of(source)

    # when a fresh run distils from them, and the same run (seed, batches) does not
    taught = [*common, *run, "--out", str(tmp_path / "b"), "--name", "taught", "--checkpoint-dir", str(tmp_path / "cb")]
    assert train_main([*taught, "--teacher-weights", str(source)]) == 0
    alone = [*common, *run, "--out", str(tmp_path / "c"), "--name", "alone", "--checkpoint-dir", str(tmp_path / "cc")]
    assert train_main(alone) == 0
    meta = json.loads((tmp_path / "b" / "taught.json").read_text())
    meta_alone = json.loads((tmp_path / "c" / "alone.json").read_text())

    # then the teacher's soft targets were in the loss, and the metadata names the file, its sha256
    # and its accuracy on the run's validation digits, measured on the file as loaded
    assert meta["history"][0]["train_loss"] != pytest.approx(meta_alone["history"][0]["train_loss"], rel=1e-3)
    net = spec.load_model(path=source, sha256=sha256)
    val_labels = small[1][-20:]
    expected = float((spec.predict_probabilities(net, small[0][-20:]).argmax(1) == val_labels).mean())
    assert meta["teachers"] == [{"weights": "first.safetensors", "sha256": sha256, "val_accuracy": expected}]
    assert meta["recipe"]["teacher_sha256"] == [sha256] and meta_alone["recipe"]["teacher_sha256"] == []
    assert "teacher first.safetensors: val accuracy" in capsys.readouterr().out

    # a missing file is a clear error before any work; a file that changed under its recorded hash is refused
    assert train_main([*taught, "--teacher-weights", str(tmp_path / "nope.safetensors")]) == 2
    assert "--teacher-weights " in capsys.readouterr().err
    recipe = Recipe(epochs=1, batch_size=20, teachers=0, teacher_sha256=("0" * 64,))
    ds = data.Dataset(*small, "test")
    with pytest.raises(WeightsError, match="refusing to load it"):
        train(
            recipe,
            *data.split(ds, 20),
            tmp_path / "cd",
            torch.device("cpu"),
            log=lambda _: None,
            teacher_files=(source,),
        )


def test_final_trains_on_the_validation_digits_too_and_says_so(
    tmp_path: Path, small: tuple[np.ndarray, np.ndarray], capsys: pytest.CaptureFixture[str]
) -> None:
    import copy

    # given data whose last 20 digits, the validation split, are blank pages
    images = small[0].copy()
    images[-20:] = 0
    write_idx(tmp_path / "mnist", images, small[1])
    args = ["--data", str(tmp_path / "mnist"), "--val-size", "20", "--device", "cpu", "--teachers", "0"]
    args += ["--epochs", "1", "--batch-size", "20", "--checkpoint-dir", str(tmp_path / "c")]

    # when the final model trains (it ends by re-estimating its BatchNorm statistics over its training digits)
    assert train_main([*args, "--final", "--out", str(tmp_path / "w"), "--name", "final"]) == 0

    # then it trained on all 60, and the metadata and the printout say the validation digits were among them
    assert "NOT held out" in capsys.readouterr().out
    meta = json.loads((tmp_path / "w" / "final.json").read_text())
    assert meta["data"]["train"] == 60 and meta["data"]["validation"] == 20
    assert meta["data"]["validation_held_out"] is False and meta["validation"]["held_out"] is False
    net = spec.load_model(path=tmp_path / "w" / "final.safetensors", sha256=meta["sha256"])
    over_all = recalibrate_batchnorm(copy.deepcopy(net), images).bn1.running_mean
    over_first_40 = recalibrate_batchnorm(copy.deepcopy(net), images[:40]).bn1.running_mean
    torch.testing.assert_close(net.bn1.running_mean, over_all, atol=2e-3, rtol=2e-3)
    assert not torch.allclose(net.bn1.running_mean, over_first_40, atol=2e-3, rtol=2e-3)

    # and re-estimating its statistics later uses every digit too, and keeps saying so
    from train.recalibrate import main as recalibrate_main

    weights = ["--weights", str(tmp_path / "w" / "final.safetensors"), "--sha256", meta["sha256"]]
    assert recalibrate_main([*weights, *args[:4], "--out", str(tmp_path / "w"), "--name", "again"]) == 0
    again = json.loads((tmp_path / "w" / "again.json").read_text())
    assert again["batchnorm_recalibrated"]["digits"] == 60 and again["validation"]["held_out"] is False


def test_extra_data_joins_the_training_split_only_and_is_recorded(
    tmp_path: Path, small: tuple[np.ndarray, np.ndarray], capsys: pytest.CaptureFixture[str]
) -> None:
    import copy

    # given 60 digits (the last 20 held out) and 10 more of a user's own, as a Kaggle CSV
    write_idx(tmp_path / "mnist", *small)
    extra_images, extra_labels = stroke_digits(10, seed=11)
    write_kaggle_csv(tmp_path / "mine.csv", extra_images, extra_labels)
    args = ["--data", str(tmp_path / "mnist"), "--val-size", "20", "--device", "cpu", "--teachers", "0"]
    args += ["--epochs", "1", "--batch-size", "10", "--checkpoint-dir", str(tmp_path / "c")]

    # when a run adds them with --extra-data
    assert train_main([*args, "--extra-data", str(tmp_path / "mine.csv"), "--out", str(tmp_path / "w")]) == 0

    # then it trained on the 40 training digits and the 10 extra, and still validated on --data's last 20
    assert "+ 10 from Kaggle CSV" in capsys.readouterr().out
    meta = json.loads((tmp_path / "w" / "digitcloud-resnet34.json").read_text())
    assert meta["data"]["train"] == 50 and meta["data"]["validation"] == 20
    assert meta["data"]["validation_held_out"] is True
    assert meta["data"]["extra"] == [
        {
            "source": f"Kaggle CSV {str(tmp_path / 'mine.csv')!r}",
            "sha256": data.load(tmp_path / "mine.csv").sha256(),
            "digits": 10,
        }
    ]
    net = spec.load_model(path=tmp_path / "w" / "digitcloud-resnet34.safetensors", sha256=meta["sha256"])
    trained_on = np.concatenate([small[0][:40], extra_images])
    torch.testing.assert_close(
        net.bn1.running_mean,
        recalibrate_batchnorm(copy.deepcopy(net), trained_on).bn1.running_mean,
        atol=2e-3,
        rtol=2e-3,
    )
    assert not torch.allclose(
        net.bn1.running_mean,
        recalibrate_batchnorm(copy.deepcopy(net), small[0][:40]).bn1.running_mean,
        atol=2e-3,
        rtol=2e-3,
    )

    # and resuming its checkpoint without the extra data is refused with a message, not a traceback
    assert train_main([*args, "--resume", "--out", str(tmp_path / "w2")]) == 2
    assert "trained on different digits (other --data or --extra-data" in capsys.readouterr().err

    # and re-estimating its statistics later needs the same extra data, and then uses it
    from train.recalibrate import main as recalibrate_main

    weights = ["--weights", str(tmp_path / "w" / "digitcloud-resnet34.safetensors"), "--sha256", meta["sha256"]]
    again = [*weights, "--data", str(tmp_path / "mnist"), "--out", str(tmp_path / "w"), "--name", "again"]
    assert recalibrate_main(again) == 2
    assert "trained with 1 --extra-data set(s)" in capsys.readouterr().err
    assert recalibrate_main([*again, "--extra-data", str(tmp_path / "mine.csv")]) == 0
    assert json.loads((tmp_path / "w" / "again.json").read_text())["batchnorm_recalibrated"]["digits"] == 50
