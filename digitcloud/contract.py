"""Wire contract v1, the client's side: encode a batch for predict.py and check what comes back.

The predictor's side is ``predict.py`` (with ``digits_file.read_digits_file`` and
``model.prediction_entries``); the README's "Wire contract v1" section describes both.
"""

from __future__ import annotations

import base64
import math
from typing import Any

import numpy as np

from digitcloud.digits_file import write_digits_file
from digitcloud.errors import CloudError

VERSION = 1


def encode_batch(digits: np.ndarray) -> str:
    """uint8 ``[N, 28, 28]`` digits as a compressed ``.npz`` data URI (MNIST digits shrink ~5x)."""
    blob = write_digits_file(digits, compressed=True)
    return "data:application/octet-stream;base64," + base64.b64encode(blob).decode("ascii")


def parse_output(output: Any, count: int) -> list[np.ndarray | str]:
    """Per digit: its 10 probabilities, or the predictor's error text for it.

    Anything off — not a dict, a different number of entries, a digit that is not an integer 0-9
    with the largest probability, probabilities that are not 10 real numbers in [0, 1] summing to
    ~1 — rejects the whole answer (``CloudError``): entries are never realigned by position, and
    nothing is coerced (no strings or booleans read as numbers).
    """
    if not isinstance(output, dict) or not isinstance(output.get("predictions"), list):
        raise CloudError(f"predictor output is not the wire contract v{VERSION}: {_preview(output)}")
    entries = output["predictions"]
    if len(entries) != count:
        raise CloudError(f"predictor returned {len(entries)} entries for {count} digits")
    answers: list[np.ndarray | str] = []
    for i, entry in enumerate(entries):
        if isinstance(entry, dict) and set(entry) == {"error"}:
            answers.append(_preview(entry["error"], 1000))
            continue
        probs = _probabilities(entry)
        digit = entry.get("digit") if isinstance(entry, dict) else None
        ok = (
            probs is not None
            and type(digit) is int  # not bool, which is an int to isinstance
            and 0 <= digit <= 9
            and probs[digit] == probs.max()
        )
        if not ok or probs is None:
            raise CloudError(f"predictor entry {i} is not a valid prediction: {_preview(entry)}")
        answers.append(probs.astype(np.float32))
    return answers


def _probabilities(entry: Any) -> np.ndarray | None:
    """An entry's ``probabilities`` as float64[10], or ``None`` unless they are 10 real numbers in
    [0, 1] summing to 1 (± 1e-3: the predictor rounds to 6 decimals)."""
    values = entry.get("probabilities") if isinstance(entry, dict) else None
    if not isinstance(values, list) or len(values) != 10:
        return None
    if not all(type(v) in (int, float) for v in values):
        return None
    try:
        probs = np.array(values, dtype=np.float64)
    except OverflowError:  # an integer beyond float range: JSON allows it
        return None
    if not (np.isfinite(probs).all() and probs.min() >= 0.0 and probs.max() <= 1.0):
        return None
    if not math.isclose(float(probs.sum()), 1.0, abs_tol=1e-3):
        return None
    return probs


def _preview(value: Any, limit: int = 200) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[:limit] + "…"
