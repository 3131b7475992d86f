"""Small helpers the benchmarks share."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A TCP port nothing listens on now (for a throw-away cluster)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
