"""Settings: argument > environment > default, gathered once when a Client is built."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from digitcloud.errors import ConfigError

BACKENDS = ("auto", "cloud", "local")
DEFAULT_BATCH_SIZE = 256
DEFAULT_TIMEOUT = 120.0
DEFAULT_CONCURRENCY = 4


@dataclass(frozen=True)
class Settings:
    """How a Client runs. Build with ``Settings.resolve(...)`` so the environment is honoured."""

    backend: str = "auto"
    """``"auto"`` (the cloud when one is configured, else local; local again when the cloud is
    unavailable), ``"cloud"`` (never local) or ``"local"``."""

    cog_url: str | None = None
    """A self-hosted Cog server, e.g. ``http://gpu-box:5000``."""

    timeout: float = DEFAULT_TIMEOUT
    """Seconds one batch may take in the cloud, retries and waits included."""

    max_concurrency: int = DEFAULT_CONCURRENCY
    """Cloud predictions in flight at once."""

    batch_size: int = DEFAULT_BATCH_SIZE
    """Digits per forward pass (local) or per prediction (cloud)."""

    num_threads: int | None = None
    """CPU threads for the local model; ``None`` means one per available core."""

    offline: bool = False
    """``DIGITCLOUD_OFFLINE=1``: never touch the network for classification."""

    @classmethod
    def resolve(
        cls,
        *,
        backend: str | None = None,
        batch_size: int | None = None,
        num_threads: int | None = None,
        offline: bool | None = None,
        cog_url: str | None = None,
        timeout: float | None = None,
        max_concurrency: int | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> Settings:
        env = os.environ if environ is None else environ
        backend = backend or env.get("DIGITCLOUD_BACKEND") or "auto"
        if backend not in BACKENDS:
            raise ConfigError(f"backend must be one of {', '.join(BACKENDS)}; got {backend!r}")
        batch_size = batch_size if batch_size is not None else _int(env, "DIGITCLOUD_BATCH_SIZE", DEFAULT_BATCH_SIZE)
        if batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1; got {batch_size}")
        if num_threads is not None and num_threads < 1:
            raise ConfigError(f"num_threads must be at least 1; got {num_threads}")
        if offline is None:
            offline = env.get("DIGITCLOUD_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
        cog_url = cog_url or env.get("DIGITCLOUD_COG_URL") or None
        if cog_url is not None and not cog_url.lower().startswith(("http://", "https://")):
            raise ConfigError(f"cog_url must be an http(s) URL; got {cog_url!r}")
        timeout = timeout if timeout is not None else _float(env, "DIGITCLOUD_TIMEOUT", DEFAULT_TIMEOUT)
        if timeout < 5:
            raise ConfigError(f"timeout must be at least 5 seconds; got {timeout}")
        if max_concurrency is None:
            max_concurrency = _int(env, "DIGITCLOUD_MAX_CONCURRENCY", DEFAULT_CONCURRENCY)
        if max_concurrency < 1:
            raise ConfigError(f"max_concurrency must be at least 1; got {max_concurrency}")
        if backend == "cloud" and cog_url is None:
            raise ConfigError("backend='cloud' needs a cloud: pass cog_url= or set DIGITCLOUD_COG_URL")
        if backend == "cloud" and offline:
            raise ConfigError("backend='cloud' contradicts offline mode (DIGITCLOUD_OFFLINE=1)")
        return cls(
            backend=backend,
            batch_size=batch_size,
            num_threads=num_threads,
            offline=offline,
            cog_url=cog_url,
            timeout=timeout,
            max_concurrency=max_concurrency,
        )

    @property
    def uses_cloud(self) -> bool:
        """Whether batches go to a cloud first (they never do offline)."""
        return self.backend != "local" and self.cog_url is not None and not self.offline


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer; got {raw!r}") from None


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number; got {raw!r}") from None


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
