from __future__ import annotations

import pytest

from digitcloud.batching import chunk


def test_chunks_keep_order_and_cover_everything() -> None:
    assert list(chunk(range(7), 3)) == [[0, 1, 2], [3, 4, 5], [6]]
    assert list(chunk([], 3)) == []


def test_chunk_is_lazy() -> None:
    pulled = []

    def source():  # type: ignore[no-untyped-def]
        for i in range(100):
            pulled.append(i)
            yield i

    first = next(chunk(source(), 4))
    assert first == [0, 1, 2, 3] and len(pulled) == 4


def test_chunk_size_must_be_positive() -> None:
    with pytest.raises(ValueError):
        list(chunk([1], 0))
