"""The local backend: the bundled model on this machine's CPU, loaded on first use.

Two engines run the same prepared model (``model.prepare``) and give the same probabilities
(within 1e-5, tested): onnxruntime (``onnx_graph``), ~2.7x faster for one digit and ~1.2x for a
batch on a 2-core CPU, and torch, which needs nothing beyond the ``local`` extra's torch. The
weights are always read (and sha256-checked) by torch from the bundled safetensors file.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import numpy as np

from digitcloud import model as spec
from digitcloud.config import available_cores
from digitcloud.errors import MissingDependencyError, WeightsError

log = logging.getLogger(__name__)

_LOCK = threading.Lock()
_MODELS: dict[tuple[str, str, str, int], Any] = {}


def pick_engine(engine: str) -> str:
    """``"auto"`` becomes ``"onnxruntime"`` when it imports, else ``"torch"``."""
    if engine != "auto":
        return engine
    from digitcloud.onnx_graph import import_onnxruntime

    try:
        import_onnxruntime()
    except MissingDependencyError as exc:
        log.debug("local engine: torch (%s)", exc)
        return "torch"
    return "onnxruntime"


def cached_model(weights: spec.Weights, engine: str, num_threads: int) -> Any:
    """The model for ``weights`` on ``engine``, loaded (and sha256-checked) once per process.

    torch's thread count is process-wide, so its model is keyed without it; an onnxruntime
    session owns its threads, so it is keyed with them."""
    key = (str(weights.path), weights.sha256, engine, num_threads if engine == "onnxruntime" else 0)
    with _LOCK:
        if key not in _MODELS:
            net: Any = spec.prepare(spec.load_model(weights))
            if engine == "onnxruntime":
                from digitcloud.onnx_graph import OnnxModel

                net = OnnxModel(net, num_threads)
            _MODELS[key] = net
        return _MODELS[key]


class LocalBackend:
    """Runs ``[N, 28, 28]`` uint8 digits through the model in batches of ``batch_size``."""

    name = "local"

    def __init__(
        self,
        *,
        batch_size: int = 256,
        num_threads: int | None = None,
        weights: spec.Weights | None = None,
        engine: str = "auto",
    ) -> None:
        self.batch_size = batch_size
        self.num_threads = num_threads or available_cores()
        self.weights = weights or spec.WEIGHTS
        self.engine = engine
        self._loaded: tuple[str, Any] | None = None  # (engine, model), set once, in one assignment

    def _model(self) -> tuple[str, Any]:
        """The engine that runs the model and the model, loaded on first use. One tuple, so a thread
        that finds it set never pairs a model with the other engine's code."""
        if self._loaded is None:
            torch = spec.import_torch()  # the weights are read by torch whichever engine runs them
            engine = pick_engine(self.engine)
            net: Any = None
            if engine == "onnxruntime":
                try:
                    net = cached_model(self.weights, engine, self.num_threads)
                except (WeightsError, MissingDependencyError):
                    raise  # torch would fail the same way
                except Exception as exc:
                    if self.engine != "auto":
                        raise
                    # "auto" means answers: onnxruntime failing to build the session is not the user's problem
                    log.warning("onnxruntime cannot run the model (%s: %s); using torch", type(exc).__name__, exc)
                    engine = "torch"
            if engine == "torch":
                # Process-wide in torch; one thread per core is what a 2-core box needs for batch inference.
                if torch.get_num_threads() != self.num_threads:
                    torch.set_num_threads(self.num_threads)
                net = cached_model(self.weights, engine, self.num_threads)
            self._loaded = (engine, net)
            self.engine = engine
        return self._loaded

    def predict(self, digits: np.ndarray) -> np.ndarray:
        """Probabilities ``[N, 10]`` (float32) for uint8 digits ``[N, 28, 28]``."""
        engine, net = self._model()
        if engine == "onnxruntime":
            return net.predict(digits, self.batch_size)
        return spec.predict_probabilities(net, digits, self.batch_size)
