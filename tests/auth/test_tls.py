"""The self-signed certificate (names, SHA-256, key mode, reuse) and a real TLS handshake."""

from __future__ import annotations

import ipaddress
import socket
import ssl
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import pytest_twisted
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from OpenSSL import SSL
from twisted.internet import threads
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from kimchi.errors import OperationFailed
from kimchid.auth import tls


def cert_of(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def sans(cert: x509.Certificate) -> tuple[set[str], set[str]]:
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return (set(san.get_values_for_type(x509.DNSName)),
            {str(a) for a in san.get_values_for_type(x509.IPAddress)})


def test_first_start_makes_a_certificate_for_this_host(tmp_path: Path):
    cert_path, key_path = tls.ensure_certificate(tmp_path, hostname="kvm1")
    assert cert_path.parent == key_path.parent == tmp_path / "tls"
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "tls").stat().st_mode) == 0o700
    cert = cert_of(cert_path)
    assert isinstance(cert.signature_hash_algorithm, hashes.SHA256)
    dns, ips = sans(cert)
    assert dns == {"kvm1", "localhost"} and ips == {"127.0.0.1", "::1"}
    days = (cert.not_valid_after_utc - cert.not_valid_before_utc).days
    assert days == tls.VALID_DAYS
    assert cert.issuer == cert.subject  # self-signed
    basic = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert basic.ca is False
    assert not list(tmp_path.glob("tls/.*.tmp"))


def test_the_host_name_defaults_to_this_machine_and_a_listening_address_is_added(
        tmp_path: Path):
    cert_path, _ = tls.ensure_certificate(tmp_path, host="192.0.2.10")
    dns, ips = sans(cert_of(cert_path))
    assert socket.gethostname().lower() in dns
    assert "192.0.2.10" in ips
    cert_path, _ = tls.ensure_certificate(tmp_path / "b", host="kimchi.example.com",
                                          hostname="kvm1")
    assert "kimchi.example.com" in sans(cert_of(cert_path))[0]


def test_a_good_certificate_is_reused(tmp_path: Path):
    cert_path, key_path = tls.ensure_certificate(tmp_path, hostname="kvm1")
    before = cert_path.read_bytes(), key_path.read_bytes()
    key_path.chmod(0o644)  # loosened by hand: tightened again, not replaced
    assert tls.ensure_certificate(tmp_path, hostname="kvm1") == (cert_path, key_path)
    assert (cert_path.read_bytes(), key_path.read_bytes()) == before
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600


@pytest.mark.parametrize("spoil", ["expiring", "renamed host", "garbage", "other key",
                                   "no key"])
def test_a_certificate_that_is_no_good_is_made_again(tmp_path: Path, spoil: str):
    cert_path, key_path = tls.ensure_certificate(tmp_path, hostname="kvm1")
    old = cert_path.read_bytes()
    kw: dict[str, object] = {"hostname": "kvm1"}
    if spoil == "expiring":
        kw["now"] = datetime.now(UTC) + timedelta(days=tls.VALID_DAYS - tls.RENEW_DAYS + 1)
    elif spoil == "renamed host":
        kw["hostname"] = "kvm2"
    elif spoil == "garbage":
        cert_path.write_text("not a certificate")
    elif spoil == "other key":
        _, other_key = tls.make_self_signed(["x"], [])
        key_path.write_bytes(other_key)
    else:
        key_path.unlink()
    cert_path2, key_path2 = tls.ensure_certificate(tmp_path, **kw)  # type: ignore[arg-type]
    assert cert_path2.read_bytes() != old
    tls.load_pair(cert_path2, key_path2)  # a matching pair again
    assert stat.S_IMODE(key_path2.stat().st_mode) == 0o600


def test_a_configured_certificate_is_used_as_it_is(tmp_path: Path):
    cert_pem, key_pem = tls.make_self_signed(["kimchi.example.com"], [])
    (tmp_path / "c.pem").write_bytes(cert_pem)
    (tmp_path / "k.pem").write_bytes(key_pem)
    got = tls.ensure_certificate(tmp_path / "state", cert=str(tmp_path / "c.pem"),
                                 key=str(tmp_path / "k.pem"))
    assert got == (tmp_path / "c.pem", tmp_path / "k.pem")
    assert not (tmp_path / "state" / "tls").exists()


def test_a_configured_certificate_that_is_wrong_stops_the_start(tmp_path: Path):
    cert_pem, _ = tls.make_self_signed(["a"], [])
    _, other_key = tls.make_self_signed(["b"], [])
    (tmp_path / "c.pem").write_bytes(cert_pem)
    (tmp_path / "k.pem").write_bytes(other_key)
    with pytest.raises(OperationFailed) as e:
        tls.ensure_certificate(tmp_path, cert=str(tmp_path / "c.pem"),
                               key=str(tmp_path / "k.pem"))
    assert e.value.errcode == "KCHAUTH0014E" and "does not belong" in e.value.reason
    with pytest.raises(OperationFailed) as e:
        tls.ensure_certificate(tmp_path, cert=str(tmp_path / "missing.pem"),
                               key=str(tmp_path / "k.pem"))
    assert "missing.pem" in e.value.reason


def _client(port: int, cafile: Path, server_hostname: str) -> tuple[str, bytes]:
    ctx = ssl.create_default_context(cafile=str(cafile))  # verifies chain and host name
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname=server_hostname) as s:
            s.sendall(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
            data = b""
            while chunk := s.recv(4096):
                data += chunk
            return s.version() or "", data


class Hello(Resource):
    isLeaf = True

    def render_GET(self, request: Request) -> bytes:
        return b"hello over tls"


@pytest_twisted.ensureDeferred
async def test_a_real_tls_handshake_with_the_context(tmp_path: Path):
    from twisted.internet import reactor

    cert_path, key_path = tls.ensure_certificate(tmp_path, hostname="kvm1")
    root = Hello()
    endpoint = tls.https_endpoint(reactor, 0, "127.0.0.1",
                                  tls.context_factory(cert_path, key_path))
    port = await endpoint.listen(Site(root))
    try:
        number = port.getHost().port
        for name in ("localhost", "kvm1", "127.0.0.1"):  # each a subject alternative name
            version, data = await threads.deferToThread(_client, number, cert_path, name)
            assert version in ("TLSv1.2", "TLSv1.3")
            assert data.startswith(b"HTTP/1.0 200") and data.endswith(b"hello over tls")
        with pytest.raises(ssl.SSLCertVerificationError):  # a name it is not for
            await threads.deferToThread(_client, number, cert_path, "elsewhere.example")

    finally:
        await port.stopListening()


def test_the_context_refuses_anything_older_than_tls_1_2(tmp_path: Path):
    # (a handshake cannot show it: this OpenSSL refuses TLS 1.1 on its own anyway)
    ctx = tls.context_factory(*tls.ensure_certificate(tmp_path, hostname="kvm1")).getContext()
    flags = ctx.set_options(0)
    for old in (SSL.OP_NO_SSLv2, SSL.OP_NO_SSLv3, SSL.OP_NO_TLSv1, SSL.OP_NO_TLSv1_1):
        assert flags & old == old
    assert not flags & SSL.OP_NO_TLSv1_2


def test_names_for():
    dns, ips = tls.names_for("::", hostname="KVM1")
    assert dns == ["kvm1", "localhost"] and ips == ["127.0.0.1", "::1"]
    dns, ips = tls.names_for("2001:db8::1", hostname="kvm1")
    assert ips[-1] == str(ipaddress.ip_address("2001:db8::1"))
