"""Remote ISO probing against real local servers: HTTP with and without Range, FTP with
and without REST, https with an untrusted and a trusted certificate, and servers that
fail in every way a user meets (404, refused, silent, unresolvable, empty, not an ISO)."""

from __future__ import annotations

import shutil
import socket
import ssl
import struct
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from kimchi import isoinfo
from kimchi.isoinfo import IsoInfo, NotAnIso, RemoteError, RemoteUnreachable
from kimchi.outbound import DestinationRefused, OutboundPolicy
from tests.isofactory import SECTOR_SIZE, make_iso, make_not_iso
from tests.isoservers import FtpIsoServer, HttpIsoServer

MB = 1024 * 1024
FEDORA = IsoInfo("Fedora-WS-Live-39-1-5", "fedora", "39", True)
# The servers here are on this host: allowed as a configuration would ([outbound] allow)
THIS_HOST = OutboundPolicy.parse(["127.0.0.0/8"])


def probe(url: str, **kwargs: Any) -> isoinfo.RemoteIso:
    return isoinfo.probe_url(url, outbound=THIS_HOST, **kwargs)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 50 MB sparse Fedora image, one whose boot catalog lies 2 MB in, and decoys."""
    root = tmp_path_factory.mktemp("remote-isos")
    make_iso(root / "f39.iso", "Fedora-WS-Live-39-1-5", size=50 * MB)
    far = make_iso(root / "far-catalog.iso", "Debian 12.2.0 amd64 n", size=50 * MB)
    _move_boot_catalog(far, 1024)  # sector 1024: 2 MB in, past the 1 MB read limit
    make_not_iso(root / "notes.iso", size=64 * 1024)
    truncated = make_iso(root / "cut.iso", "Ubuntu 22.04.3 LTS amd64", size=50 * MB)
    with open(truncated, "r+b") as f:
        f.truncate(MB)  # the PVD still says 50 MB
    return root


def _move_boot_catalog(path: Path, sector: int) -> None:
    with open(path, "r+b") as f:
        for vd in range(16, 32):
            f.seek(vd * SECTOR_SIZE)
            head = f.read(7)
            if head[0] == 0 and head[1:6] == b"CD001":
                f.seek(vd * SECTOR_SIZE + 71)
                (old,) = struct.unpack("<I", f.read(4))
                f.seek(old * SECTOR_SIZE)
                catalog = f.read(SECTOR_SIZE)
                f.seek(vd * SECTOR_SIZE + 71)
                f.write(struct.pack("<I", sector))
                f.seek(sector * SECTOR_SIZE)
                f.write(catalog)
                return
    raise AssertionError("no boot record")


# ---------------------------------------------------------------------------
# HTTP
# ---------------------------------------------------------------------------


def test_http_range_reads_a_few_sectors_of_a_big_image(folder: Path) -> None:
    with HttpIsoServer(folder) as server:
        found = probe(server.url("f39.iso"))
    assert found.info == FEDORA == isoinfo.probe_file(folder / "f39.iso")
    assert found.size == 50 * MB
    # the descriptor set, then the boot catalog: two ranges, about 8 KiB in all
    assert [r.split(" ", 1)[1] for r in server.counter.requests] == [
        "bytes=32768-40959", "bytes=45056-45119"]
    assert server.bytes_sent == found.bytes_read < 16 * 1024


def test_http_server_ignoring_range_is_read_from_its_start_then_left(folder: Path) -> None:
    with HttpIsoServer(folder, ranges=False) as server:
        found = probe(server.url("f39.iso"))
        time.sleep(0.2)  # let the server notice the closed connection
    assert found.info == FEDORA and found.size == 50 * MB  # from Content-Length
    assert len(server.counter.requests) == 1  # one stream, reused for the catalog
    assert found.bytes_read < 64 * 1024
    assert server.bytes_sent < 2 * MB  # of 50: the connection was closed early


def test_a_boot_catalog_beyond_the_read_limit_is_not_fetched(folder: Path) -> None:
    with HttpIsoServer(folder, ranges=False) as server:
        found = probe(server.url("far-catalog.iso"))
    assert (found.info.os_distro, found.info.os_version) == ("debian", "12.2")
    assert found.info.bootable is None  # unknown, rather than a wrong False
    assert found.bytes_read <= isoinfo.MAX_REMOTE_READ
    with HttpIsoServer(folder) as server:  # with ranges, it is one more small read
        assert probe(server.url("far-catalog.iso")).info.bootable is True


def test_redirects_are_followed_and_the_mirror_asked_directly(folder: Path) -> None:
    with HttpIsoServer(folder) as server:
        found = probe(server.url("redirect/f39.iso"))
    assert found.info == FEDORA
    assert [r.split(" ")[0] for r in server.counter.requests] == [
        "/redirect/f39.iso", "/f39.iso", "/f39.iso"]


def test_this_hosts_servers_are_refused_unless_allowed(folder: Path) -> None:
    with HttpIsoServer(folder) as server, FtpIsoServer(folder) as ftp:
        for url in (server.url("f39.iso"), ftp.url("f39.iso")):
            with pytest.raises(DestinationRefused, match="127.0.0.1 is a loopback address"):
                isoinfo.probe_url(url)  # the default: public addresses only
        assert server.counter.requests == [] and ftp.counter.requests == []
        assert probe(server.url("f39.iso")).info == probe(ftp.url("f39.iso")).info == FEDORA


def test_http_errors_say_what_the_server_said(folder: Path) -> None:
    with HttpIsoServer(folder) as server:
        with pytest.raises(RemoteError, match="HTTP 404") as e:
            probe(server.url("missing.iso"))
        assert not isinstance(e.value, RemoteUnreachable)  # a definite answer
        with pytest.raises(NotAnIso):
            probe(server.url("notes.iso"))
        with pytest.raises(NotAnIso, match="truncated"):
            probe(server.url("cut.iso"))
        # a proxy answering for an offline host: nothing to judge, try later
        with pytest.raises(RemoteUnreachable, match="no data"):
            probe(server.url("empty/f39.iso"))


def test_unreachable_servers_fail_fast_and_as_temporary() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(RemoteUnreachable, match="refused"):
        probe(f"http://127.0.0.1:{port}/x.iso")
    with pytest.raises(RemoteUnreachable, match="resolve"):
        probe("http://no-such-host.invalid/x.iso")
    assert time.monotonic() - started < 5


def test_a_silent_server_times_out() -> None:
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts, never answers
        port = silent.getsockname()[1]
        started = time.monotonic()
        with pytest.raises(RemoteUnreachable, match="timed out"):
            probe(f"http://127.0.0.1:{port}/x.iso", timeout=0.5)
        assert time.monotonic() - started < 3


@pytest.mark.parametrize("url", ["http:///x.iso", "http://host:port/x.iso", "gopher://h/x.iso",
                                 "http://h/x y.iso", "/srv/x.iso"])
def test_urls_that_are_not_are_refused_before_any_io(url: str) -> None:
    with pytest.raises(ValueError):
        probe(url)


def test_is_remote() -> None:
    assert isoinfo.is_remote("HTTPS://h/x.iso") and isoinfo.is_remote("ftp://h/x.iso")
    assert not isoinfo.is_remote("/srv/http://x.iso") and not isoinfo.is_remote("file:///x")


# ---------------------------------------------------------------------------
# https
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    d = tmp_path_factory.mktemp("tls")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(d / "key.pem"), "-out", str(d / "cert.pem")],
                   check=True, capture_output=True)
    return d / "cert.pem", d / "key.pem"


def test_https_certificates_are_verified(folder: Path, certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    server_side = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_side.load_cert_chain(cert, key)
    with HttpIsoServer(folder, tls=server_side) as server:
        with pytest.raises(RemoteError, match="certificate") as e:
            probe(server.url("f39.iso"))
        assert not isinstance(e.value, RemoteUnreachable)  # never "try later": it is refused
        trusting = ssl.create_default_context(cafile=str(cert))
        assert probe(server.url("f39.iso"), tls=trusting).info == FEDORA


# ---------------------------------------------------------------------------
# FTP
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("rest", [True, False])
def test_ftp_reads_from_an_offset_and_leaves(folder: Path, rest: bool) -> None:
    with FtpIsoServer(folder, rest=rest) as server:
        found = probe(server.url("f39.iso"))
        time.sleep(0.2)
    assert found.info == FEDORA and found.size == 50 * MB  # from SIZE
    retrs = [r for r in server.counter.requests if r.startswith("RETR")]
    assert len(retrs) == (2 if rest else 1)
    assert found.bytes_read < 64 * 1024
    assert server.bytes_sent < 2 * MB


def test_ftp_missing_file(folder: Path) -> None:
    with FtpIsoServer(folder) as server:
        with pytest.raises(RemoteError, match="550"):
            probe(server.url("missing.iso"))
