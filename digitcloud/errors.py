"""Every error digitcloud raises or reports.

    DigitCloudError
    +-- ConfigError(DigitCloudError, ValueError)            a bad argument or environment value
    +-- InputError(DigitCloudError, ValueError)             one input could not become a digit
    +-- CloudError                                          .status .detail
    |   +-- AuthenticationError                             401/403: never falls back
    |   +-- PredictionFailedError                           the model ran and failed: "auto" answers locally
    |   `-- CloudUnavailableError(CloudError, ConnectionError)   unreachable/overloaded: "auto" answers locally
    `-- LocalBackendError
        +-- WeightsError                                    weights missing or sha256 mismatch
        `-- MissingDependencyError(LocalBackendError, ImportError)  names the extra to install

"auto" answers locally when the cloud is unavailable, a prediction failed, or the cloud's answer
could not be used (a ``CloudError`` with no HTTP status, such as a malformed output); a 400/422 is
a per-item error, and any other 4xx is raised. FallbackWarning(UserWarning) is issued once per
Client when that happens.

Per-item problems (a corrupt file, an empty image) are not raised: they are carried by the
item's ``Prediction.error`` so the rest of the batch is still answered.
"""

from __future__ import annotations


class DigitCloudError(Exception):
    """Base of every digitcloud error."""


class ConfigError(DigitCloudError, ValueError):
    """An argument or environment variable has a value digitcloud cannot use."""


class InputError(DigitCloudError, ValueError):
    """One input item could not be turned into a 28x28 digit.

    ``index`` is the item's position in the results and ``source`` describes it (a path's repr,
    "array[3]", "bytes (1,204 B)"…), so the message alone says which item was wrong.
    """

    def __init__(self, reason: str, *, index: int | None = None, source: str = "") -> None:
        self.reason = reason
        self.index = index
        self.source = source
        super().__init__(self._message())

    def _message(self) -> str:
        where = []
        if self.index is not None:
            where.append(f"item {self.index}")
        if self.source:
            where.append(f"({self.source})")
        return f"{' '.join(where)}: {self.reason}" if where else self.reason

    def at(self, index: int, source: str) -> InputError:
        """The same error, placed at ``index``/``source`` in a batch."""
        return InputError(self.reason, index=index, source=source or self.source)

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild_input_error, (self.reason, self.index, self.source))


def _rebuild_input_error(reason: str, index: int | None, source: str) -> InputError:
    return InputError(reason, index=index, source=source)


class CloudError(DigitCloudError):
    """The cloud answered with an error. ``status`` is the HTTP status when there was one."""

    def __init__(self, message: str, *, status: int | None = None, detail: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.detail = detail


class AuthenticationError(CloudError):
    """The token was refused (401/403). Never triggers a local fallback."""


class PredictionFailedError(CloudError):
    """The prediction ran and ended ``failed``."""


class CloudUnavailableError(CloudError, ConnectionError):
    """The cloud could not be reached or is overloaded; "auto" then answers on the local CPU."""


class LocalBackendError(DigitCloudError):
    """The local CPU backend could not run."""


class WeightsError(LocalBackendError):
    """The weights file is missing or its sha256 is not the pinned one."""


class MissingDependencyError(LocalBackendError, ImportError):
    """An optional dependency is not installed; the message names the extra that brings it."""


class FallbackWarning(UserWarning):
    """The cloud was unavailable, so a Client on "auto" answered on the local CPU."""
