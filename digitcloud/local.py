"""The local backend: the bundled model on this machine's CPU (torch imported on first use)."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from digitcloud import model as spec
from digitcloud.config import available_cores

_LOCK = threading.Lock()
_MODELS: dict[tuple[str, str], Any] = {}


def cached_model(weights: spec.Weights) -> Any:
    """The model for ``weights``, loaded (and sha256-checked) once per process."""
    key = (str(weights.path), weights.sha256)
    with _LOCK:
        if key not in _MODELS:
            _MODELS[key] = spec.prepare(spec.load_model(weights))
        return _MODELS[key]


class LocalBackend:
    """Runs ``[N, 28, 28]`` uint8 digits through the model in batches under ``inference_mode``."""

    name = "local"

    def __init__(
        self, *, batch_size: int = 256, num_threads: int | None = None, weights: spec.Weights | None = None
    ) -> None:
        self.batch_size = batch_size
        self.num_threads = num_threads or available_cores()
        self.weights = weights or spec.WEIGHTS
        self._net: Any = None

    def _model(self) -> Any:
        if self._net is None:
            torch = spec.import_torch()
            # Process-wide in torch; one thread per core is what a 2-core box needs for batch inference.
            if torch.get_num_threads() != self.num_threads:
                torch.set_num_threads(self.num_threads)
            self._net = cached_model(self.weights)
        return self._net

    def predict(self, digits: np.ndarray) -> np.ndarray:
        """Probabilities ``[N, 10]`` (float32) for uint8 digits ``[N, 28, 28]``."""
        return spec.predict_probabilities(self._model(), digits, self.batch_size)
