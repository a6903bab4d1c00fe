"""A page of Replicate's prediction list, parsed as it streams in, keeping only what reconciling a
create reads: each prediction's id, URLs and ``input.request_id``, and the page's ``next``.

``ListPageReader`` is a ``reader`` for ``ReplicateBackend._request``; its ``result()`` is what
``resp.json(object_pairs_hook=slim_list_object)`` gives for the whole body, without ever holding it.
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Iterator
from typing import Any, NoReturn

import requests
from requests.utils import guess_json_utf

from digitcloud.sessions import iter_body, read_body

# The keys reconciling reads; the rest of each object (inputs, outputs: megabytes a page) is dropped.
_KEYS = frozenset({"results", "next", "id", "urls", "get", "cancel", "input", "request_id"})


def slim_list_object(pairs: list[tuple[str, Any]]) -> dict[str, Any] | None:
    """json's object_pairs_hook for a page of the prediction list: each object keeps only the keys
    reconciling reads (``results``, ``next``, ``id``, ``urls``, ``input.request_id``), and one with
    none of them becomes ``None``. Inputs and outputs (megabytes a page) are dropped as they are
    parsed, not held until the whole page is."""
    kept = {key: value for key, value in pairs if key in _KEYS}
    return kept or None


class ListPageReader:
    """Reads a page of the prediction list as it arrives (a ``reader`` for ``_request``), so that no
    block the size of the page is ever allocated.

    Why: a page echoes up to 100 predictions, inputs and outputs included (megabytes). Read whole,
    it was held twice (the bytes and the decoded text), and freeing blocks that large raises glibc's
    dynamic mmap threshold (to 32 MB at most), after which every block up to that size comes from the
    heap and stays there: a soak with faults grew 27-49 MB in 100,000 digits, flat without faults,
    where no page is read. Here the body goes from the socket, 64 KB at a time, through an
    incremental decoder into ``_ListPageParser``, which holds about one prediction of ``results`` at
    a time. The limits are ``read_body``'s (size, wall clock) and so are its exceptions.

    ``result()`` is then what ``resp.json(object_pairs_hook=slim_list_object)`` gave for the whole
    body (through ``read_json``'s error mapping), or raises what it raised (``ValueError``:
    ``json.JSONDecodeError`` when malformed or cut short). Any answer but a 200 is read whole by
    ``read_body`` (its detail and ``Retry-After`` are used)."""

    def __init__(self) -> None:
        self.size = 0  # bytes read
        self._page: Any = None
        self._error: ValueError | None = None

    def __call__(self, resp: requests.Response, max_bytes: int, until: float) -> None:
        if resp.status_code != 200:
            read_body(resp, max_bytes, until)
            self.size = len(resp.content)
            return
        resp._content = b""  # the page is never kept as bytes
        try:
            self._page = _ListPageParser(_decoded(self._chunks(resp, max_bytes, until), resp.encoding)).parse()
        except ValueError as exc:
            self._error = exc  # not read further; the connection is closed, not reused
        else:
            resp._content_consumed = True  # read to its end: the connection goes back to the pool

    def result(self) -> Any:
        """The page, or raises what parsing it raised."""
        if self._error is None:
            return self._page
        try:
            raise self._error
        finally:
            self._error = None  # else error -> traceback -> this frame -> self -> error: a cycle only gc frees

    def _chunks(self, resp: requests.Response, max_bytes: int, until: float) -> Iterator[bytes]:
        """The body as it arrives, with ``read_body``'s limits and exceptions, counted."""
        for chunk in iter_body(resp, max_bytes, until):
            self.size += len(chunk)
            yield chunk


def _decoded(chunks: Iterator[bytes], encoding: str | None) -> Iterator[str]:
    """``chunks`` as text, decoded as requests' ``Response.json()`` decodes a body: in the declared
    charset (``application/json`` is UTF-8), else in the UTF-8/16/32 that its first four bytes show;
    undecodable bytes become U+FFFD, as in ``Response.text``."""
    head = b""
    if encoding is None:
        for chunk in chunks:
            head += chunk
            if len(head) >= 4:
                break
        encoding = guess_json_utf(head) or "utf-8"
    try:
        decoder = codecs.getincrementaldecoder(encoding)(errors="replace")
    except LookupError:  # an unknown charset: requests falls back to UTF-8
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    yield decoder.decode(head)
    for chunk in chunks:
        yield decoder.decode(chunk)
    yield decoder.decode(b"", final=True)


