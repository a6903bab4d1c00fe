"""The digitcloud command: formats, Kaggle round trip, exit codes."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from digitcloud import Client
from digitcloud.cli import main
from tests.conftest import write_kaggle_csv

pytest.importorskip("torch")
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_kaggle_csv_round_trip(tmp_path: Path, digits: tuple[np.ndarray, np.ndarray]) -> None:
    # given a Kaggle test.csv (no label column)
    images, _ = digits
    write_kaggle_csv(tmp_path / "test.csv", images[:25], None)
    # when the installed command writes a submission
    exe = shutil.which("digitcloud", path=str(Path(sys.executable).parent))
    assert exe, "the digitcloud entry point is not installed"
    subprocess.run(
        [
            exe,
            "classify",
            "--csv",
            str(tmp_path / "test.csv"),
            "--format",
            "kaggle",
            "-o",
            str(tmp_path / "submission.csv"),
        ],
        check=True,
        capture_output=True,
    )
    # then it is exactly ImageId,Label with 1-based ids and the library's labels
    rows = list(csv.reader((tmp_path / "submission.csv").read_text().splitlines()))
    assert rows[0] == ["ImageId", "Label"]
    assert [int(r[0]) for r in rows[1:]] == list(range(1, 26))
    expected = [p.digit for p in Client(backend="local").classify(images[:25])]
    assert [int(r[1]) for r in rows[1:]] == expected
    assert (tmp_path / "submission.csv").read_text().startswith("ImageId,Label\n1,")


def test_table_of_the_examples_folder(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["classify", str(EXAMPLES), "--no-progress"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["source", "digit", "confidence", "backend"]
    assert len(out) == 1 + len(list(EXAMPLES.glob("*.*"))) - len(list(EXAMPLES.glob("*.md")))
    assert all(line.rstrip().endswith("local") for line in out[1:])
    # the examples are drawn by tests/synthetic.py, named for their digit; the shipped model reads them all
    names = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    for line in out[1:]:
        source, digit = line.split()[:2]
        assert names.index(Path(source.strip("'")).stem) == int(digit), line


def test_json_and_csv_formats_report_errors_per_item(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], digits: tuple[np.ndarray, np.ndarray]
) -> None:
    from PIL import Image

    Image.fromarray(digits[0][0]).save(tmp_path / "good.png")
    (tmp_path / "bad.png").write_bytes(b"nope")
    args = ["classify", str(tmp_path / "good.png"), str(tmp_path / "bad.png"), "--no-progress"]
    assert main([*args, "--format", "json"]) == 0
    captured = capsys.readouterr()
    results = json.loads(captured.out)
    assert results[0]["digit"] in range(10) and len(results[0]["probabilities"]) == 10
    assert "bad.png" in results[1]["error"] and "not a supported image" in results[1]["error"]
    assert "bad.png" in captured.err and "1 classified, 1 failed" in captured.err

    assert main([*args, "--format", "csv"]) == 0
    rows = list(csv.DictReader(capsys.readouterr().out.splitlines()))
    assert rows[0]["backend"] == "local" and rows[0]["error"] == ""
    assert rows[1]["digit"] == "" and "not a supported image" in rows[1]["error"]


def test_exit_status_is_1_only_when_nothing_was_classified(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["classify", str(tmp_path / "missing.png"), "--no-progress"]) == 1
    assert "no such file" in capsys.readouterr().err


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["classify"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        main(["classify", "x.png", "--format", "xml"])
    assert exc.value.code == 2
    # a Kaggle submission numbers the rows of one CSV: with paths or two CSVs its ImageIds would lie
    for extra in (["x.png", "--csv", "a.csv"], ["--csv", "a.csv", "--csv", "b.csv"]):
        with pytest.raises(SystemExit) as exc:
            main(["classify", *extra, "--format", "kaggle"])
        assert exc.value.code == 2
    capsys.readouterr()
    # settings no Client accepts are usage errors too
    assert main(["classify", str(EXAMPLES), "--batch-size", "0", "--no-progress"]) == 2
    assert "batch_size must be between" in capsys.readouterr().err


def test_an_output_file_that_cannot_be_written_is_refused_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_work(*args: object, **kwargs: object) -> None:
        raise AssertionError("classified before checking the output file")

    monkeypatch.setattr(Client, "classify", no_work)
    assert main(["classify", str(EXAMPLES), "-o", str(tmp_path / "no" / "dir" / "out.csv"), "--no-progress"]) == 2
    assert "cannot write" in capsys.readouterr().err


def test_a_csv_with_only_a_header_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "test.csv").write_text(",".join(f"pixel{i}" for i in range(784)) + "\n")
    assert main(["classify", "--csv", str(tmp_path / "test.csv"), "--no-progress"]) == 1
    assert "no images found" in capsys.readouterr().err


def test_model_flag_reaches_replicate(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    digits: tuple[np.ndarray, np.ndarray],
) -> None:
    from PIL import Image

    from tests.fakes.replicate_server import FakeReplicate

    Image.fromarray(digits[0][0]).save(tmp_path / "d.png")
    fake = FakeReplicate(token="cli-token")
    monkeypatch.setenv("REPLICATE_API_TOKEN", "cli-token")
    monkeypatch.setenv("REPLICATE_BASE_URL", fake.url)
    try:
        code = main(["classify", str(tmp_path / "d.png"), "--model", "owner/digitcloud", "--format", "json"])
    finally:
        fake.close()
    assert code == 0
    assert json.loads(capsys.readouterr().out)[0]["backend"] == "replicate"
    assert len(fake.predictions) == 1
