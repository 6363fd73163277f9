"""The event stream over TLS, as ``kimchi.sh up`` serves it: every event once and in order
to every watcher, exact resume, and a client too slow to read is dropped with a reason.

Over TLS kimchid encrypts each batch of frames itself and sends the records straight to
the socket (kimchid/api/events.py ``_send``); these check that the stream's guarantees
hold on that path, flow control included.
"""

from __future__ import annotations

import json
import socket
import ssl
import struct
import threading
import time
from typing import Any

import requests
import websocket

from kimchi import bus as kbus
from kimchi.bus.sync import SyncBus, connect
from tests.conftest import Kimchi, wait_for
from tests.eventclients import recv_until, start_readers


def _wss(k: Kimchi, query: str = "", **kw: Any) -> websocket.WebSocket:
    return websocket.create_connection(f"{k.ws_url}/events{query}", timeout=20,
                                       header=k.ws_headers,
                                       sslopt={"ca_certs": str(k.cert)}, **kw)



def test_tls_watchers_each_get_every_event_once_in_order(kimchi_factory, redis_db):
    k = kimchi_factory(redis_url=redis_db.url, tls=True)
    bus = SyncBus(connect(redis_db.url))
    cursor = k.get("/tasks").headers["Events-Cursor"]
    sockets = [_wss(k, f"?since={cursor}&types=task.*") for _ in range(20)]
    sse = requests.get(f"{k.url}/events?since={cursor}&types=task.*", stream=True, timeout=20,
                       auth=k.auth, verify=str(k.cert),
                       headers={"Accept": "text/event-stream"})
    task_id = bus.submit("diag.progress", {"count": 300, "every": 0.0005})
    threads, results = start_readers(sockets)
    over_sse = []
    for line in sse.iter_lines(decode_unicode=True):
        if line.startswith("data: "):
            ev = json.loads(line[6:])
            over_sse.append(ev["id"])
            if ev["type"] == "task.finished":
                break
    sse.close()
    for t in threads:
        t.join(30)
    expected = [e["id"] for e in bus.events(cursor, 100000) if e["type"].startswith("task.")
                and e["data"].get("id") == task_id]
    assert len(expected) > 300
    assert all(r == expected for r in results)
    assert over_sse == expected
    for s in sockets:
        s.close()


def test_tls_resume_after_disconnect_has_no_gap_and_no_duplicate(kimchi_factory, redis_db):
    k = kimchi_factory(redis_url=redis_db.url, tls=True)
    bus = SyncBus(connect(redis_db.url))
    cursor = k.get("/tasks").headers["Events-Cursor"]
    task_id = bus.submit("diag.progress", {"count": 300, "every": 0.002})
    query = f"?types=task.*&task={task_id}"
    ws = _wss(k, query + f"&since={cursor}")
    got = recv_until(ws, lambda e: False, limit=40)
    ws.close()  # drop mid-stream, while the job still publishes
    ws = _wss(k, query + f"&since={got[-1]['id']}")
    got += recv_until(ws, lambda e: e["type"] == "task.finished")
    ws.close()

    stream = [e for e in bus.events(cursor, count=100000) if e["data"].get("id") == task_id]
    ids = [e["id"] for e in got]
    assert len(ids) == len(set(ids)), "duplicate events after resume"
    assert ids == [e["id"] for e in stream], "gap or reordering after resume"


def test_a_tls_client_that_stops_reading_is_dropped_with_a_reason(kimchi_factory, redis_db):
    # a small buffer per client, a small receive window: the server's socket fills, then
    # its own buffer, then the client's queue of held events
    k = kimchi_factory(redis_url=redis_db.url, tls=True, workers=0,
                       extra={"events": {"client_buffer": 20}})
    slow = _wss(k, "?types=bench.*", sockopt=((socket.SOL_SOCKET, socket.SO_RCVBUF, 4096),))
    brisk = _wss(k, "?types=bench.*")
    r = redis_db.client()
    emit = r.register_script(kbus.SCRIPTS["emit"].source)
    blob = "x" * 16000
    n = 700  # about 11 MB: more than the kernel's socket buffers hold (4 MB send buffer)
    got: list[int] = []

    def read_brisk() -> None:
        while len(got) < n:
            got.append(json.loads(brisk.recv())["data"]["i"])

    reader = threading.Thread(target=read_brisk)
    reader.start()
    for i in range(n):
        # no faster than a client that reads can follow: at most 16 events (256 KB) ahead
        # of it, well within what the server holds for a client that reads; the slow
        # client, which never reads, still gets all 11 MB thrown at it
        wait_for(lambda i=i: i - len(got) <= 16 or not reader.is_alive(), timeout=30,
                 interval=0.001, what="the brisk client to read")
        emit(keys=["kimchi:events"], args=["bench.blob", kbus.now_iso(time.time()),
                                            json.dumps({"i": i, "blob": blob}), 100_000, ""])
    reader.join(60)
    assert got == list(range(n)), "a client that reads gets everything, in order"

    # The slow one now reads what reached it: events in order, then the end.  The server
    # sent a close with the reason; when the client reads too late for the closing
    # handshake (autobahn waits 1 s), the server ends the connection without it.
    seen: list[int] = []
    reason = b""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            opcode, data = slow.recv_data(control_frame=True)
        except websocket.WebSocketConnectionClosedException:
            break
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            reason = data
            break
        if opcode == websocket.ABNF.OPCODE_TEXT:
            seen.append(json.loads(data)["data"]["i"])
    else:
        raise AssertionError("the slow client was never dropped")
    assert seen == list(range(len(seen))), "what reached the slow client is a gapless prefix"
    assert len(seen) < n, "the server dropped the slow client instead of buffering it all"
    if reason:
        assert struct.unpack("!H", reason[:2])[0] == 4000
        assert b"too slow" in reason and b"since" in reason
    slow.close()
    brisk.close()


def test_tls_handshake_is_refused_without_a_login(kimchi_factory, redis_db):
    k = kimchi_factory(redis_url=redis_db.url, tls=True, workers=0)
    ctx = ssl.create_default_context(cafile=str(k.cert))
    with socket.create_connection(("127.0.0.1", k.port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
            s.sendall(b"GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                      b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                      b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
            assert s.recv(100).split(b" ")[1] == b"401"