_JSON_SPACE = re.compile(r"[ \t\n\r]*")  # JSON's whitespace, as json.decoder.WHITESPACE
_NUMBER_TAIL = re.compile(r"[0-9.eE+-]*")  # what may go on a number


class _ListPageParser:
    """JSON text arriving in pieces, parsed as ``json.loads(text, object_pairs_hook=slim_list_object)``
    parses it whole (same value, and ``ValueError`` for every text it refuses), while holding about
    one value of the top-level object's ``results`` array at a time.

    The top-level object and that array are walked here; every other value (a key, ``next``, one
    prediction) is parsed by the stdlib's ``JSONDecoder.raw_decode`` once the buffer holds all of
    it. A value that does not parse yet may be cut short by the buffer: the buffer then grows to
    twice its unparsed length and it is tried again (so a value of n characters costs O(n) in all),
    and only at the end of the text is the error final. The buffer drops what was parsed."""

    def __init__(self, pieces: Iterator[str]) -> None:
        self._pieces = pieces
        self._buf = ""
        self._pos = 0  # self._buf[:self._pos] is parsed
        self._ended = False  # no pieces left
        self._decoder = json.JSONDecoder(object_pairs_hook=slim_list_object)

    def parse(self) -> Any:
        if self._peek() != "{":
            value = self._value()  # not an object: parsed whole, and the caller refuses it
        else:
            self._pos += 1
            pairs: list[tuple[str, Any]] = []
            if self._peek() == "}":
                self._pos += 1
            else:
                while True:
                    if self._peek() != '"':
                        self._fail("Expecting property name enclosed in double quotes")
                    key = self._value()
                    if self._peek() != ":":
                        self._fail("Expecting ':' delimiter")
                    self._pos += 1
                    pairs.append((key, self._results() if key == "results" and self._peek() == "[" else self._value()))
                    if self._closes("}"):
                        break
            value = slim_list_object(pairs)
        if self._peek():
            self._fail("Extra data")
        return value

    def _results(self) -> list[Any]:
        """The array at the parse position, one element parsed at a time."""
        self._pos += 1
        items: list[Any] = []
        if self._peek() == "]":
            self._pos += 1
            return items
        while True:
            items.append(self._value())
            if self._closes("]"):
                return items

    def _closes(self, bracket: str) -> bool:
        """Past a ``,`` (False) or ``bracket`` (True); anything else is malformed."""
        char = self._peek()
        if char not in (",", bracket):
            self._fail("Expecting ',' delimiter")
        self._pos += 1
        return char == bracket

    def _value(self) -> Any:
        """The JSON value at the parse position (after whitespace), read on until the buffer holds it."""
        self._peek()
        while True:
            try:
                value, end = self._decoder.raw_decode(self._buf, self._pos)
            except json.JSONDecodeError:
                if self._ended:
                    raise
            except RecursionError:
                raise ValueError("the JSON body is nested too deeply to decode") from None
            else:  # whole once followed by what cannot go on a number: "-1" may be "-1.5e3" cut short
                if self._ended or _NUMBER_TAIL.match(self._buf, end).end() < len(self._buf):  # type: ignore[union-attr]
                    self._pos = end
                    return value
            self._read(2 * (len(self._buf) - self._pos) + 1)

    def _peek(self) -> str:
        """The character at the parse position after whitespace, or ``""`` at the end of the text."""
        while True:
            self._pos = _JSON_SPACE.match(self._buf, self._pos).end()  # type: ignore[union-attr]
            if self._pos < len(self._buf):
                return self._buf[self._pos]
            if self._ended:
                return ""
            self._read(1)

    def _read(self, want: int) -> None:
        """Take pieces until ``want`` characters are unparsed or the text ends; drop the parsed part."""
        pending = [self._buf[self._pos :]]
        have = len(pending[0])
        for piece in self._pieces:
            pending.append(piece)
            have += len(piece)
            if have >= want:
                break
        else:
            self._ended = True
        self._buf, self._pos = "".join(pending), 0

    def _fail(self, message: str) -> NoReturn:
        raise json.JSONDecodeError(message, self._buf, self._pos)
