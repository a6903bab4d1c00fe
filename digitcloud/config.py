"""Settings: argument > environment > default, gathered once when a Client is built."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from digitcloud.errors import ConfigError

BACKENDS = ("auto", "local")
DEFAULT_BATCH_SIZE = 256


@dataclass(frozen=True)
class Settings:
    """How a Client runs. Build with ``Settings.resolve(...)`` so the environment is honoured."""

    backend: str = "auto"
    """``"auto"`` (local until a cloud backend is configured) or ``"local"``."""

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
        return cls(backend=backend, batch_size=batch_size, num_threads=num_threads, offline=offline)


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer; got {raw!r}") from None


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
