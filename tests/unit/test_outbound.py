"""Where a URL may make kimchid connect: addresses that are not public are refused unless
the configuration allows them, the address checked is the address connected to, and every
redirection hop is checked.  Through probe_url against real local servers, whose loopback
addresses stand for a private network."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from kimchi import config, isoinfo
from kimchi.errors import ConfigError
from kimchi.outbound import PUBLIC_ONLY, DestinationRefused, OutboundPolicy, address_kind
from tests.isofactory import make_iso
from tests.isoservers import FtpIsoServer, HttpIsoServer

MB = 1024 * 1024


# ---------------------------------------------------------------------------
# Which addresses
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("address, kind", [
    ("127.0.0.1", "loopback"), ("127.8.9.10", "loopback"), ("::1", "loopback"),
    ("169.254.169.254", "link-local"), ("169.254.0.1", "link-local"),
    ("fe80::1", "link-local"), ("febf:ffff::1", "link-local"),
    ("10.1.2.3", "private"), ("172.16.0.1", "private"), ("172.31.255.254", "private"),
    ("192.168.1.1", "private"), ("fc00::1", "private"), ("fd12:3456::1", "private"),
    ("0.0.0.0", "unspecified"), ("::", "unspecified"),
    ("224.0.0.1", "multicast"), ("239.255.255.250", "multicast"), ("ff02::1", "multicast"),
    ("240.0.0.1", "reserved"), ("255.255.255.255", "reserved"),
    ("fec0::1", "site-local"), ("100.64.0.1", "non-public"), ("100.100.100.200", "non-public"),
    # IPv4 inside IPv6: judged by the IPv4 address
    ("::ffff:127.0.0.1", "loopback"), ("::ffff:169.254.169.254", "link-local"),
    ("::ffff:10.0.0.1", "private"), ("2002:7f00:1::1", "loopback"),
    ("2002:a9fe:a9fe::", "link-local"),
])
def test_addresses_that_are_not_public(address: str, kind: str) -> None:
    assert address_kind(ipaddress.ip_address(address)) == kind
    assert PUBLIC_ONLY.refusal("h", address) == kind


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "151.101.1.1",
                                     "2606:4700:4700::1111", "2a00:1450:4001::200e",
                                     "::ffff:8.8.8.8"])
def test_public_addresses_are_allowed(address: str) -> None:
    assert address_kind(ipaddress.ip_address(address)) is None
    assert PUBLIC_ONLY.refusal("h", address) is None


def test_the_allow_list_takes_networks_addresses_and_names() -> None:
    policy = OutboundPolicy.parse(["10.0.0.0/8", "192.168.1.20", "fd00::/8", "ISO-Mirror.lan.",
                                   "*.lab.example"])
    assert policy.refusal("x", "10.200.0.1") is None
    assert policy.refusal("x", "::ffff:10.200.0.1") is None
    assert policy.refusal("x", "192.168.1.20") is None
    assert policy.refusal("x", "192.168.1.21") == "private"
    assert policy.refusal("x", "fd00::5") is None and policy.refusal("x", "fc00::5") == "private"
    assert policy.refusal("x", "127.0.0.1") == "loopback"
    assert policy.refusal("x", "169.254.169.254") == "link-local"
    # a listed name, at whatever address it has; other names at that address are not
    assert policy.refusal("iso-mirror.lan", "192.168.7.7") is None
    assert policy.refusal("iso-mirror.lan.", "192.168.7.7") is None
    assert policy.refusal("other.lan", "192.168.7.7") == "private"
    assert policy.refusal("a.b.lab.example", "172.20.0.1") is None
    assert policy.refusal("lab.example", "172.20.0.1") == "private"  # "*." is under it
    assert policy.refusal("evillab.example", "172.20.0.1") == "private"


@pytest.mark.parametrize("entry", ["10.0.0.1/8", "300.1.2.3", "fe80::/200", "not a host",
                                   "http://mirror.lan", "", "*"])
def test_bad_allow_list_entries_are_named(entry: str) -> None:
    with pytest.raises(ValueError, match="not a network, an address or a host name") as e:
        OutboundPolicy.parse(["10.0.0.0/8", entry])
    assert repr(entry) in str(e.value)


def test_the_configuration_key(tmp_path: Path) -> None:
    f = tmp_path / "k.toml"
    f.write_text('[outbound]\nallow = ["127.0.0.0/8", "iso-mirror.lan"]\n')
    assert config.load(f, environ={}).outbound.allow == ("127.0.0.0/8", "iso-mirror.lan")
    cfg = config.load(f, environ={"KIMCHI_OUTBOUND_ALLOW": "10.0.0.0/8,*.lan"})
    assert cfg.outbound.allow == ("10.0.0.0/8", "*.lan")
    assert config.load(tmp_path / "k.toml", environ={"KIMCHI_OUTBOUND_ALLOW": ""}
                       ).outbound.allow == ()
    f.write_text('[outbound]\nallow = ["10.0.0.1/8"]\n')
    with pytest.raises(ConfigError) as e:
        config.load(f, environ={})
    assert [k for k, _ in e.value.problems] == ["outbound.allow"]
    assert "10.0.0.1/8" in str(e.value)


# ---------------------------------------------------------------------------
# Resolved once, connected to what was checked
# ---------------------------------------------------------------------------


class Resolver:
    """A DNS that answers *name* with the next of *answers* each time it is asked
    (the last one again when they run out): what a rebinding attacker's DNS does."""

    def __init__(self, name: str, answers: list[str]) -> None:
        self.name = name
        self.answers = answers
        self.asked = 0
        self._real = socket.getaddrinfo

    def __call__(self, host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host != self.name:
            return self._real(host, port, *args, **kwargs)
        address = self.answers[min(self.asked, len(self.answers) - 1)]
        self.asked += 1
        return self._real(address, port, *args, **kwargs)


@pytest.fixture
def dns(monkeypatch: pytest.MonkeyPatch) -> Callable[[str, list[str]], Resolver]:
    def install(name: str, answers: list[str]) -> Resolver:
        resolver = Resolver(name, answers)
        monkeypatch.setattr(socket, "getaddrinfo", resolver)
        return resolver
    return install


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    with socket.create_server(("127.0.0.1", 0)) as s:
        yield s


def test_the_address_checked_is_the_address_connected_to(dns: Any,
                                                          listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    # allowed when checked, the metadata service when asked again
    resolver = dns("mirror.test", ["127.0.0.1", "169.254.169.254"])
    policy = OutboundPolicy.parse(["127.0.0.0/8"])
    with policy.connect("mirror.test", port, 2.0) as sock:
        assert sock.getpeername() == ("127.0.0.1", port)
    assert resolver.asked == 1
    with pytest.raises(DestinationRefused) as e:  # the next connection: refused, not made
        policy.connect("mirror.test", port, 2.0)
    assert (e.value.host, e.value.address, e.value.kind) == (
        "mirror.test", "169.254.169.254", "link-local")
    assert str(e.value) == "mirror.test (169.254.169.254) is a link-local address"


def test_a_name_with_public_and_private_addresses_is_reached_only_at_allowed_ones(
        monkeypatch: pytest.MonkeyPatch, listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    real = socket.getaddrinfo

    def both(host: Any, p: Any, *args: Any, **kwargs: Any) -> Any:
        return real("::1", p, *args, **kwargs) + real("127.0.0.1", p, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", both)
    only_v4 = OutboundPolicy.parse(["127.0.0.1"])
    assert [a[3][0] for a in only_v4.addresses("dual.test", port)] == ["127.0.0.1"]
    with only_v4.connect("dual.test", port, 2.0) as sock:
        assert sock.getpeername()[0] == "127.0.0.1"
    with pytest.raises(DestinationRefused, match=r"dual.test \(::1\) is a loopback"):
        PUBLIC_ONLY.connect("dual.test", port, 2.0)


def test_for_another_program_every_address_must_be_allowed(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """QEMU may take any address a name resolves to: one refused refuses them all."""
    real = socket.getaddrinfo

    def both(host: Any, p: Any, *args: Any, **kwargs: Any) -> Any:
        return real("::1", p, *args, **kwargs) + real("127.0.0.1", p, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", both)
    OutboundPolicy.parse(["127.0.0.1", "::1"]).check_every("dual.test", 80)
    with pytest.raises(DestinationRefused, match=r"dual.test \(::1\) is a loopback"):
        OutboundPolicy.parse(["127.0.0.1"]).check_every("dual.test", 80)


# ---------------------------------------------------------------------------
# Through probe_url: every connection and every redirection hop
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("isos")
    make_iso(root / "f39.iso", "Fedora-WS-Live-39-1-5", size=50 * MB)
    return root


# 127.0.0.2 plays an allowed mirror on the private network, 127.0.0.1 this host's own ports
MIRROR_ONLY = OutboundPolicy.parse(["127.0.0.2"])


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:{port}/x.iso", "http://localhost:{port}/x.iso",
    "http://[::1]:{port}/x.iso", "http://[::ffff:127.0.0.1]:{port}/x.iso",
    "http://2130706433:{port}/x.iso", "http://0x7f.1:{port}/x.iso",
    "https://127.0.0.1:{port}/x.iso", "ftp://127.0.0.1:{port}/x.iso",
    "http://169.254.169.254/latest/meta-data/", "http://[fe80::1%25lo]:{port}/x.iso",
    "http://10.0.0.1:{port}/x.iso", "http://[fd00::1]:{port}/x.iso", "http://0.0.0.0:{port}/",
])
def test_probe_url_refuses_before_connecting(url: str, listener: socket.socket) -> None:
    listener.settimeout(0.2)
    url = url.format(port=listener.getsockname()[1])
    with pytest.raises(DestinationRefused):
        isoinfo.probe_url(url, timeout=1.0)
    with pytest.raises(TimeoutError):
        listener.accept()  # nothing came


def test_an_allowed_server_is_probed(folder: Path) -> None:
    with HttpIsoServer(folder, host="127.0.0.2") as mirror, \
            FtpIsoServer(folder, host="127.0.0.2") as ftp:
        assert isoinfo.probe_url(mirror.url("f39.iso"), outbound=MIRROR_ONLY
                                 ).info.os_distro == "fedora"
        assert isoinfo.probe_url(ftp.url("f39.iso"), outbound=MIRROR_ONLY
                                 ).info.os_distro == "fedora"
        with pytest.raises(DestinationRefused, match="127.0.0.2 is a loopback"):
            isoinfo.probe_url(mirror.url("f39.iso"))


def test_a_redirection_from_an_allowed_server_to_this_host_is_refused(folder: Path) -> None:
    with HttpIsoServer(folder) as local, \
            HttpIsoServer(folder, host="127.0.0.2", redirect_to=local.origin) as mirror:
        with pytest.raises(DestinationRefused) as e:
            isoinfo.probe_url(mirror.url("redirect/f39.iso"), outbound=MIRROR_ONLY)
        assert (e.value.address, e.value.kind) == ("127.0.0.1", "loopback")
        assert [r.split(" ")[0] for r in mirror.counter.requests] == ["/redirect/f39.iso"]
        assert local.counter.requests == []  # never reached
        # allowed both: followed, and the mirror's mirror is asked directly from then on
        both = OutboundPolicy.parse(["127.0.0.1", "127.0.0.2"])
        assert isoinfo.probe_url(mirror.url("redirect/f39.iso"), outbound=both
                                 ).info.os_distro == "fedora"
        assert [r.split(" ")[0] for r in local.counter.requests] == ["/f39.iso", "/f39.iso"]


def test_a_redirection_to_ipv6_loopback_and_to_the_metadata_service_is_refused(
        folder: Path) -> None:
    with HttpIsoServer(folder, host="::1") as local6:
        for target, address in ((local6.origin, "::1"),
                                ("http://169.254.169.254", "169.254.169.254"),
                                ("http://[fe80::a9fe:a9fe%25lo]", "fe80::a9fe:a9fe")):
            with HttpIsoServer(folder, host="127.0.0.2", redirect_to=target) as mirror:
                with pytest.raises(DestinationRefused) as e:
                    isoinfo.probe_url(mirror.url("redirect/f39.iso"), outbound=MIRROR_ONLY,
                                      timeout=2.0)
            assert e.value.address == address
        assert local6.counter.requests == []
        # the IPv6 server is there: allowed, it is probed
        assert isoinfo.probe_url(local6.url("f39.iso"), outbound=OutboundPolicy.parse(
            ["::1/128"])).info.os_distro == "fedora"


def test_a_redirection_to_another_scheme_is_not_followed(folder: Path) -> None:
    with FtpIsoServer(folder, host="127.0.0.2") as ftp:
        for target in (ftp.origin, "file://"):
            with HttpIsoServer(folder, host="127.0.0.2", redirect_to=target) as mirror:
                with pytest.raises(isoinfo.RemoteError):
                    isoinfo.probe_url(mirror.url("redirect/f39.iso"), outbound=MIRROR_ONLY)
        assert ftp.counter.requests == []


def test_a_rebinding_name_gets_one_checked_address_per_connection(dns: Any,
                                                                  folder: Path) -> None:
    with HttpIsoServer(folder, host="127.0.0.2", ranges=False) as mirror:
        # one connection (the server ignores ranges): its name is resolved once
        resolver = dns("mirror.test", ["127.0.0.2", "169.254.169.254"])
        url = mirror.url("f39.iso").replace("127.0.0.2", "mirror.test")
        assert isoinfo.probe_url(url, outbound=MIRROR_ONLY).info.os_distro == "fedora"
        assert resolver.asked == 1
        # the next probe gets the other answer: refused, whatever it was before
        with pytest.raises(DestinationRefused, match="169.254.169.254"):
            isoinfo.probe_url(url, outbound=MIRROR_ONLY, timeout=1.0)
        assert len(mirror.counter.requests) == 1
