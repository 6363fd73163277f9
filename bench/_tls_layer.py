"""The TLS layer's own cost per WebSocket frame, for bench/fanout.py's TLS choice.

One TLS 1.3 connection over memory buffers (server: kimchid's own TLS context, client: the
standard library), then the CPU time (``time.process_time``) of encrypting one 250-byte
frame and taking its record out, per way of doing it:

* ``pyopenssl``: pyOpenSSL's ``Connection.send`` + ``bio_read`` (what Twisted's TLS layer
  calls);
* ``pyopenssl-binding``: the same two OpenSSL calls (``SSL_write``, ``BIO_read``) through
  pyOpenSSL's own cffi binding, into a buffer made once (what kimchid/api/events.py does);
* ``stdlib``: the standard library's ``ssl.SSLObject.write`` + ``MemoryBIO.read`` (what a
  transport built on the standard library would cost).

Not a socket in sight: the system call per socket and Twisted are the same for all three.

    python bench/_tls_layer.py [--frames N] [--reps N]
"""

from __future__ import annotations

import argparse
import json
import ssl
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from OpenSSL import SSL  # noqa: E402
from OpenSSL._util import ffi, lib  # noqa: E402

from kimchid.auth.tls import context_factory, ensure_certificate  # noqa: E402

FRAME = b"\x81\x7e\x00\xf6" + b"x" * 246  # a 250-byte text frame, like fanout's events


def _pair_pyopenssl(cert: Path, key: Path, client: ssl.SSLContext) -> SSL.Connection:
    srv = SSL.Connection(context_factory(cert, key).getContext(), None)
    srv.set_accept_state()
    cin, cout = ssl.MemoryBIO(), ssl.MemoryBIO()
    cli = client.wrap_bio(cin, cout, server_hostname="127.0.0.1")
    for _ in range(10):
        done = 0
        try:
            cli.do_handshake()
            done += 1
        except ssl.SSLWantReadError:
            pass
        if cout.pending:
            srv.bio_write(cout.read())
        try:
            srv.do_handshake()
            done += 1
        except SSL.WantReadError:
            pass
        try:
            while True:
                cin.write(srv.bio_read(65536))
        except SSL.WantReadError:
            pass
        if done == 2:
            return srv
    raise RuntimeError("no TLS handshake")


def _pair_stdlib(cert: Path, key: Path, client: ssl.SSLContext) -> tuple[ssl.SSLObject,
                                                                        ssl.MemoryBIO]:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    sin, sout = ssl.MemoryBIO(), ssl.MemoryBIO()
    srv = ctx.wrap_bio(sin, sout, server_side=True)
    cin, cout = ssl.MemoryBIO(), ssl.MemoryBIO()
    cli = client.wrap_bio(cin, cout, server_hostname="127.0.0.1")
    for _ in range(10):
        done = 0
        try:
            cli.do_handshake()
            done += 1
        except ssl.SSLWantReadError:
            pass
        if cout.pending:
            sin.write(cout.read())
        try:
            srv.do_handshake()
            done += 1
        except ssl.SSLWantReadError:
            pass
        if sout.pending:
            cin.write(sout.read())
        if done == 2:
            return srv, sout
    raise RuntimeError("no TLS handshake")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=100_000)
    ap.add_argument("--reps", type=int, default=5)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        cert, key = ensure_certificate(Path(d), host="127.0.0.1")
        client = ssl.create_default_context(cafile=str(cert))
        conn = _pair_pyopenssl(cert, key, client)
        sobj, sout = _pair_stdlib(cert, key, client)
    out = ffi.new("char[]", 2**16)
    n = a.frames

    def pyopenssl() -> None:
        for _ in range(n):
            conn.send(FRAME)
            conn.bio_read(65536)

    def binding() -> None:
        s, b = conn._ssl, conn._from_ssl
        for _ in range(n):
            lib.SSL_write(s, FRAME, len(FRAME))
            ffi.buffer(out, lib.BIO_read(b, out, 2**16))[:]

    def stdlib() -> None:
        for _ in range(n):
            sobj.write(FRAME)
            sout.read()

    ways = {"pyopenssl": pyopenssl, "pyopenssl-binding": binding, "stdlib": stdlib}
    best: dict[str, float] = {}
    for _ in range(a.reps):  # interleaved; the least CPU time of the repetitions
        for name, fn in ways.items():
            t = time.process_time()
            fn()
            best[name] = min(best.get(name, 1e9), 1e6 * (time.process_time() - t) / n)
    print(f"# TLS layer per 250-byte frame ({conn.get_protocol_version_name()}, "
          f"{conn.get_cipher_name()}), CPU us, least of {a.reps} x {n:,} frames")
    for name, us in best.items():
        print(f"{name:20s} {us:6.2f} us  ({us / best['pyopenssl']:.2f}x pyopenssl)")
    print("RESULT " + json.dumps({"bench": "tls_layer", **{f"{k}_us": v for k, v in best.items()}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
