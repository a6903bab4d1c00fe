"""Settings: argument > environment > default, gathered once when a Client is built."""

from __future__ import annotations

import os
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from digitcloud.digits_file import MAX_BATCH_DIGITS  # the most digits one prediction may carry
from digitcloud.errors import ConfigError

BACKENDS = ("auto", "cloud", "local")
LOCAL_ENGINES = ("auto", "onnxruntime", "torch")
DEFAULT_BATCH_SIZE = 256
DEFAULT_TIMEOUT = 120.0
DEFAULT_CONCURRENCY = 4
DEFAULT_BASE_URL = "https://api.replicate.com"
MIN_REDACTED = 6  # a shorter "token" is no real one, and replacing it everywhere would garble text


class Secret:
    """A token whose repr, str and pickle never show it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def redact(self, text: str) -> str:
        """``text`` with every copy of the secret replaced by ``<REPLICATE_API_TOKEN>``: for what a
        server writes back (error details, failure messages), which might echo it."""
        if len(self._value) < MIN_REDACTED or self._value not in text:
            return text
        return text.replace(self._value, "<REPLICATE_API_TOKEN>")

    def __bool__(self) -> bool:
        return bool(self._value.strip())

    def __repr__(self) -> str:
        return f"Secret(<{len(self._value)} characters hidden>)"

    __str__ = __repr__

    def __reduce__(self) -> Any:
        raise TypeError("a Secret cannot be pickled")


@dataclass(frozen=True)
class Target:
    """Where predictions are created: a model version, a model's latest version, or a deployment."""

    kind: str  # "version" | "model" | "deployment"
    owner: str
    name: str
    version: str | None = None

    @classmethod
    def parse(cls, model: str | None = None, deployment: str | None = None) -> Target:
        if (model is None) == (deployment is None):
            raise ConfigError("give exactly one of model= and deployment=")
        spec = (deployment or model or "").strip()
        if spec.startswith("deployments/"):
            deployment, spec = spec, spec[len("deployments/") :]
        name_part, _, version = spec.partition(":")
        owner, _, name = name_part.partition("/")
        if not owner or not name or "/" in name:
            what = "deployment" if deployment else "model"
            raise ConfigError(f"{what} must look like 'owner/name'{'' if deployment else '[:version]'}; got {spec!r}")
        if deployment:
            if version:
                raise ConfigError(f"a deployment has no version; got {spec!r}")
            return cls("deployment", owner, name)
        return cls("version" if version else "model", owner, name, version or None)

    def create_path(self) -> str:
        if self.kind == "version":
            return "/v1/predictions"
        if self.kind == "deployment":
            return f"/v1/deployments/{self.owner}/{self.name}/predictions"
        return f"/v1/models/{self.owner}/{self.name}/predictions"

    def body(self, payload: dict[str, Any]) -> dict[str, Any]:
        if self.kind == "version":
            return {"version": self.version, "input": payload}
        return {"input": payload}

    def __str__(self) -> str:
        prefix = "deployments/" if self.kind == "deployment" else ""
        return f"{prefix}{self.owner}/{self.name}" + (f":{self.version}" if self.version else "")


