"""Cutting a stream of items into fixed-size chunks, lazily, keeping their order."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import islice
from typing import TypeVar

T = TypeVar("T")


def chunk(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Consecutive lists of ``size`` items (the last may be shorter); never an empty list."""
    if size < 1:
        raise ValueError(f"chunk size must be at least 1; got {size}")
    iterator = iter(items)
    while block := list(islice(iterator, size)):
        yield block
