"""Replicate's HTTP API on loopback, with faults on cue and a ledger of everything it was asked.

Speaks what digitcloud uses: predictions (create via version, model or deployment; get; list with
``created_after`` and pagination; cancel), ``Prefer: wait``, ``Cancel-After``, files (multipart
upload, download), and a 600/min create rate limit answered with 429 + ``Retry-After``.
Predictions run ``model_fn(digits) -> probabilities`` in a background thread; the output is built
with ``digitcloud.model.prediction_entries``, exactly as predict.py builds it.
"""

from __future__ import annotations

import base64
import datetime as dt
import email.parser
import http.server
import json
import tempfile
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import numpy as np

from digitcloud import inputs
from digitcloud.model import prediction_entries
from tests.fakes import openapi

TERMINAL = ("succeeded", "failed", "canceled", "aborted")


def oracle(digits: np.ndarray) -> np.ndarray:
    """A fake model whose answer is known: digit = (sum of pixels) mod 10, with probability 0.91."""
    labels = digits.reshape(len(digits), -1).sum(axis=1) % 10
    probs = np.full((len(digits), 10), 0.01, dtype=np.float32)
    probs[np.arange(len(digits)), labels] = 0.91
    return probs


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat().replace("+00:00", "Z")


class FakeReplicate:
    def __init__(
        self,
        model_fn: Callable[[np.ndarray], np.ndarray] = oracle,
        token: str = "r8_fake-token-for-tests",
        run_seconds: float = 0.0,
        page_size: int = 100,
        creates_per_minute: int = 600,
        latency: float = 0.0,
        max_wait: float = 5.0,
    ) -> None:
        self.model_fn = model_fn
        self.token = token
        self.run_seconds = run_seconds
        self.page_size = page_size
        self.creates_per_minute = creates_per_minute
        self.latency = latency  # added to every answer: a network round trip
        self.max_wait = max_wait  # longest a create honours Prefer: wait (0: answer at once)
        self.lock = threading.Lock()
        self.predictions: dict[str, dict[str, Any]] = {}
        self.done: dict[str, threading.Event] = {}
        self.files: dict[str, bytes] = {}
        self.faults: dict[str, deque[str]] = {}
        self.requests: list[dict[str, Any]] = []  # method, path, headers, body: for leak checks
        self.cancels: list[str] = []
        self.accepted_creates: list[dict[str, Any]] = []  # headers of every create that made a prediction
        self.create_times: deque[float] = deque()
        self.models: dict[str, dict[str, Any]] = {}
        self.schema_errors: list[str] = []  # request and response bodies that break Replicate's spec
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        for event in self.done.values():
            event.set()
        self.server.shutdown()
        self.server.server_close()

    def add_version(
        self, model: str, version: str, inputs: tuple[str, ...] = ("image", "digits", "request_id")
    ) -> None:
        """Register ``model``'s latest version, as ``cog push`` would, with an OpenAPI schema of ``inputs``."""
        owner, name = model.split("/")
        schema = {
            "openapi": "3.0.2",
            "components": {
                "schemas": {
                    "Input": {
                        "type": "object",
                        "properties": {n: {"type": "string", "x-order": i} for i, n in enumerate(inputs)},
                    },
                    "Output": {"type": "object", "properties": {"predictions": {"type": "array"}}},
                }
            },
        }
        latest = {"id": version, "created_at": _now(), "cog_version": "0.23.1", "openapi_schema": schema}
        self.models[model] = {
            "url": f"{self.url}/{model}",
            "owner": owner,
            "name": name,
            "description": None,
            "visibility": "private",
            "github_url": None,
            "paper_url": None,
            "license_url": None,
            "run_count": 0,
            "cover_image_url": None,
            "default_example": None,
            "latest_version": latest,
        }

    # ------------------------------------------------------------------ faults and ledger

    def inject(self, endpoint: str, fault: str, times: int = 1) -> None:
        """Queue ``fault`` for the next ``times`` calls of ``endpoint`` ("create", "get", "list", "files")."""
        self.faults.setdefault(endpoint, deque()).extend([fault] * times)

    def _fault(self, endpoint: str) -> str | None:
        with self.lock:
            queue = self.faults.get(endpoint)
            return queue.popleft() if queue else None

    def predictions_per_request_id(self) -> Counter[str]:
        return Counter(p["input"].get("request_id") for p in self.predictions.values())

    def unfinished(self) -> list[str]:
        return [pid for pid, p in self.predictions.items() if p["status"] not in TERMINAL]

    # ------------------------------------------------------------------ running predictions

    def _digits(self, value: str) -> np.ndarray:
        if value.startswith("data:"):
            blob = base64.b64decode(value.split(",", 1)[1])
        else:
            blob = self.files[value.rstrip("/").split("/")[-2]]
        with tempfile.TemporaryDirectory() as tmp:
            path = f"{tmp}/digits.npz"
            with open(path, "wb") as f:
                f.write(blob)
            return inputs.read_digits_file(path)

    def _run(self, pid: str, fault: str | None, deadline: float | None) -> None:
        p = self.predictions[pid]
        with self.lock:
            p["status"] = "processing"
            p["started_at"] = _now()
        end = time.monotonic() + self.run_seconds
        while fault == "never_finish" or time.monotonic() < end:
            if p["status"] in TERMINAL:
                self.done[pid].set()
                return
            if deadline is not None and time.monotonic() > deadline:
                with self.lock:
                    p["status"] = "canceled"  # Cancel-After reached while running
                self.done[pid].set()
                return
            time.sleep(0.01)
        with self.lock:
            if p["status"] in TERMINAL:
                pass
            elif fault == "fail":
                p.update(status="failed", error="CUDA error: an illegal memory access was encountered")
            elif fault in ("abort", "cancel_by_server"):
                p.update(status="aborted" if fault == "abort" else "canceled")
            else:
                try:
                    probs = self.model_fn(self._digits(p["input"]["digits"]))
                    output: Any = {
                        "predictions": prediction_entries(probs),
                        "weights_sha256": "f" * 64,
                        "request_id": p["input"].get("request_id"),
                    }
                    if fault == "short_output":
                        output["predictions"] = output["predictions"][:-1]
                    p.update(status="succeeded", output=output)
                except Exception as exc:
                    p.update(status="failed", error=f"{type(exc).__name__}: {exc}")
            p["completed_at"] = _now()
        self.done[pid].set()

    def _create(self, body: dict[str, Any], headers: Any, fault: str | None) -> dict[str, Any]:
        pid = uuid.uuid4().hex[:26]
        cancel_after = headers.get("Cancel-After")
        deadline = None
        if cancel_after and cancel_after.endswith("s") and cancel_after[:-1].isdigit():
            deadline = time.monotonic() + int(cancel_after[:-1])
        prediction = {
            "id": pid,
            "model": "owner/digitcloud",
            # a model's or deployment's prediction reports the version that ran (not "hidden", which
            # the spec keeps for official models)
            "version": body.get("version") or "0" * 64,
            "input": body.get("input") or {},
            "output": None,
            "error": None,
            "logs": "",
            "status": "starting",
            "data_removed": False,
            "created_at": _now(),
            "urls": {
                "get": f"{self.url}/v1/predictions/{pid}",
                "cancel": f"{self.url}/v1/predictions/{pid}/cancel",
                "web": f"{self.url}/p/{pid}",
            },
        }
        with self.lock:
            self.predictions[pid] = prediction
            self.done[pid] = threading.Event()
            self.accepted_creates.append(dict(headers))
        threading.Thread(target=self._run, args=(pid, fault, deadline), daemon=True).start()
        return prediction

    # ------------------------------------------------------------------ HTTP

    def _handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _send(
                self, status: int, body: Any, headers: dict[str, str] | None = None, schema: str | None = None
            ) -> None:
                if schema is not None:
                    fake.schema_errors.extend(openapi.problems(schema, body))
                if fake.latency:
                    time.sleep(fake.latency)
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def _drop(self) -> None:
                self.close_connection = True
                self.connection.shutdown(2)

            def _body(self) -> bytes:
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _authorised(self, raw: bytes) -> bool:
                fake.requests.append(
                    {"method": self.command, "path": self.path, "headers": dict(self.headers), "body": raw[:10_000]}
                )
                if self.headers.get("Authorization") != f"Bearer {fake.token}":
                    self._send(
                        401, {"title": "Unauthenticated", "detail": "You did not pass a valid token", "status": 401}
                    )
                    return False
                return True

            def do_POST(self) -> None:
                raw = self._body()
                path = urlsplit(self.path).path
                if not self._authorised(raw):
                    return
                if path.endswith("/cancel"):
                    pid = path.split("/")[-2]
                    with fake.lock:
                        fake.cancels.append(pid)
                        p = fake.predictions.get(pid)
                        if p is not None and p["status"] not in TERMINAL:
                            p["status"] = "canceled" if p["status"] == "processing" else "aborted"
                    if p is None:
                        self._send(404, {"detail": "Not found"})
                    else:
                        self._send(200, dict(p), schema="schemas_prediction_response")
                    return
                if path == "/v1/files":
                    self._upload(raw)
                    return
                if path == "/v1/predictions" or path.endswith("/predictions"):
                    self._create(raw)
                    return
                self._send(404, {"detail": "Not found"})

            def _upload(self, raw: bytes) -> None:
                fault = fake._fault("files")
                if fault == "500":
                    self._send(500, {"detail": "Internal server error"})
                    return
                message = email.parser.BytesParser().parsebytes(
                    b"Content-Type: " + self.headers["Content-Type"].encode() + b"\r\n\r\n" + raw
                )
                content = next(
                    (
                        part.get_payload(decode=True)
                        for part in message.get_payload()
                        if part.get_param("name", header="content-disposition") == "content"
                    ),
                    None,
                )
                if content is None:
                    self._send(400, {"detail": "content is required"})
                    return
                fid = uuid.uuid4().hex[:12]
                fake.files[fid] = content
                self._send(
                    201,
                    {
                        "id": fid,
                        "size": len(content),
                        "content_type": "application/octet-stream",
                        "urls": {"get": f"{fake.url}/v1/files/{fid}/download"},
                    },
                )

            def _create(self, raw: bytes) -> None:
                fault = fake._fault("create")
                now = time.monotonic()
                with fake.lock:
                    while fake.create_times and now - fake.create_times[0] > 60:
                        fake.create_times.popleft()
                    limited = len(fake.create_times) >= fake.creates_per_minute
                    if not limited and fault != "429":
                        fake.create_times.append(now)
                if fault == "429" or limited:
                    self._send(
                        429,
                        {"detail": "Request was throttled. Your rate limit resets in ~1s.", "status": 429},
                        {"Retry-After": "1"},
                    )
                    return
                if fault == "reset_before":
                    self._drop()
                    return
                if fault == "500_before":
                    self._send(500, {"detail": "Internal server error"})
                    return
                body = json.loads(raw)
                request_schema = (
                    "schemas_version_prediction_request"
                    if self.path == "/v1/predictions"
                    else ("schemas_prediction_request")
                )
                fake.schema_errors.extend(openapi.problems(request_schema, body))
                run_fault = (
                    fault if fault in ("never_finish", "fail", "abort", "cancel_by_server", "short_output") else None
                )
                prediction = fake._create(body, self.headers, run_fault)
                if fault == "500_after":
                    self._send(502, b"<html>Bad gateway</html>")
                    return
                if fault == "reset_after":
                    self._drop()
                    return
                if fault == "malformed_after":
                    self._send(201, b'{"id": "' + prediction["id"].encode() + b'", "status": ')
                    return
                prefer = self.headers.get("Prefer", "")
                if prefer.startswith("wait"):
                    seconds = float(prefer.split("=", 1)[1]) if "=" in prefer else 60.0
                    fake.done[prediction["id"]].wait(min(seconds, fake.max_wait))
                with fake.lock:
                    snapshot = dict(prediction)
                self._send(201, snapshot, schema="schemas_prediction_response")

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                if parts.path.startswith("/v1/files/") and parts.path.endswith("/download"):
                    self._send(200, fake.files[parts.path.split("/")[-2]])
                    return
                if not self._authorised(b""):
                    return
                if parts.path == "/v1/predictions":
                    self._list(parse_qs(parts.query))
                    return
                if parts.path.startswith("/v1/models/"):
                    segments = parts.path.split("/")[3:]
                    model = fake.models.get("/".join(segments[:2]))
                    if model is None:
                        self._send(404, {"title": "Not found", "detail": "Model not found", "status": 404})
                    elif segments[2:] == ["versions"]:
                        self._send(
                            200,
                            {"next": None, "previous": None, "results": [model["latest_version"]]},
                            schema="schemas_paginated_version_response",
                        )
                    else:
                        self._send(200, model, schema="schemas_model_response")
                    return
                if parts.path.startswith("/v1/predictions/"):
                    fault = fake._fault("get")
                    if fault == "drop":
                        self._drop()
                        return
                    if fault == "500":
                        self._send(503, {"detail": "Service unavailable"})
                        return
                    p = fake.predictions.get(parts.path.rsplit("/", 1)[-1])
                    if p is None:
                        self._send(404, {"detail": "Not found"})
                    else:
                        with fake.lock:
                            snapshot = dict(p)
                        self._send(200, snapshot, schema="schemas_prediction_response")
                    return
                self._send(404, {"detail": "Not found"})

            def _list(self, query: dict[str, list[str]]) -> None:
                if fake._fault("list") == "500":
                    self._send(500, {"detail": "Internal server error"})
                    return
                after = query.get("created_after", [""])[0]
                cursor = int(query.get("cursor", ["0"])[0])
                with fake.lock:
                    newest_first = sorted(fake.predictions.values(), key=lambda p: p["created_at"], reverse=True)
                    matching = [dict(p) for p in newest_first if p["created_at"] >= after]
                page = matching[cursor : cursor + fake.page_size]
                following = None
                if cursor + fake.page_size < len(matching):
                    following = f"{fake.url}/v1/predictions?created_after={after}&cursor={cursor + fake.page_size}"
                self._send(
                    200,
                    {"next": following, "previous": None, "results": page},
                    schema="schemas_paginated_prediction_response",
                )

        return Handler
