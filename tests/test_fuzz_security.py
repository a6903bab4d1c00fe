"""Claims of the README's "Security review" that no fuzzer exercises: checked on the source itself.

* nothing in the package, the predictor or the training code can unpickle: no pickle/marshal/dill/
  joblib loads, no ``np.load``, and every ``torch.load`` passes ``weights_only=True``;
* the shipped weights are safetensors (their sha256 pin: tests/test_model.py);
* URL inputs are http(s) only: any other scheme is a file name, never fetched;
* URLs a Replicate response hands back are followed only on the API's own host.
"""

from __future__ import annotations

import ast
import random
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest
import responses

from digitcloud import inputs, model
from digitcloud.replicate import ReplicateBackend, Secret, Target
from digitcloud.retrying import RetryPolicy

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted([*ROOT.glob("digitcloud/**/*.py"), *ROOT.glob("train/**/*.py"), ROOT / "predict.py"])
UNPICKLERS = {"pickle", "cPickle", "_pickle", "dill", "joblib", "marshal", "shelve", "cloudpickle"}


def _calls(path: Path) -> list[tuple[str, ast.Call]]:
    """Every call in ``path`` as ``module.function`` (when written that way) with its node."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            owner = node.func.value
            name = owner.id if isinstance(owner, ast.Name) else getattr(owner, "attr", "")
            found.append((f"{name}.{node.func.attr}", node))
    return found


def test_the_sources_are_found() -> None:
    # the batch-file reader (untrusted .npy/.npz from any caller) and the checkpoint writer among them
    assert ROOT / "digitcloud" / "digits_file.py" in SOURCES and ROOT / "train" / "recipe.py" in SOURCES


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_nothing_can_unpickle(path: Path) -> None:
    tree = ast.parse(path.read_text(), str(path))
    imported = {alias.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for alias in n.names}
    imported |= {(n.module or "").split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert not imported & UNPICKLERS, f"{path.name} imports {imported & UNPICKLERS}"
    for call, node in _calls(path):
        assert call not in ("np.load", "numpy.load"), f"{path.name}:{node.lineno}: np.load"
        if call == "torch.load":
            weights_only = {k.arg: k.value for k in node.keywords}.get("weights_only")
            assert isinstance(weights_only, ast.Constant) and weights_only.value is True, (
                f"{path.name}:{node.lineno}: torch.load without weights_only=True"
            )


def test_the_checkpoint_loader_is_seen_by_the_check() -> None:
    # training checkpoints are the one torch.load: the check above must be looking at it
    assert "recipe.py" in {p.name for p in SOURCES for call, _ in _calls(p) if call == "torch.load"}


def test_the_shipped_weights_are_safetensors() -> None:
    # their sha256 pin is checked by tests/test_model.py (match, and refusal of another file)
    assert model.WEIGHTS.filename.endswith(".safetensors") and len(model.WEIGHTS.sha256) == 64


@pytest.mark.parametrize(
    "url", ["file:///etc/passwd", "ftp://example.test/seven.png", "gopher://example.test/1", "HTTP:/one-slash.png"]
)
def test_only_http_and_https_urls_are_fetched(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    def fetch(u: str, **kwargs: object) -> bytes:
        raise AssertionError(f"fetched {u}")

    monkeypatch.setattr(inputs, "fetch_url", fetch)
    (item,) = inputs.load_items(inputs.expand(url))
    assert item.error is not None and "no such file" in item.error.reason


@responses.activate
def test_urls_in_responses_are_followed_only_on_the_api_host() -> None:
    # given a create answered with get/cancel URLs on another host (where the token would go)
    base, token = "https://api.example.test", "r8_security_SENTINEL"
    elsewhere = "https://elsewhere.test/v1/predictions/p1"
    responses.add(
        responses.POST,
        f"{base}/v1/models/o/n/predictions",
        status=201,
        json={"id": "p1", "status": "starting", "urls": {"get": elsewhere, "cancel": elsewhere + "/cancel"}},
    )
    responses.add(
        responses.GET,
        f"{base}/v1/predictions/p1",
        json={
            "id": "p1",
            "status": "succeeded",
            "output": {"predictions": [{"digit": 1, "confidence": 1.0, "probabilities": [0, 1] + [0] * 8}]},
        },
    )
    backend = ReplicateBackend(
        Target.parse(model="o/n"),
        Secret(token),
        base_url=base,
        timeout=30,
        policy=RetryPolicy(sleep=lambda s: None, rng=random.Random(0)),
    )
    # when the client waits for it
    (answer,) = backend.predict(np.zeros((1, 28, 28), dtype=np.uint8))
    # then it polled the API host itself: no request, so no token, went to the other host
    assert int(np.argmax(answer)) == 1
    hosts = {urlsplit(call.request.url).netloc for call in responses.calls}
    assert hosts == {"api.example.test"}
