"""Client: turns inputs into digits, runs them on a backend in chunks, returns results in order.

``classify()`` is a shortcut that uses one lazily built default ``Client`` (or a fresh one when
given settings), as ``httpx.get()`` wraps a client.
"""

from __future__ import annotations

import functools
import os
import threading
import warnings
from collections.abc import Generator, Iterable, Iterator
from typing import IO, TYPE_CHECKING, Any, TypeAlias, overload

import numpy as np

from digitcloud import inputs
from digitcloud.batching import chunk, ordered_map
from digitcloud.config import Settings
from digitcloud.errors import (
    AuthenticationError,
    CloudError,
    CloudUnavailableError,
    DigitCloudError,
    FallbackWarning,
    LocalBackendError,
    PredictionFailedError,
)
from digitcloud.local import LocalBackend
from digitcloud.types import Prediction

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from digitcloud.cogserver import CogServerBackend
    from digitcloud.replicate import ReplicateBackend

# For type checkers only: which inputs always give one Prediction, which always a list, and which
# decide at run time (a path may be a file or a folder; an array or tensor one image or a batch).
OneImage: TypeAlias = "bytes | bytearray | memoryview | Image.Image | IO[bytes]"
OneOrMany: TypeAlias = "str | os.PathLike[str] | np.ndarray | torch.Tensor"


