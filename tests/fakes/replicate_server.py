"""Replicate's HTTP API on loopback, with faults on cue and a ledger of everything it was asked.

Speaks what digitcloud uses: predictions (create via version, model or deployment; get; list with
``created_after`` and pagination; cancel), ``Prefer: wait``, ``Cancel-After``, files (multipart
upload, delete), ``GET /v1/account`` (the breaker's probe), and a 600/min create rate limit
answered with 429 + ``Retry-After``.

Faults (``inject(endpoint, fault)``, one per call, ``"ok"`` for none; ``fault:arg`` passes an argument):

- create: ``429[:retry-after|none]``, ``500_before``, ``503_before[:retry-after]``, ``reset_before``
  (nothing created); ``500_after`` (a 502 page), ``503_after[:retry-after]``, ``reset_after``,
  ``malformed_after``, ``deep_after`` (JSON nested 100,000 deep), ``hang_after`` (answers after
  ``hang_seconds``), ``stall_body`` (part of the body, ``stall_seconds`` of silence, then a drop),
  ``trickle`` (one byte per ``trickle_interval``), ``huge_body[:declared]`` (100 MB of junk) (all created);
  ``never_finish``, ``fail``, ``abort``,
  ``cancel_by_server``, ``short_output``, ``late_success`` (runs until cancelled, then the cancel
  answers ``succeeded``), ``unknown_status:<s>`` (reported as ``<s>`` for ``override_polls`` reads);
  ``400``, ``404``, ``422`` (refused).
- get (a poll): ``drop``, ``500``, ``deep`` (JSON nested 100,000 deep), ``stall_body``, ``trickle``,
  ``huge_body[:declared]``.
- list: ``500``. files (an upload): ``500`` (nothing stored), ``500_after``, ``drop_after`` (stored, counted in
  ``unanswered_uploads``, then a 500 or a dropped connection). delete_file: ``500``, ``drop``. cancel: ``500``,
  ``429`` (with ``Retry-After: 1``), ``drop``.
- ``outage = 503`` answers every API request with that status until set back to ``None``.
Predictions run ``model_fn(digits) -> probabilities`` in a background thread; the output is built
with ``digitcloud.model.prediction_entries``, exactly as predict.py builds it.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import email.parser
import hashlib
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

from digitcloud import digits_file
from digitcloud.model import prediction_entries
from tests.fakes import openapi

TERMINAL = ("succeeded", "failed", "canceled", "aborted")
TRANSPORT_FAULTS = ("stall_body", "trickle", "huge_body")
DEEP_JSON = b"[" * 100_000 + b"]" * 100_000  # valid JSON that Python's json module cannot decode (RecursionError)


def oracle(digits: np.ndarray) -> np.ndarray:
    """A fake model whose answer is known: digit = (sum of pixels) mod 10, with probability 0.91."""
    labels = digits.reshape(len(digits), -1).sum(axis=1) % 10
    probs = np.full((len(digits), 10), 0.01, dtype=np.float32)
    probs[np.arange(len(digits)), labels] = 0.91
    return probs


def _now(later: dt.timedelta = dt.timedelta(0)) -> str:
    return (dt.datetime.now(dt.timezone.utc) + later).isoformat().replace("+00:00", "Z")


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
        self.files: dict[str, bytes] = {}  # uploads not deleted yet
        self.file_info: dict[str, dict[str, Any]] = {}  # every upload's file object, deleted ones included
        self.deleted_files: list[str] = []
        self.faults: dict[str, deque[str]] = {}
        self.requests: list[dict[str, Any]] = []  # method, path, headers, body: for leak checks
        self.cancels: list[str] = []
        self.unanswered_uploads = 0  # files stored whose upload was answered with a failure
        self.accepted_creates: list[dict[str, Any]] = []  # headers of every create that made a prediction
        self.create_times: deque[float] = deque()
        self.models: dict[str, dict[str, Any]] = {}
        self.schema_errors: list[str] = []  # request and response bodies that break Replicate's spec
        self.revealed: set[str] = set()  # prediction ids sent to the client in a complete, readable answer
        self.revealed_directly: set[str] = set()  # ... in an answer about that prediction (not a list page)
        self.outage: int | None = None
        self.hang_seconds = 3.0
        self.stall_seconds = 3.0
        self.trickle_interval = 0.2
        self.huge_bytes = 100 * 2**20
        self.override_polls = 3
        self.status_override: dict[str, list[Any]] = {}  # id -> [status to report, reads left]
        self.late_success: set[str] = set()
        self.remove_data = False  # drop a prediction's digits and output once its end was delivered
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
        self,
        model: str,
        version: str,
        inputs: tuple[str, ...] = ("image", "digits", "request_id"),
        required: tuple[str, ...] = (),
    ) -> None:
        """Register ``model``'s latest version, as ``cog push`` would, with an OpenAPI schema of ``inputs``
        (``required`` listed as the schema's required inputs)."""
        owner, name = model.split("/")
        schema = {
            "openapi": "3.0.2",
            "components": {
                "schemas": {
                    "Input": {
                        "type": "object",
                        "properties": {n: {"type": "string", "x-order": i} for i, n in enumerate(inputs)},
                        **({"required": list(required)} if required else {}),
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
        """Queue ``fault`` for the next ``times`` calls of ``endpoint`` ("create", "get", "list", "files",
        "delete_file")."""
        self.faults.setdefault(endpoint, deque()).extend([fault] * times)

    def _fault(self, endpoint: str) -> str | None:
        with self.lock:
            queue = self.faults.get(endpoint)
            return queue.popleft() if queue else None

    def cancel_attempts(self, pid: str) -> int:
        return sum(1 for r in self.requests if r["method"] == "POST" and r["path"].endswith(f"/{pid}/cancel"))

    def predictions_per_request_id(self) -> Counter[str]:
        return Counter(p["input"].get("request_id") for p in self.predictions.values())

    def unfinished(self) -> list[str]:
        return [pid for pid, p in self.predictions.items() if p["status"] not in TERMINAL]

    def settle(self, seconds: float = 2.0) -> list[str]:
        """``unfinished()`` once predictions that end by themselves (within ``seconds``) have ended."""
        end = time.monotonic() + seconds
        while self.unfinished() and time.monotonic() < end:
            time.sleep(0.01)
        return self.unfinished()

    def snapshot(self, pid: str) -> dict[str, Any]:
        """The prediction as an answer shows it (``unknown_status`` overrides its status for a while)."""
        with self.lock:
            snap = dict(self.predictions[pid])
            override = self.status_override.get(pid)
            if override and override[1] > 0:
                override[1] -= 1
                snap["status"] = override[0]
        return snap

    # ------------------------------------------------------------------ running predictions

    def _digits(self, value: str) -> np.ndarray:
        if value.startswith("data:"):
            blob = base64.b64decode(value.split(",", 1)[1])
        else:
            blob = self.files[value.rstrip("/").split("/")[-1]]
        with tempfile.TemporaryDirectory() as tmp:
            path = f"{tmp}/digits.npz"
            with open(path, "wb") as f:
                f.write(blob)
            return digits_file.read_digits_file(path)

    def _run(self, pid: str, fault: str | None, deadline: float | None) -> None:
        p = self.predictions[pid]
        with self.lock:
            p["status"] = "processing"
            p["started_at"] = _now()
        end = time.monotonic() + self.run_seconds
        while fault in ("never_finish", "late_success") or time.monotonic() < end:
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
                self._succeed(p, short=fault == "short_output")
            p["completed_at"] = _now()
        self.done[pid].set()

    def _succeed(self, p: dict[str, Any], short: bool = False) -> None:
        try:
            probs = self.model_fn(self._digits(p["input"]["digits"]))
            output: Any = {
                "predictions": prediction_entries(probs),
                "weights_sha256": "f" * 64,
                "request_id": p["input"].get("request_id"),
            }
            if short:
                output["predictions"] = output["predictions"][:-1]
            p.update(status="succeeded", output=output)
        except Exception as exc:
            p.update(status="failed", error=f"{type(exc).__name__}: {exc}")

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
                if schema is not None and not (isinstance(body, dict) and body.get("id") in fake.status_override):
                    fake.schema_errors.extend(openapi.problems(schema, body))
                if fake.latency:
                    time.sleep(fake.latency)
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for k, v in (headers or {}).items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(data)
                    self.wfile.flush()
                except OSError:  # the client gave up on this answer
                    self.close_connection = True
                    return
                if isinstance(body, dict):
                    with fake.lock:
                        if "status" in body and "id" in body:
                            fake.revealed.add(body["id"])
                            fake.revealed_directly.add(body["id"])
                            p = fake.predictions.get(body["id"])
                            if fake.remove_data and p is not None and body["status"] in TERMINAL:
                                # as Replicate does after an hour: keeps long runs' ledger small
                                p.update(output=None, data_removed=True, input={"request_id": p["input"]["request_id"]})
                        for p in body.get("results") or []:
                            fake.revealed.add(p["id"])

            def _drop(self) -> None:
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self.connection.shutdown(2)

            def _send_faulty(self, status: int, body: dict[str, Any], fault: str, arg: str) -> bool:
                """Answer with a transport fault instead of ``body``; False when ``fault`` is not one."""
                data = json.dumps(body).encode()
                self.close_connection = True
                try:
                    if fault == "stall_body":
                        self._head(status, len(data))
                        self.wfile.write(data[: len(data) // 3])
                        self.wfile.flush()
                        time.sleep(fake.stall_seconds)
                    elif fault == "trickle":
                        self._head(status, len(data))
                        for i in range(len(data)):
                            self.wfile.write(data[i : i + 1])
                            self.wfile.flush()
                            time.sleep(fake.trickle_interval)
                    elif fault == "huge_body":
                        self._head(status, fake.huge_bytes if arg == "declared" else None)
                        junk = b"x" * 2**20
                        for _ in range(fake.huge_bytes // len(junk)):
                            self.wfile.write(junk)
                    else:
                        self.close_connection = False
                        return False
                except OSError:
                    pass  # the client hung up, as it should
                self._drop()
                return True

            def _head(self, status: int, length: int | None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                if length is not None:
                    self.send_header("Content-Length", str(length))
                self.send_header("Connection", "close")
                self.end_headers()

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
                if fake.outage:
                    self._send(fake.outage, {"detail": "Service unavailable"})
                    return
                if path.endswith("/cancel"):
                    pid = path.split("/")[-2]
                    fault = fake._fault("cancel")
                    if fault == "drop":
                        self._drop()
                        return
                    if fault == "500":
                        self._send(500, {"detail": "Internal server error"})
                        return
                    if fault == "429":
                        self._send(429, {"detail": "Request was throttled.", "status": 429}, {"Retry-After": "1"})
                        return
                    with fake.lock:
                        fake.cancels.append(pid)
                        p = fake.predictions.get(pid)
                        if p is not None and pid in fake.late_success and p["status"] not in TERMINAL:
                            fake._succeed(p)  # it finished just as the cancel arrived
                            p["completed_at"] = _now()
                        elif p is not None and p["status"] not in TERMINAL:
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
                content: bytes | None = None
                for part in message.walk():  # the multipart message itself, then its parts
                    if part.get_param("name", header="content-disposition") == "content":
                        payload = part.get_payload(decode=True)
                        content = payload if isinstance(payload, bytes) else None
                        break
                if content is None:
                    self._send(400, {"detail": "content is required"})
                    return
                fid = uuid.uuid4().hex[:12]
                with fake.lock:
                    fake.files[fid] = content
                    fake.file_info[fid] = {
                        "id": fid,
                        "size": len(content),
                        "content_type": "application/octet-stream",
                        "checksums": {"sha256": hashlib.sha256(content).hexdigest()},
                        "metadata": {},
                        "created_at": _now(),
                        "expires_at": _now(dt.timedelta(days=1)),
                        "urls": {"get": f"{fake.url}/v1/files/{fid}"},
                    }
                    if fault in ("500_after", "drop_after"):
                        fake.unanswered_uploads += 1  # stored, but the client never learns its id
                if fault == "500_after":
                    self._send(500, {"detail": "Internal server error"})
                elif fault == "drop_after":
                    self._drop()
                else:
                    self._send(201, fake.file_info[fid], schema="schemas_file_response")

            def _create(self, raw: bytes) -> None:
                fault, _, arg = (fake._fault("create") or "").partition(":")
                now = time.monotonic()
                with fake.lock:
                    while fake.create_times and now - fake.create_times[0] > 60:
                        fake.create_times.popleft()
                    limited = len(fake.create_times) >= fake.creates_per_minute
                    if not limited and fault != "429":
                        fake.create_times.append(now)
                if fault == "429" or limited:
                    retry_after = arg or "1"
                    self._send(
                        429,
                        {"detail": "Request was throttled. Your rate limit resets in ~1s.", "status": 429},
                        {} if retry_after == "none" else {"Retry-After": retry_after},
                    )
                    return
                if fault == "reset_before":
                    self._drop()
                    return
                if fault == "500_before":
                    self._send(500, {"detail": "Internal server error"})
                    return
                if fault == "503_before":
                    self._send(503, {"detail": "Service unavailable"}, {"Retry-After": arg} if arg else {})
                    return
                if fault in ("400", "404", "422"):
                    title = {"400": "Bad request", "404": "Not found", "422": "Input validation failed"}[fault]
                    detail = "Model not found" if fault == "404" else "- input.digits: cannot read the batch file"
                    self._send(int(fault), {"title": title, "detail": detail, "status": int(fault)})
                    return
                body = json.loads(raw)
                request_schema = (
                    "schemas_version_prediction_request"
                    if self.path == "/v1/predictions"
                    else ("schemas_prediction_request")
                )
                fake.schema_errors.extend(openapi.problems(request_schema, body))
                run_fault = (
                    fault
                    if fault in ("never_finish", "fail", "abort", "cancel_by_server", "short_output", "late_success")
                    else None
                )
                prediction = fake._create(body, self.headers, run_fault)
                pid = prediction["id"]
                if fault == "late_success":
                    fake.late_success.add(pid)
                if fault == "unknown_status":
                    fake.status_override[pid] = [arg, fake.override_polls]
                if fault == "500_after":
                    self._send(502, b"<html>Bad gateway</html>")
                    return
                if fault == "503_after":
                    self._send(503, {"detail": "Service unavailable"}, {"Retry-After": arg} if arg else {})
                    return
                if fault == "hang_after":
                    time.sleep(fake.hang_seconds)  # past the client's read timeout: it gave up
                if fault in TRANSPORT_FAULTS and self._send_faulty(201, fake.snapshot(pid), fault, arg):
                    return
                if fault == "reset_after":
                    self._drop()
                    return
                if fault == "malformed_after":
                    self._send(201, b'{"id": "' + prediction["id"].encode() + b'", "status": ')
                    return
                if fault == "deep_after":
                    self._send(201, DEEP_JSON)
                    return
                prefer = self.headers.get("Prefer", "")
                if prefer.startswith("wait"):
                    seconds = float(prefer.split("=", 1)[1]) if "=" in prefer else 60.0
                    fake.done[prediction["id"]].wait(min(seconds, fake.max_wait))
                self._send(201, fake.snapshot(pid), schema="schemas_prediction_response")

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                if not self._authorised(b""):
                    return
                if fake.outage:
                    self._send(fake.outage, {"detail": "Service unavailable"})
                    return
                if parts.path == "/v1/account":
                    self._send(200, {"type": "user", "username": "digitcloud-tests", "name": "Tests"})
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
                    fault, _, arg = (fake._fault("get") or "").partition(":")
                    if fault == "drop":
                        self._drop()
                        return
                    if fault == "500":
                        self._send(503, {"detail": "Service unavailable"})
                        return
                    if fault == "deep":
                        self._send(200, DEEP_JSON)
                        return
                    pid = parts.path.rsplit("/", 1)[-1]
                    if pid not in fake.predictions:
                        self._send(404, {"detail": "Not found"})
                    elif not (fault in TRANSPORT_FAULTS and self._send_faulty(200, fake.snapshot(pid), fault, arg)):
                        self._send(200, fake.snapshot(pid), schema="schemas_prediction_response")
                    return
                self._send(404, {"detail": "Not found"})

            def do_DELETE(self) -> None:
                path = urlsplit(self.path).path
                if not self._authorised(b""):
                    return
                if fake.outage:
                    self._send(fake.outage, {"detail": "Service unavailable"})
                    return
                if not path.startswith("/v1/files/"):
                    self._send(404, {"detail": "Not found"})
                    return
                fault = fake._fault("delete_file")
                if fault == "drop":
                    self._drop()
                    return
                if fault == "500":
                    self._send(500, {"detail": "Internal server error"})
                    return
                fid = path.split("/")[3]
                with fake.lock:
                    found = fake.files.pop(fid, None) is not None
                    if found:
                        fake.deleted_files.append(fid)
                if found:
                    self._send(204, b"")
                else:
                    self._send(404, {"detail": "File not found"})

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
