"""``/vms/<name>/serial``: the VM's serial console over a WebSocket of kimchid's own.

Like the VNC console (:mod:`kimchid.api.console`) it is one more route: the same
port, TLS, login, Origin check and access rules.  Once upgraded, the socket carries
the guest's serial output to the client as binary messages (the bytes as the guest
wrote them: a UTF-8 character may be split between two) and the client's messages
(text or binary) to the guest as they are.  libvirt carries the console
(``openConsole``), so it works for a VM on any host kimchid is connected to.

The socket closes with a code and a reason a user can read (see
:mod:`kimchid.model.serial`): 1000 the VM stopped, 4001 another client took the
console over (the newest client wins), 4002 kimchid is shutting down, 4003 the
console failed (libvirt's reason).  The guest's output is read no faster than the
client takes it.
"""

from __future__ import annotations

from typing import Any

from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.types import ConnectionRequest
from twisted.internet import defer
from twisted.internet.interfaces import IPushProducer
from zope.interface import implementer

from kimchi.errors import InvalidOperation, KimchiError
from kimchid.api.access import VM_ADDRESSES, Access
from kimchid.api.routes import Call, RouteTable
from kimchid.api.streams import BINARY, TEXT, Message, WebSocket, check_handshake
from kimchid.model.hosts import Host
from kimchid.model.libvirtobjects import why
from kimchid.model.serial import Ending, SerialConsoles, SerialSession, failed


@implementer(IPushProducer)
class _ClientPace:
    """The client's pace sets the guest's: a slow link pauses reading the console."""

    def __init__(self, session: SerialSession) -> None:
        self.session = session

    def pauseProducing(self) -> None:
        self.session.pause_reading()

    def resumeProducing(self) -> None:
        self.session.resume_reading()

    def stopProducing(self) -> None:
        self.session.close()


class SerialSocket(WebSocketServerProtocol):
    session: SerialSession | None = None
    gone = False  # closed, or closing: nothing more to send

    def onConnect(self, request: ConnectionRequest) -> str | None:
        self.target: tuple[SerialConsoles, Host, str] | None = getattr(
            self.transport, "kimchi_serial", None)
        self.pending: list[bytes] = []  # typed before the console opened
        return "binary" if "binary" in request.protocols else None

    def onOpen(self) -> None:
        transport: Any = self.transport
        if getattr(transport, "producer", None) is not None:
            transport.unregisterProducer()  # the HTTP channel's: the console's takes over
        if self.target is None:
            self.ended(failed("no console to open"))
            return
        consoles, host, name = self.target
        d = defer.Deferred.fromCoroutine(consoles.open(host, name, self))
        d.addCallbacks(self._opened, self._not_opened)

    def _opened(self, session: SerialSession) -> None:
        if self.gone:  # the client left while it opened
            session.close()
            return
        self.session = session
        self.transport.registerProducer(_ClientPace(session), True)  # type: ignore[union-attr]
        for chunk in self.pending:
            session.write(chunk)
        self.pending = []

    def _not_opened(self, failure: Any) -> None:
        e = failure.value
        self.ended(failed(e.params.get("error", str(e)) if isinstance(e, KimchiError)
                          else why(e)))

    # SerialClient: the console's news
    def received(self, data: bytes) -> None:
        if not self.gone:
            self.sendMessage(data, isBinary=True)

    def ended(self, ending: Ending) -> None:
        if not self.gone:
            self.gone = True
            self.sendClose(ending.code, ending.reason)

    # the client's
    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        if self.session is not None:
            self.session.write(payload)
        elif len(self.pending) < 64:
            self.pending.append(payload)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self.gone = True
        if self.session is not None:
            self.session.close()


SERIAL_SOCKET = WebSocket(
    "The VM's serial console: the guest's output to the client, what the client types to "
    "the guest",
    from_server=(Message(BINARY, "the guest's serial output, as it wrote it (a UTF-8 "
                                 "character may be split between two messages)"),),
    from_client=(Message(TEXT, "keys for the guest, as they are"),
                 Message(BINARY, "bytes for the guest, as they are")),
    close_codes={1000: "the VM stopped", 4001: "another client took the console over",
                 4002: "kimchid is shutting down",
                 4003: "the console failed (the reason is libvirt's)"},
    subprotocols=("binary",),
)


def register(table: RouteTable, access: Access, consoles: SerialConsoles) -> None:
    factory = WebSocketServerFactory()
    factory.protocol = SerialSocket
    # a client busy elsewhere still reads why its console closed: the closing handshake
    # waits for it (past the timeout the connection is reset, and unread frames are lost)
    factory.setProtocolOptions(autoPingInterval=30, autoPingTimeout=15,
                               closeHandshakeTimeout=10,
                               perMessageCompressionAccept=lambda offers: None)
    socket = WebSocketResource(factory)

    async def serial(call: Call) -> Any:
        host, vm = access.vm_at(call.who, call.args)  # 403 for a user's non-assigned VM
        name = vm["name"]
        if vm["state"] != "running":
            raise InvalidOperation("KCHVM0020E", name=name, state=vm["state"])
        if not await consoles.has_console(host, name):
            raise InvalidOperation("KCHVM0033E", name=name)
        if (call.header("upgrade") or "").lower() != "websocket":
            raise InvalidOperation("KCHVM0022E", name=name)
        check_handshake(call.header)
        req: Any = call.request
        if req.channel is not None and req.channel.transport is not None:
            req.channel.transport.kimchi_serial = (consoles, host, name)
        return socket

    for at, where in VM_ADDRESSES:
        table.add(f"{at}/serial", "GET", serial,
                  f"The VM's serial console (text over WebSocket){where}", "vms", raw=True,
                  websocket=SERIAL_SOCKET,
                  description="A WebSocket (`Upgrade: websocket`) carrying the VM's serial "
                              "console through libvirt: the guest's output as binary "
                              "messages, the client's messages (text or binary) to the "
                              "guest. The newest client takes the console over; the one "
                              "that held it is closed with 4001. The socket closes with "
                              "1000 when the VM stops, 4002 when kimchid shuts down, 4003 "
                              "when the console fails. The same login, origin check and "
                              "access rules as the rest. 400: not running (KCHVM0020E), no "
                              "serial console (KCHVM0033E), not a WebSocket request "
                              "(KCHVM0022E).")
