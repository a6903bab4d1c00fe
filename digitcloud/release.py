"""The control plane: which version of a Replicate model to pin, checked against wire contract v1.

Uses the official ``replicate`` client (``pip install 'digitcloud[release]'``): retries and speed
matter little here, and it reads REPLICATE_API_TOKEN and REPLICATE_BASE_URL as users expect.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from digitcloud.errors import (
    AuthenticationError,
    CloudError,
    CloudUnavailableError,
    ConfigError,
    MissingDependencyError,
)
from digitcloud.replicate import Target

CONTRACT_INPUTS = ("image", "digits", "request_id")


@dataclass(frozen=True)
class Release:
    """A model's latest version and whether its inputs are the ones digitcloud sends: all three
    present, none required (a request carries ``image`` or ``digits``, never both)."""

    model: str
    version: str
    created_at: str
    missing_inputs: tuple[str, ...]
    required_inputs: tuple[str, ...] = ()

    @property
    def pinned(self) -> str:
        return f"{self.model}:{self.version}"

    @property
    def compatible(self) -> bool:
        return not self.missing_inputs and not self.required_inputs


def latest_release(model: str, *, token: str | None = None, base_url: str | None = None) -> Release:
    """Resolve ``owner/name`` to its latest version (after ``cog push``) and check its schema."""
    try:
        import httpx  # the official client's transport
        import replicate
        import replicate.exceptions
    except ImportError as exc:
        raise MissingDependencyError(
            "resolving releases needs the official client: pip install 'digitcloud[release]'"
        ) from exc
    target = Target.parse(model=model)
    if target.kind != "model":
        raise ConfigError(f"give a model as owner/name, without a version; got {model!r}")
    client = replicate.Client(api_token=token, base_url=base_url)
    try:
        found = client.models.get(f"{target.owner}/{target.name}")
    except replicate.exceptions.ReplicateError as exc:
        status = getattr(exc, "status", None)
        if status in (401, 403):
            raise AuthenticationError("Replicate refused the token: check REPLICATE_API_TOKEN", status=status) from None
        raise CloudError(
            f"could not read model {model}: {getattr(exc, 'detail', None) or exc}", status=status
        ) from None
    except httpx.HTTPError as exc:  # offline, DNS, refused, timed out: no answer at all
        raise CloudUnavailableError(f"could not reach Replicate to read model {model}: {type(exc).__name__}") from None
    finally:
        # The official client never closes its httpx.Client; close it so no socket is left open.
        client._client.close()
    version = found.latest_version
    if version is None:
        raise CloudError(f"{model} has no version yet: run `cog push r8.im/{model}` first")
    inputs, required = _inputs(version.openapi_schema)
    missing = tuple(name for name in CONTRACT_INPUTS if name not in inputs)
    forced = tuple(name for name in CONTRACT_INPUTS if name in required)
    return Release(f"{target.owner}/{target.name}", version.id, str(version.created_at), missing, forced)


def _inputs(schema: Any) -> tuple[set[str], set[str]]:
    """The schema's input names, and those it marks required."""
    try:
        spec = schema["components"]["schemas"]["Input"]
        return set(spec["properties"]), set(spec.get("required") or ())
    except (KeyError, TypeError, AttributeError):
        return set(), set()