class Client:
    """Classify digit images. Settings: argument > environment > default, read once here.

    ``backend``: ``"auto"`` (default), ``"cloud"`` or ``"local"`` (``DIGITCLOUD_BACKEND``).
    "auto" sends batches to the configured cloud and answers locally when it is unavailable (or
    when there is none, or offline); "cloud" never answers locally; "local" never sends digits to a cloud.
    ``model``: a Replicate model, ``owner/name[:version]`` (``DIGITCLOUD_MODEL``), or
    ``deployment``: ``owner/name`` (``DIGITCLOUD_DEPLOYMENT``); with ``REPLICATE_API_TOKEN``
    (or ``token=``) and ``REPLICATE_BASE_URL`` read as the official client reads them.
    ``cog_url``: a self-hosted Cog server running predict.py (``DIGITCLOUD_COG_URL``).
    ``batch_size``: digits per forward pass or per prediction (``DIGITCLOUD_BATCH_SIZE``, default 256).
    ``max_concurrency``: cloud predictions in flight (``DIGITCLOUD_MAX_CONCURRENCY``, default 4).
    ``timeout``: seconds per cloud batch, retries included (``DIGITCLOUD_TIMEOUT``, default 120).
    ``num_threads``: CPU threads for the local model (default: one per available core).
    ``offline``: never send digits to a cloud (``DIGITCLOUD_OFFLINE=1``); URL inputs are still downloaded.
    ``local_engine``: what runs the local model, ``"onnxruntime"``, ``"torch"`` or ``"auto"``
    (default: onnxruntime when installed, else torch; ``DIGITCLOUD_LOCAL_ENGINE``).
    ``private_urls``: ``False`` downloads URL inputs only from public addresses, redirects included
    (``DIGITCLOUD_PRIVATE_URLS=0``; default ``True``): for a service handing on URLs it was given.
    """

    def __init__(
        self,
        *,
        backend: str | None = None,
        model: str | None = None,
        deployment: str | None = None,
        cog_url: str | None = None,
        token: str | None = None,
        batch_size: int | None = None,
        max_concurrency: int | None = None,
        timeout: float | None = None,
        num_threads: int | None = None,
        offline: bool | None = None,
        local_engine: str | None = None,
        private_urls: bool | None = None,
    ) -> None:
        self.settings = Settings.resolve(
            backend=backend,
            model=model,
            deployment=deployment,
            cog_url=cog_url,
            token=token,
            batch_size=batch_size,
            max_concurrency=max_concurrency,
            timeout=timeout,
            num_threads=num_threads,
            offline=offline,
            local_engine=local_engine,
            private_urls=private_urls,
        )
        self._local = LocalBackend(
            batch_size=self.settings.batch_size,
            num_threads=self.settings.num_threads,
            engine=self.settings.local_engine,
        )
        self._cloud: CogServerBackend | ReplicateBackend | None = None
        settings = self.settings
        target = settings.replicate_target
        # requests and the cloud backends load only when a cloud is used: `import digitcloud` stays light.
        if settings.uses_cloud and settings.cog_url:
            from digitcloud.cogserver import CogServerBackend
            from digitcloud.sessions import pooled_session

            session = pooled_session(settings.max_concurrency)
            self._cloud = CogServerBackend(settings.cog_url, timeout=settings.timeout, session=session)
        elif settings.uses_cloud and target is not None and settings.token is not None:
            from digitcloud.replicate import ReplicateBackend
            from digitcloud.sessions import pooled_session

            session = pooled_session(settings.max_concurrency)
            self._cloud = ReplicateBackend(
                target, settings.token, base_url=settings.base_url, timeout=settings.timeout, session=session
            )
        elif target is not None and settings.backend == "auto" and not settings.offline:
            warnings.warn(
                f"no REPLICATE_API_TOKEN: {target} is skipped, answering on the local CPU",
                FallbackWarning,
                stacklevel=2,
            )
        self._fallback_warned = False

    def __repr__(self) -> str:
        cloud = f", cloud={self._cloud!r}" if self._cloud else ""
        return f"Client(backend={self.settings.backend!r}{cloud}, batch_size={self.settings.batch_size})"

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the cloud connections. The local model stays cached for the process."""
        if self._cloud is not None:
            self._cloud.close()

    @overload
    def classify(self, images: OneImage, *, progress: bool = False) -> Prediction: ...
    # A str or an array is Iterable too; overloads are tried in order, so they stop at this one first.
    @overload
    def classify(  # type: ignore[overload-overlap]
        self, images: OneOrMany, *, progress: bool = False
    ) -> Prediction | list[Prediction]: ...
    @overload
    def classify(self, images: Iterable[Any], *, progress: bool = False) -> list[Prediction]: ...
    @overload
    def classify(self, images: Any, *, progress: bool = False) -> Prediction | list[Prediction]: ...

    def classify(self, images: Any, *, progress: bool = False) -> Prediction | list[Prediction]:
        """One image in -> one ``Prediction``; a list, directory, glob, CSV or batch array -> a list.

        Every image gets exactly one result, in input order; a bad image gets a result whose
        ``error`` names it, and the rest are still answered. On Ctrl-C the ``KeyboardInterrupt``
        carries ``partial_results``: the results (in order, from the first) already finished.
        """
        single = not inputs.is_batch(images)
        items = list(inputs.expand(images, private_urls=self.settings.private_urls))
        results: list[Prediction] = []
        try:
            results.extend(self._run(items, progress=progress, total=len(items)))
        except KeyboardInterrupt as exc:
            exc.partial_results = results  # type: ignore[attr-defined]
            raise
        return results[0] if single else results

    def classify_iter(self, images: Any, *, progress: bool = False) -> Generator[Prediction, None, None]:
        """Like ``classify`` but yields results as chunks finish; inputs are read lazily.

        To stop early, ``close()`` it or drop it: what it started is cancelled (when dropped, once
        it is garbage-collected; at once for a ``for`` loop left with ``break`` in CPython)."""
        items = inputs.expand(images, private_urls=self.settings.private_urls)
        yield from self._run(items, progress=progress, total=None)

    def _run(self, items: Any, *, progress: bool, total: int | None) -> Iterator[Prediction]:
        bar = _progress_bar(total) if progress else None
        numbered = _numbered(chunk(items, self.settings.batch_size))
        # Local inference already uses every core; only cloud round trips gain from overlapping.
        concurrency = self.settings.max_concurrency if self._cloud is not None else 1
        stop = threading.Event()  # set when this call gives up: its predictions get cancelled
        cloud = self._cloud

        def abort() -> None:
            stop.set()
            if cloud is not None:
                cloud.cancel_all(stop)

        work = functools.partial(self._classify_chunk, stop=stop)
        try:
            for results in ordered_map(work, numbered, concurrency, abort):
                yield from results
                if bar is not None:
                    bar.update(len(results))
        finally:
            if bar is not None:
                bar.close()

    def _classify_chunk(self, numbered: tuple[int, list[inputs.Item]], stop: threading.Event) -> list[Prediction]:
        start, block = numbered
        loaded = inputs.load_items(block, start)
        digits = inputs.stack(loaded)
        answers, backend = self._predict(digits, stop) if len(digits) else ([], "local")
        results, k = [], 0
        for item in loaded:
            if item.error is not None:
                results.append(Prediction(index=item.index, source=item.source, error=item.error))
                continue
            answer = answers[k]
            k += 1
            if isinstance(answer, DigitCloudError):
                error = _for_item(answer, item.index, item.source)
                results.append(Prediction(index=item.index, source=item.source, backend=backend, error=error))
            else:
                results.append(_prediction(item.index, item.source, answer, backend))
        return results

    def _predict(self, digits: np.ndarray, stop: threading.Event) -> tuple[list[np.ndarray | DigitCloudError], str]:
        """Answers for a chunk and the backend that gave them: the cloud when configured, local when
        the cloud is unavailable ("auto" only). A bad token is never papered over by a fallback."""
        if self._cloud is not None:
            try:
                remote = self._cloud.predict(digits, stop)
            except AuthenticationError:
                raise
            except CloudError as exc:
                # Stored in the results, not raised: without its traceback, whose frames link back to this
                # call's locals, which hold it; that cycle pins the whole batch (inputs, request body,
                # sockets) until the cyclic gc runs, and the heap it grew stays with the process.
                if exc.status in (400, 422):
                    return [exc.with_traceback(None)] * len(digits), self._cloud.name  # refused input: per item
                if not isinstance(exc, (CloudUnavailableError, PredictionFailedError)) and exc.status is not None:
                    raise  # any other 4xx is a configuration problem: surface it, never paper over it
                if self.settings.backend == "cloud":
                    return [exc.with_traceback(None)] * len(digits), self._cloud.name
                if stop.is_set():
                    raise  # the caller gave up: no local work either
                try:
                    local = self._predict_locally(digits)
                except LocalBackendError as local_exc:
                    # Nothing local can answer (a cloud-only install, bad weights): this chunk's items get
                    # the cloud's error, and the chunks the cloud did answer are not thrown away.
                    error = CloudUnavailableError(f"{exc}; no local fallback: {local_exc}", status=exc.status)
                    return [error] * len(digits), self._cloud.name
                self._warn_fallback(exc)
                return local, "local"
            else:
                answers: list[np.ndarray | DigitCloudError] = [
                    CloudError(f"predictor: {a}") if isinstance(a, str) else a for a in remote
                ]
                return answers, self._cloud.name
        return self._predict_locally(digits), "local"

    def _warn_fallback(self, exc: CloudError) -> None:
        if not self._fallback_warned:
            self._fallback_warned = True
            warnings.warn(f"cloud unavailable, answering on the local CPU: {exc}", FallbackWarning, stacklevel=2)

    def _predict_locally(self, digits: np.ndarray) -> list[np.ndarray | DigitCloudError]:
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


def _for_item(error: DigitCloudError, index: int, source: str) -> DigitCloudError:
    """A batch-level cloud error restated for one item, so its message names the item."""
    if not isinstance(error, CloudError):
        return error
    named = type(error)(f"item {index} ({source}): {error}", status=error.status, detail=error.detail)
    named.__cause__ = error
    return named


def _numbered(chunks: Iterator[list[inputs.Item]]) -> Iterator[tuple[int, list[inputs.Item]]]:
    start = 0
    for block in chunks:
        yield start, block
        start += len(block)


def _prediction(index: int, source: str, probs: np.ndarray, backend: str) -> Prediction:
    digit = int(np.argmax(probs))
    return Prediction(
        index=index,
        source=source,
        digit=digit,
        confidence=float(probs[digit]),
        probabilities=tuple(probs.tolist()),
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


@overload
def classify(images: OneImage, *, progress: bool = False, **settings: Any) -> Prediction: ...
@overload
def classify(images: OneOrMany, *, progress: bool = False, **settings: Any) -> Prediction | list[Prediction]: ...
@overload
def classify(images: Iterable[Any], *, progress: bool = False, **settings: Any) -> list[Prediction]: ...
@overload
def classify(images: Any, *, progress: bool = False, **settings: Any) -> Prediction | list[Prediction]: ...


def classify(images: Any, *, progress: bool = False, **settings: Any) -> Prediction | list[Prediction]:
    """Classify with the default Client, or with a one-off Client when settings are given.

    >>> classify("seven.png")                     # doctest: +SKIP
    Prediction(digit=7, confidence=0.9987, backend='local', index=0, source="'seven.png'")
    """
    if settings:
        with Client(**settings) as client:
            return client.classify(images, progress=progress)
    return default_client().classify(images, progress=progress)
