"""The result type: one ``Prediction`` per input image, in input order."""

from __future__ import annotations

from dataclasses import dataclass

from digitcloud.errors import DigitCloudError


@dataclass(frozen=True)
class Prediction:
    """What digitcloud says about one image: a digit, or the error that stopped it."""

    index: int
    """Position of this image among all images of the call (directories and batches expanded)."""

    source: str
    """Which input this was: a path's repr, ``"array[3]"``, ``"csv 'test.csv' row 7"``…"""

    digit: int | None = None
    """The predicted digit 0-9, or ``None`` when ``error`` is set."""

    confidence: float | None = None
    """The probability of ``digit`` (the largest of ``probabilities``)."""

    probabilities: tuple[float, ...] | None = None
    """Softmax probabilities for digits 0-9, summing to 1."""

    backend: str | None = None
    """Which backend answered: ``"local"`` (this machine's CPU); ``None`` when nothing ran."""

    error: DigitCloudError | None = None
    """Why this image has no digit (an ``InputError`` naming it, say); ``None`` on success."""

    @property
    def ok(self) -> bool:
        return self.error is None

    def raise_for_error(self) -> Prediction:
        """Return self, or raise this item's error: for code that wants exceptions."""
        if self.error is not None:
            raise self.error
        return self

    def __repr__(self) -> str:
        if self.error is not None:
            return f"Prediction(index={self.index}, source={self.source!r}, error={str(self.error)!r})"
        confidence = "None" if self.confidence is None else f"{self.confidence:.4f}"  # one built by hand
        return (
            f"Prediction(digit={self.digit}, confidence={confidence}, backend={self.backend!r}, "
            f"index={self.index}, source={self.source!r})"
        )
