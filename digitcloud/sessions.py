"""What the cloud backends share: a pooled HTTP session, and the record of predictions in flight."""

from __future__ import annotations

import threading

import requests


def pooled_session(connections: int) -> requests.Session:
    """A ``requests.Session`` keeping up to ``connections`` (+2 for polls and cancels) alive per host."""
    session = requests.Session()
    adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=max(1, connections) + 2)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


class InFlight:
    """The predictions a backend has started and not yet seen end, each tagged with the stop event
    of the classify call that started it, so that call's give-up cancels exactly its own."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[str, threading.Event]] = {}  # id -> (cancel handle, stop)

    def add(self, prediction_id: str, cancel: str, stop: threading.Event) -> None:
        with self._lock:
            self._entries[prediction_id] = (cancel, stop)

    def pop(self, prediction_id: str) -> str | None:
        """Its cancel handle, or ``None`` when ``take`` already handed it over for cancelling."""
        with self._lock:
            entry = self._entries.pop(prediction_id, None)
        return entry[0] if entry else None

    def take(self, stop: threading.Event | None) -> list[str]:
        """Remove and return the cancel handles started under ``stop`` (all when ``None``)."""
        with self._lock:
            mine = [pid for pid, (_, event) in self._entries.items() if stop is None or event is stop]
            return [self._entries.pop(pid)[0] for pid in mine]
