"""What the event-stream tests do as WebSocket clients: read until an event, and read
every socket at once until each has seen its task end."""

from __future__ import annotations

import json
import threading
from typing import Any

import websocket


def recv_until(ws: websocket.WebSocket, stop: Any, limit: int = 100000) -> list[dict[str, Any]]:
    """Events from ``ws`` up to and including the first that ``stop`` is true for."""
    out: list[dict[str, Any]] = []
    while len(out) < limit:
        ev = json.loads(ws.recv())
        out.append(ev)
        if stop(ev):
            break
    return out


def start_readers(sockets: list[websocket.WebSocket]
                  ) -> tuple[list[threading.Thread], list[list[str]]]:
    """One thread per socket keeping the ids it reads until ``task.finished``: the threads
    (started; join them) and, once joined, each socket's ids."""
    results: list[list[str]] = [[] for _ in sockets]

    def read(i: int) -> None:
        results[i] = [e["id"] for e in recv_until(sockets[i],
                                                   lambda e: e["type"] == "task.finished")]

    threads = [threading.Thread(target=read, args=(i,)) for i in range(len(sockets))]
    for t in threads:
        t.start()
    return threads, results
