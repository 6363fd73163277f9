"""The load generator of bench/fanout.py: many WebSocket clients in one asyncio process.

A minimal hand-rolled RFC 6455 client (asyncio.Protocol, no library): the handshake, then
unmasked server frames parsed from one buffer per socket; pings are answered.  Each text
frame is an event whose ``data`` carries ``{"phase", "seq", "ts"}`` (``ts`` = the
producer's time.time() at send); latency = receipt time.time() - ts.

Control, one line at a time on stdin; answers are one JSON line on stdout:

    (start)            -> {"ready": <sockets open>, "failed": <n>, "connect_s": <s>}
    PHASE <k>          -> count only the events of phase k from now on; {"ok": true}
    REPORT             -> {"phase", "frames", "unique", "per_client_min", "p50_ms", "p99_ms",
                           "max_ms", "first_rx", "last_rx", "open"}
    QUIT               -> exits

    python bench/_ws_clients.py URL N
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sys
import threading
import time
from urllib.parse import urlparse

now = time.time


class Stats:
    def __init__(self) -> None:
        self.phase = -1
        self.lat: list[float] = []
        self.first_rx = 0.0
        self.last_rx = 0.0

    def reset(self, phase: int) -> None:
        self.phase = phase
        self.lat = []
        self.first_rx = 0.0
        self.last_rx = 0.0


STATS = Stats()


class WsClient(asyncio.Protocol):
    def __init__(self, host: str, path: str, opened: asyncio.Future) -> None:
        self.host = host
        self.path = path
        self.opened = opened
        self.buf = bytearray()
        self.upgraded = False
        self.transport: asyncio.Transport | None = None
        self.seqs: set[int] = set()
        self.phase = -1
        self.closed = False
        self.frag = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        key = base64.b64encode(os.urandom(16)).decode()
        self.transport.write(
            f"GET {self.path} HTTP/1.1\r\nHost: {self.host}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            f"Sec-WebSocket-Version: 13\r\n\r\n".encode())

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.opened.done():
            self.opened.set_exception(ConnectionError(str(exc or "closed")))

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        if not self.upgraded:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            status = bytes(buf[:buf.find(b"\r\n")])
            del buf[:end + 4]
            if b" 101 " not in status:
                self.opened.set_exception(ConnectionError(status.decode(errors="replace")))
                self.transport.close()
                return
            self.upgraded = True
            self.opened.set_result(self)
        pos = 0
        n = len(buf)
        while n - pos >= 2:
            b0 = buf[pos]
            ln = buf[pos + 1] & 0x7F
            hdr = 2
            if ln == 126:
                if n - pos < 4:
                    break
                ln = int.from_bytes(buf[pos + 2:pos + 4], "big")
                hdr = 4
            elif ln == 127:
                if n - pos < 10:
                    break
                ln = int.from_bytes(buf[pos + 2:pos + 10], "big")
                hdr = 10
            if n - pos < hdr + ln:
                break
            payload = bytes(buf[pos + hdr:pos + hdr + ln])
            pos += hdr + ln
            opcode = b0 & 0x0F
            fin = b0 & 0x80
            if opcode == 0:  # continuation
                self.frag += payload
                if fin:
                    payload, self.frag = bytes(self.frag), bytearray()
                    self.on_text(payload)
            elif opcode in (1, 2):
                if fin:
                    self.on_text(payload)
                else:
                    self.frag = bytearray(payload)
            elif opcode == 9:  # ping -> pong (masked, as a client must)
                self._send(0xA, payload)
            elif opcode == 8:
                self._send(0x8, payload[:2])
                self.transport.close()
        if pos:
            del buf[:pos]

    def _send(self, opcode: int, payload: bytes) -> None:
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i & 3] for i, b in enumerate(payload))
        self.transport.write(bytes((0x80 | opcode, 0x80 | len(payload))) + mask + masked)

    def on_text(self, payload: bytes) -> None:
        t = now()
        i = payload.rfind(b'"data":')
        if i < 0:
            return
        try:
            d = json.loads(payload[i + 7:-1])
        except ValueError:
            return
        if not isinstance(d, dict) or d.get("phase") != STATS.phase:
            return
        STATS.lat.append((t - d["ts"]) * 1000.0)
        if not STATS.first_rx:
            STATS.first_rx = t
        STATS.last_rx = t
        if self.phase != STATS.phase:
            self.phase = STATS.phase
            self.seqs = set()
        self.seqs.add(d["seq"])


def _pct(s: list[float], p: float) -> float | None:
    if not s:
        return None
    return s[max(0, min(len(s) - 1, int(round(p / 100.0 * len(s) + 0.5)) - 1))]


async def main(url: str, n: int) -> None:
    u = urlparse(url)
    host, port = u.hostname or "127.0.0.1", u.port or 80
    path = u.path + (("?" + u.query) if u.query else "")
    loop = asyncio.get_running_loop()
    clients: list[WsClient] = []
    sem = asyncio.Semaphore(50)
    t0 = time.monotonic()

    async def one() -> WsClient | None:
        async with sem:
            fut: asyncio.Future = loop.create_future()
            try:
                await loop.create_connection(lambda: WsClient(f"{host}:{port}", path, fut),
                                             host, port)
                return await asyncio.wait_for(fut, 30)
            except (OSError, ConnectionError, asyncio.TimeoutError) as e:
                print(f"connect failed: {e}", file=sys.stderr)
                return None

    got = await asyncio.gather(*(one() for _ in range(n)))
    clients = [c for c in got if c is not None]
    out = sys.stdout
    out.write(json.dumps({"ready": len(clients), "failed": n - len(clients),
                          "connect_s": time.monotonic() - t0}) + "\n")
    out.flush()

    lines: asyncio.Queue[str] = asyncio.Queue()

    def read_stdin() -> None:
        for line in sys.stdin:
            loop.call_soon_threadsafe(lines.put_nowait, line.strip())
        loop.call_soon_threadsafe(lines.put_nowait, "QUIT")

    threading.Thread(target=read_stdin, daemon=True).start()
    while True:
        cmd = await lines.get()
        if cmd.startswith("PHASE"):
            STATS.reset(int(cmd.split()[1]))
            out.write('{"ok": true}\n')
        elif cmd == "REPORT":
            lat = sorted(STATS.lat)
            per = [len(c.seqs) if c.phase == STATS.phase else 0 for c in clients]
            out.write(json.dumps({
                "phase": STATS.phase, "frames": len(lat), "unique": sum(per),
                "per_client_min": min(per) if per else 0,
                "p50_ms": _pct(lat, 50), "p99_ms": _pct(lat, 99),
                "max_ms": lat[-1] if lat else None, "first_rx": STATS.first_rx,
                "last_rx": STATS.last_rx, "open": sum(not c.closed for c in clients),
            }) + "\n")
        elif cmd == "QUIT":
            break
        out.flush()
    for c in clients:
        if c.transport is not None:
            c.transport.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
