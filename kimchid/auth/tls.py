"""HTTPS out of the box: a self-signed certificate made on first start, and the TLS context.

Unless ``[server] cert`` and ``key`` name the admin's own, kimchid keeps a certificate of
its own in ``<state_dir>/tls/``: an ECDSA P-256 key (mode 0600) and a certificate signed
with SHA-256, for the host's name, ``localhost``, ``127.0.0.1`` and ``::1`` (and the
listening address, when one is set).  It is made again when it is missing, unreadable,
does not match its key, misses one of those names, or has less than 30 days left.

Blocking (files, key generation): call it at start-up, before the reactor runs.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from twisted.internet import ssl
from twisted.internet.endpoints import SSL4ServerEndpoint

from kimchi.errors import OperationFailed

CERT_FILE = "kimchi-cert.pem"
KEY_FILE = "kimchi-key.pem"
VALID_DAYS = 825  # the longest validity Apple's platforms accept for a TLS server
RENEW_DAYS = 30


def names_for(host: str = "", hostname: str | None = None) -> tuple[list[str], list[str]]:
    """The DNS names and IP addresses the certificate must cover.

    ``host`` is ``[server] host``: a specific address or name is added; the wildcard
    addresses (``0.0.0.0``, ``::``) are not.
    """
    dns = [(hostname if hostname is not None else socket.gethostname()).lower(), "localhost"]
    ips = ["127.0.0.1", "::1"]
    if host and host not in ("0.0.0.0", "::", ""):
        try:
            ips.append(str(ipaddress.ip_address(host)))
        except ValueError:
            dns.append(host.lower())
    return list(dict.fromkeys(n for n in dns if n)), list(dict.fromkeys(ips))


def make_self_signed(dns_names: Sequence[str], ip_addresses: Sequence[str],
                     not_before: datetime | None = None,
                     days: int = VALID_DAYS) -> tuple[bytes, bytes]:
    """A new key and a certificate for it, signed by itself with SHA-256: PEM (cert, key)."""
    key = ec.generate_private_key(ec.SECP256R1())
    start = (not_before or datetime.now(UTC)) - timedelta(minutes=5)  # clocks drift
    name = x509.Name([
        x509.NameAttribute(NameOID.COMMON_NAME, dns_names[0][:64]),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "kimchi (self-signed)"),
    ])
    alt_names: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
    alt_names += [x509.IPAddress(ipaddress.ip_address(a)) for a in ip_addresses]
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=False,
            crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                       critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
        # strict verifiers (urllib3 2, Python 3.13) want it even on a self-signed one
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()),
                       critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def load_pair(cert_path: Path, key_path: Path) -> tuple[list[x509.Certificate], Any]:
    """The certificate chain (leaf first) and the key; ValueError when they do not fit."""
    chain = x509.load_pem_x509_certificates(cert_path.read_bytes())
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    pub = serialization.PublicFormat.SubjectPublicKeyInfo
    enc = serialization.Encoding.DER
    if chain[0].public_key().public_bytes(enc, pub) != key.public_key().public_bytes(enc, pub):
        raise ValueError("the key does not belong to the certificate")
    return chain, key


def _still_good(cert_path: Path, key_path: Path, dns: Sequence[str], ips: Sequence[str],
                now: datetime) -> bool:
    try:
        chain, _key = load_pair(cert_path, key_path)
    except (OSError, ValueError):
        return False
    cert = chain[0]
    if cert.not_valid_after_utc - now < timedelta(days=RENEW_DAYS):
        return False
    if not isinstance(cert.signature_hash_algorithm, hashes.SHA256):
        return False
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    have_dns = set(san.get_values_for_type(x509.DNSName))
    have_ips = {str(a) for a in san.get_values_for_type(x509.IPAddress)}
    return set(dns) <= have_dns and {str(ipaddress.ip_address(a)) for a in ips} <= have_ips


def _write(path: Path, data: bytes, mode: int) -> None:
    """Write ``data`` to ``path`` atomically, never readable by others in between."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def ensure_certificate(state_dir: Path, cert: str = "", key: str = "", host: str = "",
                       hostname: str | None = None,
                       now: datetime | None = None) -> tuple[Path, Path]:
    """The (certificate, key) files to serve HTTPS with, made first if need be.

    ``cert`` and ``key`` (``[server]``) given: those, checked, else 500 ``KCHAUTH0014E``
    naming the file.  Otherwise the pair in ``<state_dir>/tls``, reused while it is good.
    """
    if cert and key:
        try:
            load_pair(Path(cert), Path(key))
        except OSError as e:
            raise OperationFailed("KCHAUTH0014E", path=e.filename or cert,
                                  error=e.strerror) from e
        except ValueError as e:
            raise OperationFailed("KCHAUTH0014E", path=cert, error=str(e)) from e
        return Path(cert), Path(key)
    directory = Path(state_dir) / "tls"
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    cert_path, key_path = directory / CERT_FILE, directory / KEY_FILE
    dns, ips = names_for(host, hostname)
    now = now or datetime.now(UTC)
    if _still_good(cert_path, key_path, dns, ips, now):
        if key_path.stat().st_mode & 0o077:
            key_path.chmod(0o600)
        return cert_path, key_path
    cert_pem, key_pem = make_self_signed(dns, ips, not_before=now)
    _write(key_path, key_pem, 0o600)
    _write(cert_path, cert_pem, 0o644)
    return cert_path, key_path


def context_factory(cert_path: Path, key_path: Path) -> ssl.CertificateOptions:
    """A TLS context for a server with this certificate (and its chain): TLS 1.2 at least."""
    chain, key = load_pair(Path(cert_path), Path(key_path))
    # cryptography's objects as they are: Twisted hands them to pyOpenSSL, which takes
    # them and has deprecated its own X509 and PKey (Twisted's hints lag behind)
    options: ssl.CertificateOptions = ssl.CertificateOptions(
        privateKey=cast(Any, key),
        certificate=cast(Any, chain[0]),
        extraCertChain=cast(Any, chain[1:]),
        raiseMinimumTo=ssl.TLSVersion.TLSv1_2,
    )
    return options


def https_endpoint(reactor: Any, port: int, interface: str,
                   options: ssl.CertificateOptions) -> SSL4ServerEndpoint:
    """A listening endpoint for HTTPS on ``interface``:``port`` with ``options``."""
    return SSL4ServerEndpoint(reactor, port, options, interface=interface)
