"""Loopback ports for nodes whose addresses are written into a directory before they start.

A port the kernel hands out for ``bind(0)`` comes from the ephemeral range,
the same range outgoing connections take their local ports from: between
choosing it and the node listening on it, another node's outgoing
connection can take it, and the node then (rightly) refuses to start on a
port in use. So ports are chosen below the ephemeral range, never twice in
one process, and checked bindable when chosen.
"""

from __future__ import annotations

import random
import socket

_given: set[int] = set()
_FLOOR = 20_000


def _ephemeral_low() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768  # Linux's default


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now, outside the ephemeral range, not handed out before by this process."""
    high = max(_FLOOR + 1000, _ephemeral_low())
    for _ in range(1000):
        port = random.randrange(_FLOOR, high)
        if port in _given:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _given.add(port)
        return port
    raise RuntimeError(f"no free TCP port in {_FLOOR}..{high} on 127.0.0.1")
