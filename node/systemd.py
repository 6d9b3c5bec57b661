"""systemd integration: sd_notify (READY, STATUS, WATCHDOG, STOPPING) without libsystemd.

Does nothing when ``NOTIFY_SOCKET`` is not set, so the same binary runs in a
terminal, under systemd (Type=notify) and in tests (which set the variable to
a socket of their own and read the datagrams).
"""

from __future__ import annotations

import os
import socket

import trio


def notify(state: str) -> bool:
    """Send one sd_notify datagram; returns False when not under systemd."""
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return False
    if addr.startswith("@"):
        addr = "\0" + addr[1:]  # abstract namespace
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        try:
            s.connect(addr)
            s.sendall(state.encode())
        except OSError:
            return False
    return True


def watchdog_interval() -> float | None:
    """Half of WatchdogSec, in seconds, if systemd asked for watchdog pings (for this process)."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return int(usec) / 2_000_000
    except ValueError:
        return None


async def watchdog(alive: object) -> None:
    """Ping WATCHDOG=1 while the event loop runs; a hung loop stops the pings and systemd restarts us."""
    interval = watchdog_interval()
    if interval is None:
        return
    while True:
        notify("WATCHDOG=1")
        await trio.sleep(interval)
