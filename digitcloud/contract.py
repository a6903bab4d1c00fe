"""Wire contract v1, the client's side: encode a batch for predict.py and check what comes back.

The predictor's side is ``predict.py`` (with ``inputs.read_digits_file`` and
``model.prediction_entries``); the README's "Wire contract v1" section describes both.
"""

from __future__ import annotations

import base64
import math
from typing import Any

import numpy as np

from digitcloud.errors import CloudError
from digitcloud.inputs import write_digits_file

VERSION = 1


def encode_batch(digits: np.ndarray) -> str:
    """uint8 ``[N, 28, 28]`` digits as a compressed ``.npz`` data URI (MNIST digits shrink ~5x)."""
    blob = write_digits_file(digits, compressed=True)
    return "data:application/octet-stream;base64," + base64.b64encode(blob).decode("ascii")


def parse_output(output: Any, count: int) -> list[np.ndarray | str]:
    """Per digit: its 10 probabilities, or the predictor's error text for it.

    Anything off — not a dict, a different number of entries, a digit outside 0-9, probabilities
    that are not 10 finite numbers summing to ~1 — rejects the whole answer (``CloudError``):
    entries are never realigned by position.
    """
    if not isinstance(output, dict) or not isinstance(output.get("predictions"), list):
        raise CloudError(f"predictor output is not the wire contract v{VERSION}: {_preview(output)}")
    entries = output["predictions"]
    if len(entries) != count:
        raise CloudError(f"predictor returned {len(entries)} entries for {count} digits")
    answers: list[np.ndarray | str] = []
    for i, entry in enumerate(entries):
        if isinstance(entry, dict) and set(entry) == {"error"}:
            answers.append(str(entry["error"]))
            continue
        try:
            probs = np.asarray(entry["probabilities"], dtype=np.float64)
            digit = entry["digit"]
        except (TypeError, KeyError, ValueError):
            raise CloudError(f"predictor entry {i} is malformed: {_preview(entry)}") from None
        ok = (
            probs.shape == (10,)
            and bool(np.isfinite(probs).all())
            and isinstance(digit, int)
            and 0 <= digit <= 9
            and math.isclose(float(probs.sum()), 1.0, abs_tol=1e-3)
        )
        if not ok:
            raise CloudError(f"predictor entry {i} is not a valid prediction: {_preview(entry)}")
        answers.append(probs.astype(np.float32))
    return answers


def _preview(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 200 else text[:200] + "…"
