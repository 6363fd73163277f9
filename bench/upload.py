"""Uploading a volume through kimchid (HTTPS, chunks of PUT .../content) against writing
the same bytes with ``dd`` to the same disk, in the same run.

    python bench/upload.py [--quick] [--gib N] [--reps N] [--chunk-mib N] [--plain] [--tree DIR]

A file of random bytes is made once (then read from the page cache by both sides). Each
repetition, interleaved: ``dd if=src of=<pool>/dd.img bs=16M conv=fsync`` (the reference:
the kernel's copy, flushed to disk at the end), and an upload of the same file into a
directory pool through kimchid, from ``POST {"upload": true}`` to the answer of the last
``PUT`` (kimchid fsyncs the volume before renaming it into place, as dd's ``conv=fsync``).
The client is ``requests`` on one connection, sending each chunk after the previous one was
answered, as the browser does. Prints both, and the ratio of their throughputs (target
>= 0.7x).

The pool is a directory pool of libvirt's test driver (a node XML naming the bench's
folder): kimchid writes the bytes into that folder itself, as on the local host of any
driver; the test driver does not list the file afterwards, which kimchid notes in its log.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import common  # noqa: E402
from common import KimchidProc, RedisProc, log, median  # noqa: E402

TARGET = 0.7


def make_source(path: Path, size: int) -> None:
    step = 64 * 2**20
    with open(path, "wb") as f:
        for _ in range(0, size, step):
            f.write(os.urandom(step))


def node_xml(folder: Path) -> str:
    return ("<node><pool type='dir'><name>bench</name>"
            "<uuid>6b1d9d4e-0000-4000-8000-0000000000b1</uuid>"
            "<capacity unit='GiB'>1024</capacity><allocation unit='GiB'>0</allocation>"
            "<available unit='GiB'>1024</available>"
            f"<target><path>{folder}</path></target></pool></node>")


def by_dd(src: Path, dst: Path) -> float:
    t = time.perf_counter()
    subprocess.run(["dd", f"if={src}", f"of={dst}", "bs=16M", "conv=fsync"], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    took = time.perf_counter() - t
    dst.unlink()
    return took


def tls_floor(src: Path, dst: Path, cert: Path, key: Path) -> float:
    """The least any Python server can take for the same upload here: the file sent over
    one TLS connection on loopback (Python's ``ssl``, OpenSSL in C, the GIL released while
    it encrypts and decrypts), received with ``recv_into`` into 4 MiB buffers by a thread
    that ``pwrite``s them and ``fsync``s at the end; no HTTP, no event loop."""
    import socket
    import ssl
    import threading

    size = src.stat().st_size
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(str(cert), str(key))
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    failed: list[BaseException] = []

    def receive() -> None:
        try:
            raw, _ = listener.accept()
            with server_ctx.wrap_socket(raw, server_side=True) as conn:
                buf = memoryview(bytearray(4 * 2**20))
                fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                try:
                    got = 0
                    while got < size:
                        fill = 0
                        while fill < len(buf) and got + fill < size:
                            n = conn.recv_into(buf[fill:])
                            if not n:
                                raise EOFError("the sender stopped")
                            fill += n
                        os.pwrite(fd, buf[:fill], got)
                        got += fill
                    os.fsync(fd)
                finally:
                    os.close(fd)
                conn.sendall(b"k")
        except BaseException as e:  # noqa: BLE001  (reported by the sender)
            failed.append(e)

    t = time.perf_counter()
    th = threading.Thread(target=receive)
    th.start()
    client_ctx = ssl.create_default_context(cafile=str(cert))
    client_ctx.check_hostname = False
    with client_ctx.wrap_socket(socket.create_connection(("127.0.0.1", port))) as c, \
            open(src, "rb") as f:
        while block := f.read(16 * 2**20):
            c.sendall(block)
        c.recv(1)
    took = time.perf_counter() - t
    th.join()
    listener.close()
    if failed:
        raise failed[0]
    dst.unlink()
    return took


def through_kimchi(k: KimchidProc, s: object, src: Path, folder: Path, name: str,
                   chunk: int) -> float:
    import requests

    assert isinstance(s, requests.Session)
    size = src.stat().st_size
    t = time.perf_counter()
    r = s.post(k.url + "/storagepools/bench/storagevolumes", timeout=60,
               json={"name": name, "capacity": size, "format": "raw", "upload": True})
    assert r.status_code == 201, r.text
    where = k.url + r.headers["Location"]
    with open(src, "rb") as f:
        offset = 0
        while offset < size:
            data = f.read(chunk)
            r = s.put(where, data=data, timeout=120, headers={
                "Content-Type": "application/octet-stream",
                "Content-Range": f"bytes {offset}-{offset + len(data) - 1}/{size}"})
            assert r.status_code == 204, r.text
            offset += len(data)
    took = time.perf_counter() - t
    done = folder / name
    assert done.stat().st_size == size, done
    done.unlink()
    return took


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="short smoke run: 256 MiB, 1 rep")
    ap.add_argument("--reps", type=int, default=None)
    ap.add_argument("--gib", type=float, default=None, help="bytes to upload (default 1 GiB)")
    ap.add_argument("--chunk-mib", type=int, default=16, help="bytes of each PUT (default 16)")
    ap.add_argument("--plain", action="store_true", help="plain HTTP instead of HTTPS")
    ap.add_argument("--tree", type=Path, default=common.ROOT,
                    help="the source tree kimchid runs from (default: this checkout)")
    a = ap.parse_args()
    reps = a.reps or (1 if a.quick else 5)
    size = int((a.gib or (0.25 if a.quick else 1)) * 2**30)
    chunk = a.chunk_mib * 2**20

    common.header(f"upload of {size / 2**30:g} GiB through kimchid "
                  f"({'HTTP' if a.plain else 'HTTPS'}, {a.chunk_mib} MiB chunks) vs dd", a.quick)
    wd = common.workdir("upload")
    folder = wd / "pool"
    folder.mkdir()
    src = wd / "source.img"
    make_source(src, size)
    node = wd / "node.xml"
    node.write_text(node_xml(folder))
    rds = RedisProc(wd / "redis").start()
    try:
        k = KimchidProc(wd / "kimchid", rds.url, workers=0, tls=not a.plain, tree=a.tree,
                        extra={"libvirt": {"uri": f"test://{node}"}}).start()
        k.sign_in()
        s = k.session()
        by_dd(src, folder / "warm-dd.img")  # warm-up: the source in the page cache
        through_kimchi(k, s, src, folder, "warm.img", chunk)
        cert, key = wd / "floor-cert.pem", wd / "floor-key.pem"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-nodes", "-keyout", str(key), "-out",
                        str(cert), "-days", "1", "-subj", "/CN=127.0.0.1"], check=True,
                       capture_output=True)
        hand: list[float] = []
        ours: list[float] = []
        floor: list[float] = []
        for rep in range(reps):
            sides = ["dd", "floor", "kimchi"]
            for side in (sides if rep % 2 == 0 else sides[::-1]):
                if side == "dd":
                    hand.append(by_dd(src, folder / "dd.img"))
                elif side == "floor":
                    floor.append(tls_floor(src, folder / "floor.img", cert, key))
                else:
                    ours.append(through_kimchi(k, s, src, folder, f"up{rep}.img", chunk))
            log(f"rep {rep + 1}: dd {hand[-1]:.2f} s, Python TLS floor {floor[-1]:.2f} s, "
                f"kimchi {ours[-1]:.2f} s")
        mib = size / 2**20
        mh, mk, mf = median(hand), median(ours), median(floor)
        ratio = mh / mk
        common.table([
            ["dd bs=16M conv=fsync (reference)", mh, common.spread(hand), mib / mh, 1.0],
            ["floor: Python ssl + pwrite, no HTTP", mf, common.spread(floor), mib / mf,
             mh / mf],
            [f"kimchid upload ({'HTTP' if a.plain else 'HTTPS'})", mk, common.spread(ours),
             mib / mk, ratio],
        ], ["operation", "s (median)", "spread", "MiB/s", "x dd (throughput)"])
        log(f"kimchid reaches {mf / mk:.2f}x the Python TLS floor's throughput")
        common.verdict(ratio >= TARGET, f"upload {size / 2**30:g} GiB: {mib / mk:.0f} MiB/s = "
                       f"{ratio:.2f}x dd's {mib / mh:.0f} MiB/s (target >= {TARGET}x)")
    finally:
        rds.stop()
    busy = common.footer()
    print("RESULT " + json.dumps({"machine_busy_pct": busy, "bytes": size, "tls": not a.plain,
                                  "chunk": chunk, "dd_s": mh, "kimchi_s": mk, "floor_s": mf,
                                  "ratio": ratio, "target": TARGET, "pass": ratio >= TARGET}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
