"""digitcloud: classify handwritten digits on Replicate GPUs or, offline, on the local CPU."""

from digitcloud.client import Client, classify
from digitcloud.config import Settings
from digitcloud.errors import (
    AuthenticationError,
    CloudError,
    CloudUnavailableError,
    ConfigError,
    DigitCloudError,
    FallbackWarning,
    InputError,
    LocalBackendError,
    MissingDependencyError,
    PredictionFailedError,
    WeightsError,
)
from digitcloud.inputs import normalize
from digitcloud.types import Prediction

__version__ = "0.1.0"

__all__ = [
    "AuthenticationError",
    "Client",
    "CloudError",
    "CloudUnavailableError",
    "ConfigError",
    "DigitCloudError",
    "FallbackWarning",
    "InputError",
    "LocalBackendError",
    "MissingDependencyError",
    "Prediction",
    "PredictionFailedError",
    "Settings",
    "WeightsError",
    "__version__",
    "classify",
    "normalize",
]
