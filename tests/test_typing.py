"""classify()'s declared return type follows the input, as it does at run time.

Run by pytest (the values) and by mypy in CI (the types: this file is in pyproject's mypy ``files``,
so a wrong overload fails ``assert_type``). Inputs whose answer depends on what they hold (a path
may be a file or a folder, an array one image or a batch) are declared ``Prediction | list``.
"""

from __future__ import annotations

from pathlib import Path
from typing import assert_type

import numpy as np
import pytest

from digitcloud import Client, Prediction, classify
from tests.synthetic import draw_digit, encode

pytest.importorskip("torch")


def test_one_image_is_typed_as_one_prediction_and_a_collection_as_a_list(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    image = draw_digit(3, rng)
    png = encode(image)
    (tmp_path / "3.png").write_bytes(png)
    digits, digit = np.zeros((2, 28, 28), dtype=np.uint8), np.zeros((28, 28), dtype=np.uint8)
    with Client(backend="local") as client:
        one = assert_type(client.classify(png), Prediction)
        assert isinstance(one, Prediction) and one.digit == 3
        assert isinstance(assert_type(client.classify(image), Prediction), Prediction)
        assert isinstance(assert_type(client.classify(bytearray(png)), Prediction), Prediction)
        with open(tmp_path / "3.png", "rb") as file:
            assert isinstance(assert_type(client.classify(file), Prediction), Prediction)

        many = assert_type(client.classify([png, image]), list[Prediction])
        assert [p.index for p in many] == [0, 1]
        assert len(assert_type(client.classify((png,)), list[Prediction])) == 1
        assert len(assert_type(client.classify(p for p in [png, png]), list[Prediction])) == 2

        either = assert_type(client.classify(tmp_path / "3.png"), Prediction | list[Prediction])
        assert isinstance(either, Prediction)
        assert isinstance(assert_type(client.classify(str(tmp_path)), Prediction | list[Prediction]), list)
        assert isinstance(assert_type(client.classify(digits), Prediction | list[Prediction]), list)
        assert isinstance(assert_type(client.classify(digit), Prediction | list[Prediction]), Prediction)

    # the module-level shortcut declares the same
    assert isinstance(assert_type(classify(png, backend="local"), Prediction), Prediction)
    assert len(assert_type(classify([png], backend="local"), list[Prediction])) == 1
