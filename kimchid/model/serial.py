"""VMs' serial consoles: who holds each, and why one ended.

A VM's serial console has one holder at a time (libvirt's rule).  The newest
client takes it over, as ``virsh console --force`` does: a browser window left open
somewhere, or a forgotten ``virsh console``, must not lock the user out of the VM's
console.  The client that lost it is told so (:data:`TAKEN_OVER`) and is not
reconnected by itself, so two windows do not take the console from each other
forever.

Each ending has a WebSocket close code and a reason a user can read.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from twisted.application.service import Service
from twisted.internet import defer, task
from twisted.logger import Logger

from kimchi.errors import ServiceUnavailable
from kimchid.adapters.serial import SerialStream
from kimchid.model.libvirtobjects import lv

if TYPE_CHECKING:  # hosts -> vms -> this module
    from kimchid.model.hosts import Host

log = Logger()


@dataclass(frozen=True)
class Ending:
    """Why a serial console closed: a WebSocket close code and its reason."""

    code: int
    reason: str


# 1000 or the 4000s: autobahn lets an application close with 1000 or 3000-4999 only
STOPPED = Ending(1000, "the VM stopped")
TAKEN_OVER = Ending(4001, "another client took the serial console over")
SHUTTING_DOWN = Ending(4002, "kimchid is shutting down")
FAILED = 4003


def failed(error: str) -> Ending:
    """The console broke, or could not open: libvirt's ``error`` (or libvirtd away)."""
    return Ending(FAILED, f"the serial console failed: {error}"[:120])  # a reason's room


LIBVIRT_LOST = failed("the connection to libvirt was lost")
STOP_SETTLES = 0.5  # seconds for libvirt to see a VM whose console broke as stopped


def has_serial_console(xml: str | ET.Element) -> bool:
    """Whether a domain (its XML) has a console libvirt can open: a pty serial port or
    console (``openConsole`` opens the first of these)."""
    root = ET.fromstring(xml) if isinstance(xml, str) else xml
    devices = root.find("./devices")
    if devices is None:
        return False
    return any(dev.get("type") == "pty" for dev in devices
               if dev.tag in ("console", "serial"))


class SerialClient(Protocol):
    """A client of a serial console (a WebSocket), called on the reactor thread."""

    def received(self, data: bytes) -> None:
        """Bytes the guest wrote."""

    def ended(self, why: Ending) -> None:
        """The console is over for this client (it closes with ``why``)."""


class SerialSession:
    """One client's hold of one VM's serial console."""

    def __init__(self, consoles: SerialConsoles, host: Host, name: str,
                 client: SerialClient) -> None:
        self.consoles = consoles
        self.host = host
        self.name = name
        self.client = client
        self.over = False
        self.stream = SerialStream(host.conn, name, consoles.reactor, self)

    @property
    def key(self) -> tuple[str, str]:
        return self.host.name, self.name

    def write(self, data: bytes) -> None:
        self.stream.write(data)

    def pause_reading(self) -> None:
        self.stream.pause_reading()

    def resume_reading(self) -> None:
        self.stream.resume_reading()

    def close(self) -> defer.Deferred[None]:
        """The client let go (it closed, or went away)."""
        self.over = True
        self.consoles.forget(self)
        return self.stream.close()

    def end(self, why: Ending) -> defer.Deferred[None]:
        """End it from this side: the client is told ``why``."""
        if self.over:
            return self.stream.close()
        self.over = True
        self.consoles.forget(self)
        done = self.stream.close()
        self.client.ended(why)
        return done

    # SerialSink: the stream's news, on the reactor thread
    def received(self, data: bytes) -> None:
        if not self.over:
            self.client.received(data)

    def stream_ended(self, eof: bool, error: str) -> None:
        if self.over:
            return
        d = defer.Deferred.fromCoroutine(self.consoles.why_ended(self.host, self.name, eof,
                                                                 error))
        d.addErrback(lambda f: failed(error or f.getErrorMessage()))
        d.addCallback(self.end)


class SerialConsoles(Service):
    """The serial consoles open through this daemon; all closed when it stops."""

    name = "serial-consoles"  # type: ignore[assignment]

    def __init__(self, reactor: Any) -> None:
        self.reactor = reactor
        self.sessions: list[SerialSession] = []

    async def has_console(self, host: Host, name: str) -> bool:
        """Whether the VM ``name`` of ``host`` has a serial console (False: gone)."""
        try:
            return await host.conn.run(
                lambda c: has_serial_console(c.lookupByName(name).XMLDesc(0)))
        except lv().libvirtError:
            return False

    async def open(self, host: Host, name: str, client: SerialClient) -> SerialSession:
        """Open the console of VM ``name`` of ``host`` for ``client``, taking it from its
        holder; libvirt's refusal raises ``libvirtError``, libvirtd away
        :class:`ServiceUnavailable`."""
        if not self.running:
            raise ServiceUnavailable("KCHSVC0002E", error="kimchid is shutting down")
        session = SerialSession(self, host, name, client)
        await session.stream.open()
        if not self.running:  # stopped while it opened
            await session.stream.close()
            raise ServiceUnavailable("KCHSVC0002E", error="kimchid is shutting down")
        # libvirt took the console from the one who held it: tell them at once (their
        # stream's own I/O error comes later, and says less)
        for old in [s for s in self.sessions if s.key == session.key]:
            old.end(TAKEN_OVER)
        if not session.over:  # (it may have ended already: the VM stopped meanwhile)
            self.sessions.append(session)
        log.info("serial console of {vm} on {host} opened", vm=name, host=host.name)
        return session

    def forget(self, session: SerialSession) -> None:
        if session in self.sessions:
            self.sessions.remove(session)
            log.info("serial console of {vm} on {host} closed", vm=session.name,
                     host=session.host.name)

    async def why_ended(self, host: Host, name: str, eof: bool, error: str) -> Ending:
        """Why a console's stream ended.  The guest's side closing (``eof``) is QEMU
        letting its pty go: the VM stops (libvirt may not say so yet).  An I/O error is
        another client taking the console while the VM runs, or the VM stopping: asked a
        moment later (a VM being stopped is not inactive yet), libvirt tells them apart."""
        if eof:
            return STOPPED
        await task.deferLater(self.reactor, STOP_SETTLES, lambda: None)
        try:
            active = await host.conn.run(lambda c: bool(c.lookupByName(name).isActive()))
        except ServiceUnavailable:
            return LIBVIRT_LOST
        except lv().libvirtError:
            active = False  # gone altogether
        return TAKEN_OVER if active else STOPPED

    def stopService(self) -> defer.Deferred[None]:
        """Close every console (the clients hear :data:`SHUTTING_DOWN`) and give each
        back to libvirt while the connections are still open."""
        super().stopService()
        sessions, self.sessions = self.sessions, []
        return defer.DeferredList([s.end(SHUTTING_DOWN) for s in sessions],
                                  consumeErrors=True).addCallback(lambda _r: None)