@dataclass(frozen=True)
class Settings:
    """How a Client runs. Build with ``Settings.resolve(...)`` so the environment is honoured."""

    backend: str = "auto"
    """``"auto"`` (the cloud when one is configured, else local; local again when the cloud is
    unavailable), ``"cloud"`` (never local) or ``"local"``."""

    cog_url: str | None = None
    """A self-hosted Cog server, e.g. ``http://gpu-box:5000``."""

    model: str | None = None
    """A Replicate model, ``owner/name`` or ``owner/name:version`` (``DIGITCLOUD_MODEL``)."""

    deployment: str | None = None
    """A Replicate deployment, ``owner/name`` (``DIGITCLOUD_DEPLOYMENT``)."""

    token: Secret | None = field(default=None, repr=False)
    """``REPLICATE_API_TOKEN``, kept in a ``Secret`` so it never shows in a repr or message."""

    base_url: str = DEFAULT_BASE_URL
    """``REPLICATE_BASE_URL``: the API's base, without ``/v1`` (as the official client reads it)."""

    timeout: float = DEFAULT_TIMEOUT
    """Seconds one batch may take in the cloud, retries and waits included."""

    max_concurrency: int = DEFAULT_CONCURRENCY
    """Cloud predictions in flight at once."""

    batch_size: int = DEFAULT_BATCH_SIZE
    """Digits per forward pass (local) or per prediction (cloud)."""

    num_threads: int | None = None
    """CPU threads for the local model; ``None`` means one per available core."""

    offline: bool = False
    """``DIGITCLOUD_OFFLINE=1``: never send digits to a cloud (URL inputs are still downloaded)."""

    local_engine: str = "auto"
    """What runs the local model (``DIGITCLOUD_LOCAL_ENGINE``): ``"onnxruntime"`` (fastest on a
    CPU), ``"torch"``, or ``"auto"``: onnxruntime when it is installed, else torch."""

    private_urls: bool = True
    """``DIGITCLOUD_PRIVATE_URLS=0``: URL inputs are downloaded only from public addresses (for a
    service that passes on URLs it was given: no loopback, LAN or cloud-metadata address)."""

    @classmethod
    def resolve(
        cls,
        *,
        backend: str | None = None,
        batch_size: int | None = None,
        num_threads: int | None = None,
        offline: bool | None = None,
        local_engine: str | None = None,
        private_urls: bool | None = None,
        cog_url: str | None = None,
        model: str | None = None,
        deployment: str | None = None,
        token: str | None = None,
        timeout: float | None = None,
        max_concurrency: int | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> Settings:
        env = os.environ if environ is None else environ
        backend = backend or env.get("DIGITCLOUD_BACKEND") or "auto"
        if backend not in BACKENDS:
            raise ConfigError(f"backend must be one of {', '.join(BACKENDS)}; got {backend!r}")
        batch_size = batch_size if batch_size is not None else _number(env, "DIGITCLOUD_BATCH_SIZE", DEFAULT_BATCH_SIZE)
        if not 1 <= batch_size <= MAX_BATCH_DIGITS:
            raise ConfigError(f"batch_size must be between 1 and {MAX_BATCH_DIGITS:,}; got {batch_size}")
        if num_threads is not None and num_threads < 1:
            raise ConfigError(f"num_threads must be at least 1; got {num_threads}")
        local_engine = local_engine or env.get("DIGITCLOUD_LOCAL_ENGINE", "").strip().lower() or "auto"
        if local_engine not in LOCAL_ENGINES:
            raise ConfigError(f"local_engine must be one of {', '.join(LOCAL_ENGINES)}; got {local_engine!r}")
        if offline is None:
            offline = _switch(env, "DIGITCLOUD_OFFLINE", False)
        if private_urls is None:
            private_urls = _switch(env, "DIGITCLOUD_PRIVATE_URLS", True)
        # A cloud given as an argument replaces the environment's; a local or offline run reads none from it.
        if not (cog_url or model or deployment) and backend != "local" and not offline:
            cog_url = env.get("DIGITCLOUD_COG_URL") or None
            model = env.get("DIGITCLOUD_MODEL") or None
            deployment = env.get("DIGITCLOUD_DEPLOYMENT") or None
        cog_url = cog_url or None
        model = model or None
        deployment = deployment or None
        if cog_url is not None and not cog_url.lower().startswith(("http://", "https://")):
            raise ConfigError(f"cog_url must be an http(s) URL; got {cog_url!r}")
        timeout = timeout if timeout is not None else _number(env, "DIGITCLOUD_TIMEOUT", DEFAULT_TIMEOUT)
        if timeout < 5:
            raise ConfigError(f"timeout must be at least 5 seconds; got {timeout}")
        if max_concurrency is None:
            max_concurrency = _number(env, "DIGITCLOUD_MAX_CONCURRENCY", DEFAULT_CONCURRENCY)
        if max_concurrency < 1:
            raise ConfigError(f"max_concurrency must be at least 1; got {max_concurrency}")
        if model and deployment:
            raise ConfigError("give model= or deployment= (DIGITCLOUD_MODEL or DIGITCLOUD_DEPLOYMENT), not both")
        if cog_url and (model or deployment):
            raise ConfigError("give cog_url= (DIGITCLOUD_COG_URL) or a Replicate model/deployment, not both")
        if model or deployment:
            Target.parse(model=model, deployment=deployment)  # fail now on a malformed name
        raw_token = token if token is not None else env.get("REPLICATE_API_TOKEN", "")
        secret = Secret(raw_token.strip()) if raw_token and raw_token.strip() else None
        if secret is not None and (model or deployment) and backend != "local" and not offline:
            _check_token(secret, "token=" if token is not None else "REPLICATE_API_TOKEN")
        base_url = (env.get("REPLICATE_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")
        if backend == "cloud" and cog_url is None and not (model or deployment):
            raise ConfigError("backend='cloud' needs a cloud: cog_url=, model= or deployment=")
        if backend == "cloud" and (model or deployment) and secret is None:
            raise ConfigError("backend='cloud' with a Replicate model needs REPLICATE_API_TOKEN")
        if backend == "cloud" and offline:
            raise ConfigError("backend='cloud' contradicts offline mode (DIGITCLOUD_OFFLINE=1)")
        return cls(
            backend=backend,
            batch_size=batch_size,
            num_threads=num_threads,
            offline=offline,
            local_engine=local_engine,
            private_urls=private_urls,
            cog_url=cog_url,
            model=model,
            deployment=deployment,
            token=secret,
            base_url=base_url,
            timeout=timeout,
            max_concurrency=max_concurrency,
        )

    @property
    def uses_cloud(self) -> bool:
        """Whether batches go to a cloud first (they never do offline, nor to Replicate without a token)."""
        if self.backend == "local" or self.offline:
            return False
        return self.cog_url is not None or (self.replicate_target is not None and self.token is not None)

    @property
    def replicate_target(self) -> Target | None:
        if not (self.model or self.deployment):
            return None
        return Target.parse(model=self.model, deployment=self.deployment)


def _check_token(secret: Secret, where: str) -> None:
    """Refuse a token that cannot travel in an HTTP header (printable ASCII only): a zero-width space
    or a curly quote pasted with it would otherwise fail inside the HTTP library, with the token in
    the exception. The message gives the character's position and name, never the token."""
    for position, char in enumerate(secret.reveal(), 1):
        if not ("!" <= char <= "~"):
            name = unicodedata.name(char, "a control character")
            raise ConfigError(
                f"{where} has a character that cannot be sent (character {position}: U+{ord(char):04X} {name}); "
                "copy the token again from https://replicate.com/account/api-tokens"
            )


def _switch(env: Mapping[str, str], name: str, default: bool) -> bool:
    """An on/off variable: 1/true/yes/on or 0/false/no/off, any case; unset or blank gives ``default``."""
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be 1 or 0 (true/false, yes/no, on/off); got {env[name]!r}")


N = TypeVar("N", int, float)


def _number(env: Mapping[str, str], name: str, default: N) -> N:
    """``name`` from the environment as the type of ``default``; unset or blank gives ``default``."""
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return type(default)(raw)
    except ValueError:
        kind = "an integer" if isinstance(default, int) else "a number"
        raise ConfigError(f"{name} must be {kind}; got {raw!r}") from None


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
