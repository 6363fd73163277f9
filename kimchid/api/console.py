"""``/vms/<name>/console``: the VM's VNC screen over a WebSocket of kimchid's own.

Kimchi's consoles broke more than anything else (a websockify process, its own
port, tokens in files, a certificate of its own).  Here the console is one
more route: the same port, the same TLS, the same login, the same access rules
(a user reaches only the VMs assigned to them).  Once upgraded, the socket
carries the RFB bytes both ways between the browser (noVNC) and QEMU's VNC
server, which listens on the host only.  The VNC side is read no faster than
the browser takes it (it is the socket's producer).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any
from urllib.parse import urlsplit

from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.types import ConnectionRequest
from twisted.internet import protocol, reactor
from twisted.logger import Logger

from kimchi.errors import InvalidOperation
from kimchid.api.access import VM_ADDRESSES, Access
from kimchid.api.routes import Call, RouteTable
from kimchid.api.streams import BINARY, Message, WebSocket, check_handshake
from kimchid.model.hosts import Host
from kimchid.model.libvirtobjects import lv

log = Logger()


WILDCARDS = ("0.0.0.0", "::", "")


def vnc_address(xml: str) -> tuple[str, int] | None:
    """Where a running domain's VNC server listens, from its live XML."""
    g = ET.fromstring(xml).find("./devices/graphics[@type='vnc']")
    if g is None:
        return None
    port = int(g.get("port") or -1)
    if port <= 0:
        return None
    return g.get("listen") or "127.0.0.1", port


def reachable_vnc(target: tuple[str, int], host: Host, name: str) -> tuple[str, int]:
    """Where kimchid connects to reach a VNC server listening at ``target`` on ``host``.

    A host reached through a local socket (``qemu:///system``, ``test+unix://``) is this
    machine.  On a host elsewhere, a server listening on every address is reached at the
    host's address; one listening on its loopback only cannot be reached (KCHVM0032E)."""
    listen, port = target
    at = urlsplit(host.uri).hostname
    elsewhere = not host.local and at not in (None, "", "localhost", "127.0.0.1", "::1")
    if listen in WILDCARDS:
        return (at if elsewhere and at else "127.0.0.1"), port
    if elsewhere and (listen.startswith("127.") or listen == "::1"):
        raise InvalidOperation("KCHVM0032E", name=name, listen=listen, host=host.name)
    return listen, port


class _VncSide(protocol.Protocol):
    """The TCP connection to QEMU's VNC server; what it reads goes to the browser."""

    def __init__(self, browser: ConsoleSocket) -> None:
        self.browser = browser

    def connectionMade(self) -> None:
        self.browser.vnc_ready(self)

    def dataReceived(self, data: bytes) -> None:
        self.browser.sendMessage(data, isBinary=True)

    def connectionLost(self, reason: Any = None) -> None:
        self.browser.vnc_gone()


class _VncFactory(protocol.ClientFactory):
    noisy = False

    def __init__(self, browser: ConsoleSocket) -> None:
        self.browser = browser

    def buildProtocol(self, addr: Any) -> _VncSide:
        return _VncSide(self.browser)

    def clientConnectionFailed(self, connector: Any, reason: Any) -> None:
        self.browser.vnc_failed(reason.getErrorMessage())


class ConsoleSocket(WebSocketServerProtocol):
    vnc: _VncSide | None = None
    closing = False

    def onConnect(self, request: ConnectionRequest) -> str | None:
        self.target = getattr(self.transport, "kimchi_console", None)
        self.pending: list[bytes] = []
        # noVNC asks for "binary" (older clients) or nothing: both carry raw bytes
        return "binary" if "binary" in request.protocols else None

    def onOpen(self) -> None:
        transport: Any = self.transport
        if getattr(transport, "producer", None) is not None:
            transport.unregisterProducer()  # the HTTP channel's: the VNC side takes over
        if self.target is None:
            self.sendClose(1011, "no console target")
            return
        host, port = self.target
        reactor.connectTCP(host, port, _VncFactory(self), timeout=5)

    def vnc_ready(self, vnc: _VncSide) -> None:
        if self.closing:
            vnc.transport.loseConnection()  # type: ignore[union-attr]
            return
        self.vnc = vnc
        # the browser's pace sets the VNC server's: a slow link pauses reading from QEMU
        self.transport.registerProducer(vnc.transport, True)  # type: ignore[union-attr]
        for chunk in self.pending:
            vnc.transport.write(chunk)  # type: ignore[union-attr]
        self.pending = []

    def vnc_failed(self, why: str) -> None:
        log.warn("console: cannot reach the VNC server {target}: {why}", target=self.target,
                 why=why)
        self.sendClose(1011, "the VM's screen cannot be reached")

    def vnc_gone(self) -> None:
        if not self.closing:
            self.closing = True
            self.sendClose(1000, "the VM's screen went away")

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        if self.vnc is not None and self.vnc.transport is not None:
            self.vnc.transport.write(payload)
        elif len(self.pending) < 64:
            self.pending.append(payload)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self.closing = True
        if self.vnc is not None and self.vnc.transport is not None:
            self.vnc.transport.loseConnection()


CONSOLE_SOCKET = WebSocket(
    "The VM's VNC screen: the RFB protocol, as noVNC speaks it, both ways",
    from_server=(Message(BINARY, "bytes of the RFB protocol from the VM's VNC server"),),
    from_client=(Message(BINARY, "bytes of the RFB protocol to the VM's VNC server"),),
    close_codes={1000: "the VM's screen went away (the VM stopped)",
                 1011: "the VM's screen cannot be reached"},
    subprotocols=("binary",),
)


def register(table: RouteTable, access: Access) -> None:
    factory = WebSocketServerFactory()
    factory.protocol = ConsoleSocket
    factory.setProtocolOptions(autoPingInterval=30, autoPingTimeout=15,
                               perMessageCompressionAccept=lambda offers: None)
    socket = WebSocketResource(factory)

    async def console(call: Call) -> Any:
        host, vm = access.vm_at(call.who, call.args)  # 403 for a user's non-assigned VM
        name = vm["name"]
        if vm["state"] != "running":
            raise InvalidOperation("KCHVM0020E", name=name, state=vm["state"])
        try:
            found = await host.conn.run(
                lambda c: vnc_address(c.lookupByName(name).XMLDesc(0)))
        except lv().libvirtError:  # gone meanwhile; libvirtd away was a 503 above
            found = None
        if found is None:
            raise InvalidOperation("KCHVM0021E", name=name)
        target = reachable_vnc(found, host, name)
        if (call.header("upgrade") or "").lower() != "websocket":
            raise InvalidOperation("KCHVM0022E", name=name)
        check_handshake(call.header)
        req: Any = call.request
        if req.channel is not None and req.channel.transport is not None:
            req.channel.transport.kimchi_console = target
        return socket

    for at, where in VM_ADDRESSES:
        table.add(f"{at}/console", "GET", console,
                  f"The VM's screen (VNC over WebSocket){where}", "vms", raw=True,
                  websocket=CONSOLE_SOCKET,
                  description="A WebSocket (`Upgrade: websocket`, subprotocol `binary` or "
                              "none) carrying the RFB protocol to the VM's VNC server, as "
                              "noVNC speaks it. The same login, origin check and access "
                              "rules as the rest. 400: not running (KCHVM0020E), no VNC "
                              "screen (KCHVM0021E), not a WebSocket request (KCHVM0022E), a "
                              "screen that listens on the loopback of a host elsewhere "
                              "(KCHVM0032E).")
