"""Loopback ports for the local runtime: choosing free ones, telling whether one is taken."""

from __future__ import annotations

import socket
from collections.abc import Iterable

LOOPBACK = "127.0.0.1"


def free_ports(count: int, *, avoid: Iterable[int] = ()) -> list[int]:
    """``count`` distinct loopback ports that are free now (the kernel's ephemeral choice)."""
    avoid = set(avoid)
    out: list[int] = []
    socks = []
    try:
        while len(out) < count:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((LOOPBACK, 0))
            socks.append(s)  # held until all are chosen, so the kernel hands out distinct ports
            port = s.getsockname()[1]
            if port not in avoid and port not in out:
                out.append(port)
    finally:
        for s in socks:
            s.close()
    return out


def ports_taken(ports: Iterable[int]) -> bool:
    """True when any of ``ports`` cannot be bound on loopback now (someone else holds it)."""
    for port in ports:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            # As podman binds: connections of the last pod in TIME_WAIT do not count, a listener does.
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((LOOPBACK, port))
            except OSError:
                return True
    return False
