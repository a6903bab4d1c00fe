"""Reading a page of the prediction list as it arrives (``ListPageReader``): the same answer as
``resp.json(object_pairs_hook=slim_list_object)`` on the whole body, however the body is split, the same
errors, and the same limits, without ever holding the page."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterable
from typing import Any

import pytest
import requests
import responses
import urllib3.exceptions
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from requests.structures import CaseInsensitiveDict
from requests.utils import get_encoding_from_headers

from digitcloud import replicate
from digitcloud.errors import CloudUnavailableError
from digitcloud.list_page import ListPageReader, slim_list_object
from digitcloud.replicate import ReplicateBackend, Secret, Target
from digitcloud.retrying import Deadline, RetryPolicy
from digitcloud.sessions import ResponseTooLargeError, ResponseTooSlowError

BASE = "https://api.example.test"


class _Raw:
    """``resp.raw`` handing out the given chunks, one a read."""

    def __init__(self, chunks: Iterable[bytes], fail: Exception | None = None) -> None:
        self.chunks = [chunk for chunk in chunks if chunk]  # b"" is the end of the body
        self.fail = fail
        self.reads = 0
        self.closed = False

    def read1(self, amt: int, decode_content: bool = True) -> bytes:
        self.reads += 1
        if self.chunks:
            return self.chunks.pop(0)
        if self.fail is not None:
            raise self.fail
        return b""

    def close(self) -> None:
        self.closed = True

    def release_conn(self) -> None:
        pass


def _response(chunks: Iterable[bytes], content_type: str | None = "application/json", **headers: str) -> Any:
    resp = requests.Response()
    resp.status_code = 200
    resp.headers = CaseInsensitiveDict(headers)
    if content_type is not None:
        resp.headers["Content-Type"] = content_type
    resp.encoding = get_encoding_from_headers(resp.headers)
    resp.raw = _Raw(chunks)
    return resp


def streamed(chunks: Iterable[bytes], content_type: str | None = "application/json") -> tuple[str, str]:
    """(outcome, repr of the page or name of the error) reading ``chunks`` as they arrive."""
    reader = ListPageReader()
    reader(_response(chunks, content_type), 2**40, time.monotonic() + 60)
    try:
        return "page", repr(reader.result())
    except ValueError as exc:
        return "error", type(exc).__name__


def whole(body: bytes, content_type: str | None = "application/json") -> tuple[str, str]:
    """The same, as the client read a page before: the body whole, then requests' ``json()`` with
    ``slim_list_object`` (too deep a nesting was a plain ``ValueError``, as ``read_json`` raises)."""
    resp = _response([], content_type)
    resp._content = body
    try:
        return "page", repr(resp.json(object_pairs_hook=slim_list_object))
    except RecursionError:
        return "error", "ValueError"
    except ValueError as exc:
        return "error", type(exc).__name__


def splits(body: bytes) -> Iterable[list[bytes]]:
    """``body`` in two at every byte boundary, then in pieces of 1, 2, 3 and 7 bytes."""
    for k in range(len(body) + 1):
        yield [body[:k], body[k:]]
    for n in (1, 2, 3, 7):
        yield [body[i : i + n] for i in range(0, len(body), n)]


def page(*results: Any, **extra: Any) -> bytes:
    return json.dumps({"previous": None, "next": None, "results": list(results), **extra}).encode()


def prediction(i: int, request_id: str = "") -> dict[str, Any]:
    return {
        "id": f"p{i}",
        "status": "succeeded",
        "input": {"digits": "data:application/octet-stream;base64," + "QUJD" * 50, "request_id": request_id or f"r{i}"},
        "output": {"predictions": [{"digit": 1, "confidence": 0.5, "probabilities": [0.05, -1.5e-3, 1e2, 7]}] * 3},
        "logs": 'é ✓ 😀 \u2028 \\ " \t',
        "metrics": {"predict_time": 0.012, "huge": 12345678901234567890, "neg": -0, "exp": 2.5e-300},
        "urls": {"get": f"{BASE}/v1/predictions/p{i}", "cancel": f"{BASE}/v1/predictions/p{i}/cancel", "web": "x"},
    }


PAGES = [
    page(prediction(0), prediction(1), prediction(2)),
    page(),
    b'{"results": [{"id": "a", "input": {"request_id": "r"}}], "next": "https://api.example.test/v1/predictions?c=2"}',
    b' \t\r\n{ "results" : [ 1 , -2.5E+3 , 0.0 , true , false , null , "s" , [ ] , { } , [[1], {"id": 2}] ] } \n',
    b'{"results": [{"id": "a"}], "results": [{"id": "b"}]}',  # the last of a repeated key wins, as json's
    b'{"results": 17, "next": [1, 2]}',
    b'{"results": {"id": "x"}}',
    b'{"other": {"deep": [1, 2, {"results": [3]}]}}',  # nothing kept: a page that is not one
    b'{"results": [NaN, Infinity, -Infinity]}',
    b'{"results": ["caf\xc3\xa9 \xe2\x9c\x93 \xf0\x9f\x98\x80", "\\u00e9\\ud83d\\ude00"]}',
    b'{"results": ["bad \xff\xfe bytes \xc3"]}',  # undecodable: U+FFFD, as Response.text
    b"[1, 2, 3]",
    b'"just a string"',
    b"-12.5e3",
    b"null",
    b"{}",
]

MALFORMED = [
    b"",
    b"   ",
    b"{",
    b"{,}",
    b'{"results" [1]}',
    b'{"results": [1 2]}',
    b'{"results": [1,]}',
    b'{"results": [1]]',
    b'{"results": [1]}}',
    b'{"results": [1]} trailing',
    b'{"results": [01]}',
    b'{"results": [1.]}',
    b'{"results": [-]}',
    b'{"results": [1e5x]}',
    b'{"results": [tru]}',
    b'{"results": ["unterminated]}',
    b'{"results": ["control \x01 char"]}',
    b'{"a": 1,}',
    b"{'results': []}",
    b"\xef\xbb\xbf{}",  # a UTF-8 BOM where application/json says UTF-8: refused, as json.loads refuses it
    b"<html>Bad gateway</html>",
]


@pytest.mark.parametrize("body", PAGES + MALFORMED, ids=range(len(PAGES + MALFORMED)))
def test_a_page_split_anywhere_reads_as_the_whole_body_did(body: bytes) -> None:
    expected = whole(body)
    assert expected[0] == ("page" if body in PAGES else "error")
    for chunks in splits(body):
        assert streamed(chunks) == expected, chunks


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-16-be", "utf-32"])
def test_without_a_declared_charset_the_encoding_is_read_from_the_first_bytes(encoding: str) -> None:
    body = page(prediction(0)).decode().encode(encoding)
    expected = whole(body, content_type=None)
    assert expected[0] == "page"
    for chunks in splits(body[:200]) if len(body) < 200 else ([body[:k], body[k:]] for k in range(0, 9)):
        assert streamed(chunks, content_type=None) == expected
    assert streamed([body[i : i + 3] for i in range(0, len(body), 3)], content_type=None) == expected


def test_a_page_cut_short_anywhere_is_malformed_as_before() -> None:
    body = page(prediction(0), prediction(1))
    for k in range(len(body)):
        cut = body[:k]
        assert whole(cut) == ("error", "JSONDecodeError")
        assert streamed([cut]) == ("error", "JSONDecodeError")
        assert streamed([cut[i : i + 5] for i in range(0, k, 5)]) == ("error", "JSONDecodeError")


def test_nesting_too_deep_is_a_value_error_as_before() -> None:
    body = b'{"results": [' + b"[" * 100_000 + b"]" * 100_000 + b"]}"
    assert whole(body) == ("error", "ValueError")
    assert streamed([body[i : i + 4096] for i in range(0, len(body), 4096)]) == ("error", "ValueError")


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.dictionaries(
            st.sampled_from(["id", "urls", "get", "input", "request_id", "x", "results"]), inner, max_size=5
        )
    ),
    max_leaves=30,
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    results=st.lists(json_values, max_size=6),
    extra=st.dictionaries(st.sampled_from(["next", "previous", "other"]), json_values, max_size=3),
    indent=st.sampled_from([None, 0, 2]),
    cut=st.lists(st.integers(min_value=0, max_value=10_000), max_size=8),
)
def test_any_page_split_anywhere_reads_as_the_whole_body_did(
    results: list[Any], extra: dict[str, Any], indent: int | None, cut: list[int]
) -> None:
    body = json.dumps({**extra, "results": results}, indent=indent, ensure_ascii=False).encode()
    points = sorted({min(c, len(body)) for c in cut})
    chunks = [body[a:b] for a, b in zip([0, *points], [*points, len(body)], strict=True)]
    assert streamed(chunks) == whole(body)


@settings(max_examples=300, deadline=None)
@given(
    body=st.binary(max_size=200)
    | st.lists(st.sampled_from([b"{", b"}", b"[", b"]", b",", b":", b'"results"', b'"x"', b"1", b"-", b"e", b" "])).map(
        b"".join
    ),
    cut=st.lists(st.integers(min_value=0, max_value=300), max_size=6),
    content_type=st.sampled_from(["application/json", None]),
)
def test_any_bytes_split_anywhere_give_the_whole_bodys_page_or_error(
    body: bytes, cut: list[int], content_type: str | None
) -> None:
    # fuzzing the output parser: arbitrary bytes give a page or a ValueError (any other exception
    # escapes ``streamed`` and fails the test) ...
    points = sorted({min(c, len(body)) for c in cut})
    chunks = [body[a:b] for a, b in zip([0, *points], [*points, len(body)], strict=True)]
    outcome = streamed(chunks, content_type)
    # ... and the same as json gave for the whole body, except where no charset is declared and the
    # bytes are not UTF-8: requests then guessed one (b"\xf0" read as EBCDIC, i.e. the number 0),
    # the streamed reader decodes UTF-8 with U+FFFD (a list page is UTF-8 JSON either way)
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        if content_type is None:
            return
    assert outcome == whole(body, content_type)


# ----------------------------------------------------------------------------- limits and transport


def read(resp: Any, max_bytes: int = 2**40, seconds: float = 60.0) -> ListPageReader:
    reader = ListPageReader()
    reader(resp, max_bytes, time.monotonic() + seconds)
    return reader


def test_a_page_over_the_byte_limit_is_refused_while_it_streams() -> None:
    body = page(*(prediction(i) for i in range(20)))
    chunks = [body[i : i + 1000] for i in range(0, len(body), 1000)]
    resp = _response(chunks)
    with pytest.raises(ResponseTooLargeError):
        read(resp, max_bytes=5000)
    assert resp.raw.reads == 6  # not read further than the chunk that passed the limit
    assert read(_response(chunks), max_bytes=len(body)).result()["results"][19]["id"] == "p19"


def test_a_declared_length_over_the_limit_is_refused_before_reading() -> None:
    resp = _response([page()], **{"Content-Length": "999999"})
    with pytest.raises(ResponseTooLargeError):
        read(resp, max_bytes=1000)
    assert resp.raw.reads == 0


def test_a_page_still_arriving_at_the_deadline_is_too_slow() -> None:
    with pytest.raises(ResponseTooSlowError):
        read(_response([b'{"results": [', b"1]}"]), seconds=-1)


def test_a_connection_lost_mid_page_is_a_connection_error_not_a_malformed_page() -> None:
    resp = _response([b'{"results": [{"id": "a"}, '])
    resp.raw.fail = urllib3.exceptions.ProtocolError("Connection broken: IncompleteRead")
    with pytest.raises(requests.ConnectionError, match="reading the response failed"):
        read(resp)


def test_the_connection_is_reused_only_after_a_page_read_to_its_end() -> None:
    good = _response([page(prediction(0))])
    assert read(good).result()["results"][0]["id"] == "p0"
    good.close()
    assert not good.raw.closed  # read to its end: back to the pool
    bad = _response([b'{"results": [1 2', b"]}"])
    reader = read(bad)
    bad.close()
    assert bad.raw.closed  # left unread after the error: closed, never handed to another request
    with pytest.raises(json.JSONDecodeError):
        reader.result()
    assert reader.result() is None  # the error is handed over once, and not kept (no reference cycle)


def backend() -> ReplicateBackend:
    b = ReplicateBackend(
        Target.parse(model="o/n"),
        Secret("r8_listing_token"),
        base_url=BASE,
        timeout=30,
        policy=RetryPolicy(sleep=lambda s: None, rng=random.Random(0)),
    )
    b._server_ahead = 0.0  # the server's clock is known: no account probe
    return b


@responses.activate
def test_a_malformed_page_raises_the_same_named_error_and_never_reads_as_empty() -> None:
    responses.add(
        responses.GET, f"{BASE}/v1/predictions", body=b'{"results": [{"id": "a"', content_type="application/json"
    )
    with pytest.raises(CloudUnavailableError, match=r"did not answer a GET \(JSONDecodeError\)"):
        backend()._find("digitcloud-ours", time.time(), Deadline(30))


@responses.activate
def test_pages_over_the_listing_budget_raise_instead_of_reading_as_empty(monkeypatch: pytest.MonkeyPatch) -> None:
    # given a first page with a next, and a second page that passes what is left of the budget
    first = page(prediction(0), next=f"{BASE}/v1/predictions?cursor=2")
    second = page(*(prediction(i) for i in range(1, 6)))
    monkeypatch.setattr(replicate, "LIST_BODY_LIMIT", len(first) + len(second) - 1)
    responses.add_callback(
        responses.GET,
        f"{BASE}/v1/predictions",
        callback=lambda request: (200, {}, second if "cursor=2" in str(request.url) else first),
        content_type="application/json",
    )
    # then looking for a prediction on neither raises (it may be on what was not read)
    with pytest.raises(CloudUnavailableError, match="ResponseTooLargeError"):
        backend()._find("digitcloud-ours", time.time(), Deadline(30))
    # and with a byte more of budget both pages are read, and it is known not to exist
    monkeypatch.setattr(replicate, "LIST_BODY_LIMIT", len(first) + len(second))
    assert backend()._find("digitcloud-ours", time.time(), Deadline(30)) is None
    # and one on the second page is found there
    assert backend()._find("r4", time.time(), Deadline(30)) == {
        "id": "p4",
        "urls": {"get": f"{BASE}/v1/predictions/p4", "cancel": f"{BASE}/v1/predictions/p4/cancel"},
        "status": None,
    }
