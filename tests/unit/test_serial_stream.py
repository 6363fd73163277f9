"""The serial console's parts that need no guest: which domains have a console, the stream's
life on a fake libvirt (the threads' hand-offs made immediate), why a console ended, and
the xterm.js script kimchid makes from Debian's node-xterm."""

from __future__ import annotations

import shutil
import subprocess
from typing import Any

import libvirt
import pytest
from twisted.internet.testing import MemoryReactorClock

from kimchi.errors import ServiceUnavailable
from kimchid.adapters.serial import SerialStream
from kimchid.api import xterm
from kimchid.model.serial import STOPPED, TAKEN_OVER, SerialConsoles, has_serial_console

READABLE, ERROR, HANGUP = (libvirt.VIR_STREAM_EVENT_READABLE, libvirt.VIR_STREAM_EVENT_ERROR,
                           libvirt.VIR_STREAM_EVENT_HANGUP)


@pytest.mark.parametrize(("devices", "has"), [
    ("<serial type='pty'><target port='0'/></serial>", True),
    ("<console type='pty'><target type='virtio'/></console>", True),
    ("<serial type='file'><source path='/tmp/x'/></serial>", False),
    ("<graphics type='vnc'/>", False),
    ("", False),
])
def test_which_domains_have_a_serial_console(devices: str, has: bool) -> None:
    xml = f"<domain><name>x</name><devices>{devices}</devices></domain>"
    assert has_serial_console(xml) is has


class FakeStream:
    """A virStream: what was sent, the events asked for, and what recv gives."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.events: int | None = None
        self.callback: Any = None
        self.incoming: list[Any] = []  # bytes, -2 (nothing now), b"" (EOF) or an exception
        self.aborted = False

    def eventAddCallback(self, events: int, cb: Any, opaque: Any) -> None:
        self.events, self.callback = events, cb

    def eventUpdateCallback(self, events: int) -> None:
        self.events = events

    def eventRemoveCallback(self) -> None:
        self.events = self.callback = None

    def recv(self, n: int) -> Any:
        item = self.incoming.pop(0) if self.incoming else -2
        if isinstance(item, Exception):
            raise item
        return item

    def send(self, data: bytes) -> int:
        self.sent.append(data)
        return len(data)

    def abort(self) -> None:
        self.aborted = True


class FakeLibvirt:
    """A LibvirtConnection whose calls run at once, on a connection of one domain."""

    def __init__(self, active: bool = True) -> None:
        self.stream = FakeStream()
        self.forced: list[int] = []
        self.active = active

    async def run(self, fn: Any) -> Any:
        return fn(self)

    # the libvirt connection
    def newStream(self, flags: int) -> FakeStream:
        assert flags == libvirt.VIR_STREAM_NONBLOCK
        return self.stream

    def lookupByName(self, name: str) -> Any:
        return self

    def openConsole(self, dev: Any, stream: Any, flags: int) -> None:
        self.forced.append(flags)

    def isActive(self) -> bool:
        return self.active


class Reactor(MemoryReactorClock):
    def callFromThread(self, f: Any, *args: Any, **kw: Any) -> None:
        f(*args, **kw)


class Sink:
    def __init__(self) -> None:
        self.data = b""
        self.ends: list[tuple[bool, str]] = []

    def received(self, data: bytes) -> None:
        self.data += data

    def stream_ended(self, eof: bool, error: str) -> None:
        self.ends.append((eof, error))


def opened(lv: FakeLibvirt, sink: Sink) -> SerialStream:
    stream = SerialStream(lv, "vm1", Reactor(), sink)  # type: ignore[arg-type]
    d = _run(stream.open())
    assert d.called
    return stream


def _run(coro: Any) -> Any:
    from twisted.internet import defer

    return defer.Deferred.fromCoroutine(coro)


def test_the_console_is_taken_over_and_read_and_written_in_order() -> None:
    lv, sink = FakeLibvirt(), Sink()
    stream = opened(lv, sink)
    assert lv.forced == [libvirt.VIR_DOMAIN_CONSOLE_FORCE]
    assert lv.stream.events == READABLE | ERROR | HANGUP
    lv.stream.incoming = [b"Boot", b"ing\r\n", -2]
    lv.stream.callback(lv.stream, READABLE, None)
    assert sink.data == b"Booting\r\n" and sink.ends == []
    stream.write(b"ls")
    stream.write(b"\r")
    assert b"".join(lv.stream.sent) == b"ls\r"
    stream.pause_reading()  # the client is slow: the guest's output waits
    assert lv.stream.events == ERROR | HANGUP
    stream.resume_reading()
    assert lv.stream.events == READABLE | ERROR | HANGUP
    done = stream.close()
    assert done.called and lv.stream.aborted and lv.stream.callback is None
    stream.write(b"late")
    assert b"".join(lv.stream.sent) == b"ls\r"
    assert sink.ends == []  # the client let go: nothing to tell it


@pytest.mark.parametrize(("incoming", "end"), [
    ([b"bye", b""], (True, "")),
    ([libvirt.libvirtError("stream had I/O failure")], (False, "stream had I/O failure")),
])
def test_an_ending_stream_is_told_once_and_let_go(incoming: list[Any],
                                                  end: tuple[bool, str]) -> None:
    lv, sink = FakeLibvirt(), Sink()
    opened(lv, sink)
    callback = lv.stream.callback
    lv.stream.incoming = incoming
    callback(lv.stream, READABLE, None)
    assert sink.ends == [end] and lv.stream.aborted
    callback(lv.stream, READABLE | HANGUP, None)  # a late event: nothing more
    assert len(sink.ends) == 1


def test_why_a_console_ended() -> None:
    reactor = Reactor()
    consoles = SerialConsoles(reactor)

    class Host:
        name = "local"

        def __init__(self, conn: Any) -> None:
            self.conn = conn

    def why(conn: Any, eof: bool) -> Any:
        host: Any = Host(conn)  # the one attribute why_ended reads of a Host
        d = _run(consoles.why_ended(host, "vm1", eof, "stream had I/O failure"))
        reactor.advance(1)
        return d.result

    assert why(FakeLibvirt(active=True), eof=True) == STOPPED  # QEMU let the pty go
    assert why(FakeLibvirt(active=True), eof=False) == TAKEN_OVER  # virsh console --force
    assert why(FakeLibvirt(active=False), eof=False) == STOPPED  # it was being stopped

    class Away(FakeLibvirt):
        async def run(self, fn: Any) -> Any:
            raise ServiceUnavailable("KCHSVC0002E", error="gone")

    assert why(Away(), eof=False).code == 4003


@pytest.mark.skipif(not xterm.installed(), reason="node-xterm is not installed")
def test_xterm_is_one_classic_script_that_defines_terminal() -> None:
    script = xterm.script().decode()
    assert "sourceMappingURL" not in script  # maps are not served
    assert "require(\"chai\")" not in script  # no test module
    node = shutil.which("node")
    if node is None:
        pytest.skip("no node to run it")
    run = subprocess.run([node, "-e", "global.window = {}; eval(require('fs').readFileSync(0, "
                                      "'utf8')); const T = window.Terminal; "
                                      "console.log(typeof T, typeof T.prototype.fit)"],
                         input=script, capture_output=True, text=True, timeout=60)
    assert run.stdout.split() == ["function", "function"], run.stderr
