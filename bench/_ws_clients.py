"""The load generator of bench/fanout.py: many WebSocket clients in one process.

A minimal hand-rolled RFC 6455 client on a bare epoll loop (no asyncio, no library, to
keep the client's own cost per frame low): the handshake, then unmasked server frames
parsed from one buffer per socket; pings are answered with masked pongs.

Each text frame is an event whose ``data`` holds ``{"phase", "seq", "ts"}`` (``ts`` = the
producer's time.time() at send).  Two latencies per frame:

* ``rx``: when the bytes reached this host's socket, from the kernel's receive timestamp
  (SO_TIMESTAMPNS on recvmsg, CLOCK_REALTIME): what the server achieved, without the
  time this one process needs to get round to 500 sockets;
* ``app``: when this process parsed the frame (time.time()): what a client sees when one
  process holds all 500 sockets.

Control, one line at a time on stdin; answers are one JSON line on stdout:

    (start)       -> {"ready": <sockets open>, "failed": <n>, "connect_s": <s>}
    PHASE <k>     -> count only the events of phase k from now on; {"ok": true}
    REPORT        -> {"phase", "frames", "unique", "per_client_min", "p50_ms", "p99_ms",
                      "max_ms", "app_p50_ms", "app_p99_ms", "app_max_ms", "first_rx",
                      "last_rx", "open", "total"}
    SAMPLES       -> {"rx": [ms, ...], "app": [ms, ...]}: the phase's latencies, for a
                     report merged over several client processes
    QUIT          -> exits

``rx`` holds only while this process keeps up: a TCP read dates everything it takes by
the newest segment among them, so a process that falls one batch behind reads two batches
at once and dates the older by the newer (over TLS, with its decryption, one process
holding 500 sockets ran at 96 % of a core and read two batches per read on average, which
added a whole batch interval to ``rx``).  bench/fanout.py therefore spreads the sockets
over several of these processes.

    python bench/_ws_clients.py URL N

A ``wss://`` URL speaks TLS through the standard library's ``ssl.SSLObject`` on memory
buffers, so the bytes are still read with ``recvmsg`` and ``rx`` is the kernel's receive
time of the encrypted records; the certificate to trust (the server's own) is the file
named by ``BENCH_WS_CA``.

Extra handshake headers (kimchid's ``Authorization: Basic ...``), one per line, come in
the environment variable ``BENCH_WS_HEADERS`` (not on the command line, which any user of
the machine can read).
"""

from __future__ import annotations

import base64
import json
import os
import re
import select
import socket
import ssl
import struct
import sys
import time
from urllib.parse import urlparse

SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
CMSG_SPACE = socket.CMSG_SPACE(16)
RECORD = 16384  # the most one TLS record holds: what one SSLObject.read returns at most
now = time.time
loads = json.loads
# the data of the producer's events, as bench/fanout.py writes it
_DATA = re.compile(rb'\{"phase":(-?[0-9]+),"seq":([0-9]+),"ts":([0-9.e+-]+)\}').match


class Stats:
    def __init__(self) -> None:
        self.reset(-1)

    def reset(self, phase: int) -> None:
        self.phase = phase
        self.rx: list[float] = []
        self.app: list[float] = []
        self.first_rx = 0.0
        self.last_rx = 0.0
        self.total = getattr(self, "total", 0)  # frames of any phase, ever


STATS = Stats()


