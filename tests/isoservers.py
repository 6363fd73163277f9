"""Real HTTP and FTP servers, in threads, that serve a folder of ISO images and count
the bytes they send: what a remote probe costs is measured, not assumed.

- :class:`HttpIsoServer` answers ``Range`` requests (206/416) like a mirror, or
  ignores them (``ranges=False``: 200 with the whole file, like some old
  servers and proxies).  ``/redirect/<name>`` answers 302 to ``/<name>``,
  ``/empty/<name>`` 200 with no body (what a proxy in front of an offline
  host sends).  ``redirect_to="http://other:port"`` sends ``/redirect/<name>`` there
  instead, to ``<redirect_to>/<name>``.
- :class:`FtpIsoServer` speaks the part of RFC 959/3659 that ftplib uses:
  USER, PASS, TYPE, SIZE, PASV/EPSV, REST, RETR, QUIT (``rest=False`` answers
  REST with 502).
"""

from __future__ import annotations

import os
import re
import socket
import socketserver
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

_CHUNK = 64 * 1024
# Small send buffers: what a client did not read stays in the file, not in the kernel's
# buffers, so bytes_sent measures what the client asked for.
_SNDBUF = 64 * 1024


class _Counter:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.bytes_sent = 0
        self.requests: list[str] = []

    def sent(self, n: int) -> None:
        with self.lock:
            self.bytes_sent += n


def _send_file(sock_write: Any, path: Path, start: int, end: int, counter: _Counter,
               pause: float = 0.0) -> bool:
    """Send bytes [start, end) of *path*, *pause* seconds after each 64 KiB; False when
    the client went away first."""
    with open(path, "rb") as f:
        offset = start
        while offset < end:
            chunk = os.pread(f.fileno(), min(_CHUNK, end - offset), offset)
            if not chunk:
                break
            try:
                sock_write(chunk)
            except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
                return False
            counter.sent(len(chunk))
            offset += len(chunk)
            if pause:
                time.sleep(pause)
    return True


class _ServedFolder:
    """A socketserver on *host* (127.0.0.1; any 127.x.y.z; ::1 for HTTP) serving a folder
    from a thread; counts what it sends."""

    scheme = ""

    def __init__(self, root: Path, host: str = "127.0.0.1") -> None:
        self.root = root
        self.host = host
        self.counter = _Counter()
        self._server: socketserver.TCPServer | None = None
        self._thread: threading.Thread | None = None

    def _serve(self, server: socketserver.TCPServer) -> None:
        server.daemon_threads = True  # type: ignore[attr-defined]
        self._server = server
        self.port = server.server_address[1]
        self._thread = threading.Thread(target=server.serve_forever, daemon=True)

    @property
    def bytes_sent(self) -> int:
        return self.counter.bytes_sent

    @property
    def origin(self) -> str:
        """``http://127.0.0.1:port``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    def url(self, name: str) -> str:
        return f"{self.origin}/{name}"

    def __enter__(self) -> Any:
        assert self._thread is not None
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        assert self._server is not None and self._thread is not None
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


class HttpIsoServer(_ServedFolder):
    """``with HttpIsoServer(folder) as s: probe_url(s.url("f39.iso"))``.

    *tls*: a server-side context, to serve https; *pause*: seconds after each 64 KiB sent
    (a slow server).
    """

    def __init__(self, root: Path, *, ranges: bool = True,
                 tls: ssl.SSLContext | None = None, host: str = "127.0.0.1",
                 redirect_to: str = "", pause: float = 0.0) -> None:
        super().__init__(root, host)
        self.ranges = ranges
        self.pause = pause
        self.scheme = "https" if tls else "http"
        server = self

        class Handler(BaseHTTPRequestHandler):
            def setup(self) -> None:
                self.request.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _SNDBUF)
                super().setup()

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                server.counter.requests.append(f"{self.path} {self.headers.get('Range')}")
                name = self.path.lstrip("/")
                if name.startswith("redirect/"):
                    self.send_response(302)
                    self.send_header("Location", f"{redirect_to}/{name.removeprefix('redirect/')}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if name.startswith("empty/"):
                    self.send_response(200)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                path = server.root / name
                if not path.is_file():
                    self.send_error(404)
                    return
                size = path.stat().st_size
                m = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range") or "")
                if not server.ranges or m is None:
                    self.send_response(200)
                    self.send_header("Content-Length", str(size))
                    self.end_headers()
                    _send_file(self.wfile.write, path, 0, size, server.counter, server.pause)
                    return
                start = int(m.group(1))
                end = min(int(m.group(2)) + 1 if m.group(2) else size, size)
                if start >= size:
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{size}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{end - 1}/{size}")
                self.send_header("Content-Length", str(end - start))
                self.end_headers()
                _send_file(self.wfile.write, path, start, end, server.counter, server.pause)

        class Server(ThreadingHTTPServer):
            address_family = socket.AF_INET6 if ":" in host else socket.AF_INET

        httpd = Server((host, 0), Handler)
        if tls is not None:
            httpd.socket = tls.wrap_socket(httpd.socket, server_side=True)
        self._serve(httpd)


class FtpIsoServer(_ServedFolder):
    """``with FtpIsoServer(folder) as s: probe_url(s.url("f39.iso"))`` (anonymous)."""

    scheme = "ftp"

    def __init__(self, root: Path, *, rest: bool = True, host: str = "127.0.0.1") -> None:
        super().__init__(root, host)
        self.rest = rest
        server = self

        class Handler(socketserver.StreamRequestHandler):
            def reply(self, line: str) -> None:
                self.wfile.write(line.encode() + b"\r\n")

            def handle(self) -> None:
                self.reply("220 kimchi test FTP")
                passive: socket.socket | None = None
                offset = 0
                for raw in self.rfile:
                    cmd, _, arg = raw.decode().strip().partition(" ")
                    cmd = cmd.upper()
                    server.counter.requests.append(f"{cmd} {arg}".strip())
                    path = server.root / arg.lstrip("/")
                    if cmd == "USER":
                        self.reply("331 password please")
                    elif cmd == "PASS":
                        self.reply("230 welcome")
                    elif cmd == "TYPE":
                        self.reply("200 type set")
                    elif cmd == "SIZE":
                        self.reply(f"213 {path.stat().st_size}" if path.is_file()
                                   else "550 no such file")
                    elif cmd in ("PASV", "EPSV"):
                        passive = socket.create_server((host, 0))
                        port = passive.getsockname()[1]
                        self.reply(f"227 passive ({host.replace('.', ',')},{port >> 8},"
                                   f"{port & 255})"
                                   if cmd == "PASV" else f"229 extended (|||{port}|)")
                    elif cmd == "REST" and server.rest:
                        offset = int(arg)
                        self.reply(f"350 restarting at {offset}")
                    elif cmd == "RETR" and passive is not None:
                        if not path.is_file():
                            self.reply("550 no such file")
                            continue
                        self.reply("150 opening data connection")
                        data, _ = passive.accept()
                        data.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _SNDBUF)
                        passive.close()
                        passive = None
                        with data:
                            done = _send_file(data.sendall, path, offset, path.stat().st_size,
                                              server.counter)
                        offset = 0
                        self.reply("226 transfer complete" if done else "426 transfer aborted")
                    elif cmd == "QUIT":
                        self.reply("221 bye")
                        return
                    else:
                        self.reply(f"502 {cmd} not implemented")

        self._serve(socketserver.ThreadingTCPServer((host, 0), Handler))
