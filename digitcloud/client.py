"""Client: turns inputs into digits, runs them on a backend in chunks, returns results in order.

``classify()`` is a shortcut that uses one lazily built default ``Client`` (or a fresh one when
given settings), as ``httpx.get()`` wraps a client.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import numpy as np

from digitcloud import inputs
from digitcloud.batching import chunk
from digitcloud.config import Settings
from digitcloud.errors import DigitCloudError, LocalBackendError
from digitcloud.local import LocalBackend
from digitcloud.types import Prediction


class Client:
    """Classify digit images. Settings: argument > environment > default, read once here.

    ``backend``: ``"auto"`` or ``"local"`` (``DIGITCLOUD_BACKEND``). Today both run the bundled
    model on this machine's CPU; cloud backends plug in behind "auto".
    ``batch_size``: digits per forward pass (``DIGITCLOUD_BATCH_SIZE``, default 256).
    ``num_threads``: CPU threads for torch (default: one per available core).
    """

    def __init__(
        self,
        *,
        backend: str | None = None,
        batch_size: int | None = None,
        num_threads: int | None = None,
        offline: bool | None = None,
    ) -> None:
        self.settings = Settings.resolve(
            backend=backend, batch_size=batch_size, num_threads=num_threads, offline=offline
        )
        self._local = LocalBackend(batch_size=self.settings.batch_size, num_threads=self.settings.num_threads)

    def __repr__(self) -> str:
        return f"Client(backend={self.settings.backend!r}, batch_size={self.settings.batch_size})"

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release resources. The local model stays cached for the process."""

    def classify(self, images: Any, *, progress: bool = False) -> Prediction | list[Prediction]:
        """One image in -> one ``Prediction``; a list, directory, glob, CSV or batch array -> a list.

        Every image gets exactly one result, in input order; a bad image gets a result whose
        ``error`` names it, and the rest are still answered.
        """
        single = not inputs.is_batch(images)
        items = list(inputs.expand(images))
        results = list(self._run(items, progress=progress, total=len(items)))
        return results[0] if single else results

    def classify_iter(self, images: Any, *, progress: bool = False) -> Iterator[Prediction]:
        """Like ``classify`` but yields results as chunks finish; inputs are read lazily."""
        yield from self._run(inputs.expand(images), progress=progress, total=None)

    def _run(self, items: Any, *, progress: bool, total: int | None) -> Iterator[Prediction]:
        bar = _progress_bar(total) if progress else None
        start = 0
        try:
            for block in chunk(items, self.settings.batch_size):
                yield from self._classify_chunk(block, start)
                start += len(block)
                if bar is not None:
                    bar.update(len(block))
        finally:
            if bar is not None:
                bar.close()

    def _classify_chunk(self, block: list[inputs.Item], start: int) -> list[Prediction]:
        loaded = inputs.load_items(block, start)
        digits = inputs.stack(loaded)
        answers = self._predict(digits) if len(digits) else []
        results, k = [], 0
        for item in loaded:
            if item.error is not None:
                results.append(Prediction(index=item.index, source=item.source, error=item.error))
                continue
            answer = answers[k]
            k += 1
            if isinstance(answer, DigitCloudError):
                results.append(Prediction(index=item.index, source=item.source, backend="local", error=answer))
            else:
                results.append(_prediction(item.index, item.source, answer, "local"))
        return results

    def _predict(self, digits: np.ndarray) -> list[np.ndarray | DigitCloudError]:
        """Probabilities per digit; if the chunk fails, each digit is retried alone so one bad
        digit cannot cost its neighbours their answers."""
        try:
            return list(self._local.predict(digits))
        except DigitCloudError:
            raise  # missing torch or bad weights: nothing local can answer, say so loudly
        except Exception:
            answers: list[np.ndarray | DigitCloudError] = []
            for digit in digits:
                try:
                    answers.append(self._local.predict(digit[None])[0])
                except Exception as exc:
                    error = LocalBackendError(f"local model failed on this digit: {type(exc).__name__}: {exc}")
                    answers.append(error)
            return answers


def _prediction(index: int, source: str, probs: np.ndarray, backend: str) -> Prediction:
    digit = int(np.argmax(probs))
    return Prediction(
        index=index,
        source=source,
        digit=digit,
        confidence=float(probs[digit]),
        probabilities=tuple(float(p) for p in probs),
        backend=backend,
    )


def _progress_bar(total: int | None) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, unit="digit", desc="classify", leave=False)


_default: Client | None = None
_default_lock = threading.Lock()


def default_client() -> Client:
    """The shared Client that ``classify()`` uses, built (and the environment read) on first use."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Client()
        return _default


def classify(images: Any, *, progress: bool = False, **settings: Any) -> Prediction | list[Prediction]:
    """Classify with the default Client, or with a one-off Client when settings are given.

    >>> classify("seven.png")                     # doctest: +SKIP
    Prediction(digit=7, confidence=0.9987, backend='local', index=0, source="'seven.png'")
    """
    if settings:
        with Client(**settings) as client:
            return client.classify(images, progress=progress)
    return default_client().classify(images, progress=progress)