class Conn:
    __slots__ = ("sock", "buf", "upgraded", "seqs", "phase", "closed", "frag", "tls", "inc",
                 "out", "hello")

    def __init__(self, sock: socket.socket, tls: ssl.SSLContext | None = None,
                 host: str = "") -> None:
        self.sock = sock
        self.buf = bytearray()
        self.upgraded = False
        self.seqs: set[int] = set()
        self.phase = -1
        self.closed = False
        self.frag = bytearray()
        self.tls: ssl.SSLObject | None = None
        self.hello = b""  # the HTTP upgrade request, sent once the TLS handshake is done
        if tls is not None:
            self.inc, self.out = ssl.MemoryBIO(), ssl.MemoryBIO()
            self.tls = tls.wrap_bio(self.inc, self.out, server_hostname=host)

    def start(self, request: bytes) -> None:
        """Send the upgrade request (over TLS: start the handshake; the request follows)."""
        if self.tls is None:
            self.sock.sendall(request)
            return
        self.hello = request
        self._handshake()

    def _handshake(self) -> None:
        assert self.tls is not None
        try:
            self.tls.do_handshake()
        except ssl.SSLWantReadError:
            self._flush()
            return
        self._flush()
        self.send_raw(self.hello)
        self.hello = b""

    def _flush(self) -> None:
        if self.out.pending:
            self.sock.sendall(self.out.read())

    def plain(self, data: bytes) -> bytes:
        """The application bytes in ``data`` as read from the socket (decrypted with TLS)."""
        t = self.tls
        if t is None:
            return data
        self.inc.write(data)
        if self.hello:
            self._handshake()
            if self.hello:
                return b""
        out = []
        inc = self.inc
        while inc.pending or t.pending():
            try:
                out.append(t.read(RECORD))
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:
                self.closed = True
                break
        if self.out.pending:  # e.g. an answer to a key update
            self._flush()
        return out[0] if len(out) == 1 else b"".join(out)

    def send_raw(self, data: bytes) -> None:
        if self.tls is None:
            self.sock.send(data)
            return
        self.tls.write(data)
        self._flush()

    def send_frame(self, opcode: int, payload: bytes) -> None:
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i & 3] for i, b in enumerate(payload))
        try:
            self.send_raw(bytes((0x80 | opcode, 0x80 | len(payload))) + mask + masked)
        except OSError:
            pass

    def feed(self, data: bytes, krx: float) -> None:
        buf = self.buf
        buf += data
        if not self.upgraded:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            status = bytes(buf[:buf.find(b"\r\n")])
            del buf[:end + 4]
            if b" 101 " not in status:
                raise ConnectionError(status.decode(errors="replace"))
            self.upgraded = True
        pos = 0
        n = len(buf)
        t = 0.0
        while n - pos >= 2:
            b0 = buf[pos]
            ln = buf[pos + 1] & 0x7F
            hdr = 2
            if ln == 126:
                if n - pos < 4:
                    break
                ln = (buf[pos + 2] << 8) | buf[pos + 3]
                hdr = 4
            elif ln == 127:
                if n - pos < 10:
                    break
                ln = int.from_bytes(buf[pos + 2:pos + 10], "big")
                hdr = 10
            end = pos + hdr + ln
            if end > n:
                break
            opcode = b0 & 0x0F
            if opcode == 1 and b0 & 0x80:  # the common case: one whole text frame
                if not t:
                    t = now()
                self.on_text(buf, pos + hdr, end, krx, t)
            else:
                payload = bytes(buf[pos + hdr:end])
                if opcode == 0:
                    self.frag += payload
                    if b0 & 0x80:
                        whole, self.frag = bytes(self.frag), bytearray()
                        self.on_text(whole, 0, len(whole), krx, now())
                elif opcode in (1, 2):
                    self.frag = bytearray(payload)
                elif opcode == 9:
                    self.send_frame(0xA, payload)
                elif opcode == 8:
                    self.send_frame(0x8, payload[:2])
                    self.closed = True
            pos = end
        if pos:
            del buf[:pos]

    def on_text(self, buf: bytes | bytearray, start: int, end: int, krx: float,
                t: float) -> None:
        i = buf.rfind(b'"data":', start, end)
        if i < 0:
            return
        st = STATS
        m = _DATA(buf, i + 7, end)  # the producer's own compact JSON: no json.loads
        phase: int | None
        if m is not None:
            phase, seq, ts = int(m[1]), int(m[2]), float(m[3])
        else:
            try:
                d = loads(buf[i + 7:end - 1])
            except ValueError:
                return
            if type(d) is not dict or "seq" not in d:
                st.total += 1
                return
            phase, seq, ts = d.get("phase"), d["seq"], d["ts"]
        st.total += 1
        if phase != st.phase:
            return
        st.rx.append((krx - ts) * 1000.0)
        st.app.append((t - ts) * 1000.0)
        if not st.first_rx:
            st.first_rx = krx
        if krx > st.last_rx:
            st.last_rx = krx
        if self.phase != st.phase:
            self.phase = st.phase
            self.seqs = set()
        self.seqs.add(seq)


def _pct(s: list[float], p: float) -> float | None:
    if not s:
        return None
    return s[max(0, min(len(s) - 1, int(round(p / 100.0 * len(s) + 0.5)) - 1))]


def _kernel_time(anc: list) -> float:
    for level, kind, data in anc:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= 16:
            sec, nsec = struct.unpack("qq", data[:16])
            return sec + nsec * 1e-9
    return now()


