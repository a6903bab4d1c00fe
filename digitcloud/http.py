"""The one kind of HTTP session the cloud backends use: pooled, sized to the predictions in flight."""

from __future__ import annotations

import requests


def pooled_session(connections: int) -> requests.Session:
    """A ``requests.Session`` keeping up to ``connections`` (+2 for polls and cancels) alive per host."""
    session = requests.Session()
    adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=max(1, connections) + 2)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session
