"""Where kimchid may connect when a user hands it a URL (a template's remote ISO).

A URL makes kimchid open a connection wherever it points: to this host's own
ports, to the cloud metadata service at 169.254.169.254, to the private network
behind it.  So an address that is not public — loopback, link-local, private,
unspecified, multicast, reserved, or otherwise not globally routable — is
refused unless the configuration's ``[outbound] allow`` lists it (a network, an
address, or a host name).

The check is made on the address actually connected to: :meth:`OutboundPolicy.connect`
resolves the name once, checks each address, and connects to a checked address
itself, so a name that resolves to a public address when checked and to a private
one when connected (DNS rebinding) gains nothing.  Every connection — every
redirection hop, every FTP control connection — goes through it.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

__all__ = ["DestinationRefused", "OutboundPolicy", "PUBLIC_ONLY", "address_kind"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
# (family, type, proto, sockaddr) of socket.getaddrinfo, without the canonical name
Address = tuple[socket.AddressFamily, socket.SocketKind, int, tuple[Any, ...]]

# A DNS name (labels of letters, digits, '-' and '_'), optionally "*." for every name
# under a domain.
_LABEL = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
_HOST_NAME = re.compile(rf"^(?:\*\.)?(?:{_LABEL}\.)*{_LABEL}$")
_LOOKS_NUMERIC = re.compile(r"^[0-9.]+$|:|/")


class DestinationRefused(Exception):
    """A URL leads, itself or through a redirection, to an address kimchid does not
    connect to.  ``host`` is the name asked for, ``address`` what it resolved to,
    ``kind`` why it is refused ("loopback", "link-local", "private", ...)."""

    def __init__(self, host: str, address: str, kind: str) -> None:
        self.host = host
        self.address = address
        self.kind = kind
        super().__init__(f"{self.target} is a {kind} address")

    @property
    def target(self) -> str:
        """``169.254.169.254``, or ``mirror.lan (10.0.0.5)`` for a name."""
        return self.address if _same_address(self.host, self.address) else (
            f"{self.host} ({self.address})")


def _same_address(host: str, address: str) -> bool:
    try:
        return ipaddress.ip_address(host.partition("%")[0]) == ipaddress.ip_address(
            address.partition("%")[0])
    except ValueError:
        return False


def address_kind(ip: IPAddress) -> str | None:
    """Why *ip* is not a public address ("loopback", "link-local", "private", ...), or None.

    An IPv6 address carrying an IPv4 one (``::ffff:127.0.0.1``, 6to4 ``2002:7f00:1::``)
    is judged by the IPv4 address too.
    """
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:  # the IPv4 address itself, on a dual-stack socket
            return address_kind(ip.ipv4_mapped)
        if ip.sixtofour is not None and (kind := address_kind(ip.sixtofour)) is not None:
            return kind
    for kind, yes in (("unspecified", ip.is_unspecified), ("loopback", ip.is_loopback),
                      ("link-local", ip.is_link_local), ("multicast", ip.is_multicast),
                      ("reserved", ip.is_reserved), ("private", ip.is_private),
                      ("site-local", getattr(ip, "is_site_local", False))):
        if yes:
            return kind
    if not ip.is_global:
        return "non-public"  # e.g. 100.64.0.0/10, shared by carrier-grade NAT
    return None


@dataclass(frozen=True, slots=True)
class OutboundPolicy:
    """Public addresses, plus what the configuration allows.

    ``networks``: addresses allowed whatever their kind; ``names``: host names whose
    every address is allowed; ``domains``: the same for every name under them
    (``"*.lan"`` is stored as ``".lan"``).
    """

    networks: tuple[IPNetwork, ...] = ()
    names: frozenset[str] = frozenset()
    domains: tuple[str, ...] = ()

    @classmethod
    def parse(cls, entries: Iterable[str]) -> OutboundPolicy:
        """The policy of ``[outbound] allow``: networks (``10.0.0.0/8``, ``fd00::/8``),
        addresses (``192.168.1.20``) and host names (``iso-mirror.lan``, ``*.lan``).

        Raises ValueError naming every entry that is none of those.
        """
        networks: list[IPNetwork] = []
        names: set[str] = set()
        domains: list[str] = []
        problems: list[str] = []
        for entry in entries:
            text = entry.strip().lower()
            if _LOOKS_NUMERIC.search(text):
                try:
                    networks.append(ipaddress.ip_network(text))
                except ValueError as e:
                    problems.append(f"{entry!r} ({e})")
            elif _HOST_NAME.match(text.rstrip(".")):
                name = text.rstrip(".")
                if name.startswith("*."):
                    domains.append(name[1:])
                else:
                    names.add(name)
            else:
                problems.append(f"{entry!r}")
        if problems:
            raise ValueError("not a network, an address or a host name: " + ", ".join(problems))
        return cls(tuple(networks), frozenset(names), tuple(domains))

    def refusal(self, host: str, address: str) -> str | None:
        """Why connecting to *address* (which *host* resolved to) is refused, or None."""
        ip = ipaddress.ip_address(address.partition("%")[0])  # no IPv6 zone ("%eth0")
        kind = address_kind(ip)
        if kind is None:
            return None
        name = host.lower().rstrip(".")
        if name in self.names or any(name.endswith(d) for d in self.domains):
            return None
        judged = [ip]
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            judged.append(ip.ipv4_mapped)
        if any(a in net for a in judged for net in self.networks):
            return None
        return kind

    def addresses(self, host: str, port: int) -> list[Address]:
        """*host* resolved once: the (family, type, proto, sockaddr) it may be reached at.

        Raises :class:`DestinationRefused` when none is allowed, ``socket.gaierror``
        when the name does not resolve.
        """
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        allowed: list[Address] = []
        refused: DestinationRefused | None = None
        for family, kind, proto, _name, sockaddr in found:
            address = str(sockaddr[0])
            why = self.refusal(host, address)
            if why is None:
                allowed.append((family, kind, proto, sockaddr))
            elif refused is None:
                refused = DestinationRefused(host, address, why)
        if not allowed and refused is not None:
            raise refused
        return allowed

    def check_every(self, host: str, port: int) -> None:
        """Raise :class:`DestinationRefused` unless every address *host* resolves to is
        allowed: for connections another program makes (QEMU reading a remote ISO), which
        may take any of them.  ``socket.gaierror`` when the name does not resolve."""
        for *_, sockaddr in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
            address = str(sockaddr[0])
            why = self.refusal(host, address)
            if why is not None:
                raise DestinationRefused(host, address, why)

    def connect(self, host: str, port: int, timeout: object = None) -> socket.socket:
        """A TCP connection to *host*, made to an address checked here (see the module).

        *timeout*: seconds, or anything else for the default.  Raises
        :class:`DestinationRefused`, or the ``OSError`` of the last address tried.
        """
        error: OSError | None = None
        for family, kind, proto, sockaddr in self.addresses(host, port):
            sock = socket.socket(family, kind, proto)
            try:
                if isinstance(timeout, (int, float)):
                    sock.settimeout(timeout)
                sock.connect(sockaddr)
                return sock
            except OSError as e:
                sock.close()
                error = e
        raise error or OSError(f"no address for {host}")


#: The default: public addresses only.
PUBLIC_ONLY = OutboundPolicy()