def connect_all(host: str, port: int, path: str, n: int, ep: select.epoll,
                conns: dict[int, Conn], secure: bool = False) -> int:
    """Open n WebSockets, 50 handshakes in flight at a time; returns how many failed."""
    failed = 0
    extra = "".join(f"{h.strip()}\r\n" for h in os.environ.get("BENCH_WS_HEADERS", "").split("\n")
                    if h.strip())
    req = (f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
           f"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n{extra}")
    tls = None
    if secure:
        tls = ssl.create_default_context(cafile=os.environ.get("BENCH_WS_CA") or None)
    pending: dict[int, Conn] = {}
    todo = n
    deadline = time.monotonic() + 60
    while (todo or pending) and time.monotonic() < deadline:
        while todo and len(pending) < 50:
            todo -= 1
            s = socket.create_connection((host, port), timeout=10)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            key = base64.b64encode(os.urandom(16)).decode()
            c = Conn(s, tls, host)
            c.start((req + f"Sec-WebSocket-Key: {key}\r\n\r\n").encode())
            s.setblocking(False)
            pending[s.fileno()] = c
            ep.register(s.fileno(), select.EPOLLIN)
        for fd, _ev in ep.poll(1.0):
            waiting = pending.get(fd)
            if waiting is None:
                continue
            try:
                data = waiting.sock.recv(65536)
                if not data:
                    raise ConnectionError("closed during the handshake")
                waiting.feed(waiting.plain(data), now())
            except (OSError, ConnectionError) as e:
                print(f"connect failed: {e}", file=sys.stderr)
                failed += 1
                ep.unregister(fd)
                waiting.sock.close()
                del pending[fd]
                continue
            if waiting.upgraded:
                conns[fd] = pending.pop(fd)
    failed += todo + len(pending)
    return failed


def main(url: str, n: int) -> None:
    u = urlparse(url)
    secure = u.scheme == "wss"
    host, port = u.hostname or "127.0.0.1", u.port or (443 if secure else 80)
    path = (u.path or "/") + (("?" + u.query) if u.query else "")
    ep = select.epoll()
    conns: dict[int, Conn] = {}
    t0 = time.monotonic()
    failed = connect_all(host, port, path, n, ep, conns, secure)
    out = sys.stdout
    out.write(json.dumps({"ready": len(conns), "failed": failed,
                          "connect_s": time.monotonic() - t0}) + "\n")
    out.flush()

    stdin = sys.stdin.fileno()
    os.set_blocking(stdin, False)
    ep.register(stdin, select.EPOLLIN)
    pending_in = b""
    cmsg = CMSG_SPACE
    # one buffer for every read: recvmsg(n) would allocate n bytes per call (and, at
    # 256 KiB, map and unmap them: a third of this process's time)
    into = [bytearray(262144)]
    view = memoryview(into[0])
    running = True
    while running:
        for fd, _ev in ep.poll(1.0):
            if fd == stdin:
                try:
                    chunk = os.read(stdin, 4096)
                except BlockingIOError:
                    continue
                if not chunk:
                    running = False
                    break
                pending_in += chunk
                while b"\n" in pending_in:
                    line, pending_in = pending_in.split(b"\n", 1)
                    running = command(line.decode().strip(), conns, out) and running
                continue
            c = conns.get(fd)
            if c is None:
                continue
            try:
                got, anc, _flags, _addr = c.sock.recvmsg_into(into, cmsg)
            except BlockingIOError:
                continue
            except OSError:
                got = 0
                anc = []
            if not got:
                c.closed = True
                ep.unregister(fd)
                continue
            data = view[:got].tobytes()
            c.feed(c.plain(data) if secure else data, _kernel_time(anc))
    for c in conns.values():
        c.sock.close()


def command(cmd: str, conns: dict[int, Conn], out) -> bool:
    if cmd.startswith("PHASE"):
        STATS.reset(int(cmd.split()[1]))
        out.write('{"ok": true}\n')
    elif cmd == "REPORT":
        rx, app = sorted(STATS.rx), sorted(STATS.app)
        per = [len(c.seqs) if c.phase == STATS.phase else 0 for c in conns.values()]
        out.write(json.dumps({
            "phase": STATS.phase, "frames": len(rx), "unique": sum(per),
            "per_client_min": min(per) if per else 0,
            "p50_ms": _pct(rx, 50), "p99_ms": _pct(rx, 99), "max_ms": rx[-1] if rx else None,
            "app_p50_ms": _pct(app, 50), "app_p99_ms": _pct(app, 99),
            "app_max_ms": app[-1] if app else None,
            "first_rx": STATS.first_rx, "last_rx": STATS.last_rx,
            "open": sum(not c.closed for c in conns.values()), "total": STATS.total,
        }) + "\n")
    elif cmd == "SAMPLES":  # every latency of the phase (ms, to the µs): for a merged report
        out.write(json.dumps({"rx": [round(x, 3) for x in STATS.rx],
                              "app": [round(x, 3) for x in STATS.app]}) + "\n")
    elif cmd == "QUIT":
        return False
    out.flush()
    return True


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
