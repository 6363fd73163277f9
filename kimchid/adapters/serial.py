"""A VM's serial console through libvirt: a non-blocking ``virStream`` of ``openConsole``.

libvirt carries the stream, so this works for a VM on any host the daemon is
connected to.  The threads are the connection's own:

* opening, writing, pausing and closing run on the connection's thread pool
  (:meth:`LibvirtConnection.run`), one at a time and in order (keys typed must reach
  the guest in the order they were typed);
* the guest's output is read on libvirt's event-loop thread (a stream event callback)
  and handed to the reactor with ``callFromThread``, as is the stream's end.

The console is opened with ``VIR_DOMAIN_CONSOLE_FORCE``: whoever held it (another
browser window, ``virsh console``) loses it to the newest client, whose stream then
fails with an I/O error.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from twisted.internet import defer
from twisted.logger import Logger

from kimchid.adapters.libvirt import LibvirtConnection

log = Logger()

READ_CHUNK = 64 * 1024  # bytes asked of the stream at a time
READ_BURST = 256 * 1024  # at most this much per event: the event thread serves every host
INPUT_LIMIT = 1024 * 1024  # typed bytes waiting for the guest; more is dropped
SEND_PATIENCE = 5.0  # seconds a write may wait for room in the stream


class SerialSink(Protocol):
    """Who hears a serial stream (called on the reactor thread)."""

    def received(self, data: bytes) -> None:
        """Bytes the guest wrote to its console."""

    def stream_ended(self, eof: bool, error: str) -> None:
        """The stream ended: ``eof`` when the guest's side closed (the VM stopped), else
        libvirt's ``error`` (the console was taken by another client, libvirtd went away)."""


class SerialStream:
    """One open serial console of the VM ``name`` on the connection ``conn``."""

    def __init__(self, conn: LibvirtConnection, name: str, reactor: Any,
                 sink: SerialSink) -> None:
        self.conn = conn
        self.name = name
        self.reactor = reactor
        self.sink = sink
        self.closed = False  # reactor thread: no more writes, no more news for the sink
        self._stream: Any = None  # the virStream; guarded by _lock (threads)
        self._lock = threading.Lock()
        self._ops: deque[tuple[Callable[[], Callable[[Any], None]],
                               Callable[[], None] | None]] = deque()
        self._busy = False  # an operation runs on the connection's threads
        self._outbox = bytearray()  # typed bytes not yet handed to a send
        self._reading = True  # what the browser's pace asks for (reactor thread)
        self._releasing = False  # the stream's abort is queued
        self._released = False  # ... and ran
        self._release_waiters: list[defer.Deferred[None]] = []

    # -- on the reactor thread ------------------------------------------------------------

    async def open(self) -> None:
        """Open the console (taking it over from whoever held it); libvirt's error as it
        is raised (``libvirtError``), or :class:`ServiceUnavailable`."""
        await self.conn.run(self._open)

    def write(self, data: bytes) -> None:
        """Send ``data`` to the guest, after what was written before."""
        if self.closed or not data:
            return
        if len(self._outbox) + len(data) > INPUT_LIMIT:
            log.warn("serial console of {vm}: the guest does not read its input; "
                     "{n} bytes dropped", vm=self.name, n=len(data))
            return
        queued = bool(self._outbox)  # a send of the outbox is queued already
        self._outbox += data
        if not queued:
            self._submit(self._send_outbox)

    def pause_reading(self) -> None:
        """Stop reading the guest's output until :meth:`resume_reading` (flow control:
        the browser takes it slower than the guest writes)."""
        self._set_reading(False)

    def resume_reading(self) -> None:
        self._set_reading(True)

    def close(self) -> defer.Deferred[None]:
        """Let the console go (abort the stream); fires once libvirt has it back."""
        self._let_go()
        if self._released:
            return defer.succeed(None)
        done: defer.Deferred[None] = defer.Deferred()
        self._release_waiters.append(done)
        return done

    def _let_go(self) -> None:
        """No more writes or news; the stream is aborted after what runs now."""
        if self._releasing:
            return
        self._releasing = self.closed = True
        self._outbox.clear()
        self._ops.clear()
        self._submit(lambda: self._abort, then=self._was_released)

    def _was_released(self) -> None:
        self._released = True
        waiters, self._release_waiters = self._release_waiters, []
        for w in waiters:
            w.callback(None)

    def _set_reading(self, on: bool) -> None:
        if self.closed or self._reading == on:
            return
        self._reading = on
        self._submit(lambda: self._apply_reading(self._reading))

    def _submit(self, op: Callable[[], Callable[[Any], None]],
                then: Callable[[], None] | None = None) -> None:
        """Queue ``op``: called here when its turn comes, it gives what to run on the
        connection's threads; ``then`` is called here once that ran (or failed)."""
        self._ops.append((op, then))
        if not self._busy:
            self._next()

    def _next(self) -> None:
        if not self._ops:
            self._busy = False
            return
        self._busy = True
        op, then = self._ops.popleft()
        d = defer.Deferred.fromCoroutine(self.conn.run(op()))
        d.addErrback(self._failed)
        if then is not None:
            d.addBoth(lambda _r: then())
        d.addBoth(lambda _r: self._next())

    def _failed(self, failure: Any) -> None:
        if self.closed:
            return  # aborting a stream that already ended, libvirtd gone: nothing to tell
        log.warn("serial console of {vm}: {error}", vm=self.name,
                 error=failure.getErrorMessage())
        self._let_go()
        self.sink.stream_ended(False, failure.getErrorMessage())

    def _send_outbox(self) -> Callable[[Any], None]:
        data, self._outbox = bytes(self._outbox), bytearray()
        return lambda _conn: self._send(data)

    def _delivered(self, data: bytes) -> None:
        if not self.closed:
            self.sink.received(data)

    def _ended(self, eof: bool, error: str) -> None:
        if self.closed:
            return
        self._let_go()
        self.sink.stream_ended(eof, error)

    # -- on the connection's threads ------------------------------------------------------

    def _open(self, conn: Any) -> None:
        import libvirt

        stream = conn.newStream(libvirt.VIR_STREAM_NONBLOCK)
        try:
            conn.lookupByName(self.name).openConsole(None, stream,
                                                     libvirt.VIR_DOMAIN_CONSOLE_FORCE)
            with self._lock:
                self._stream = stream
            stream.eventAddCallback(_EVENTS_READING, self._event, None)
        except BaseException:
            with self._lock:
                self._stream = None
            _quietly(stream.abort)
            raise

    def _send(self, data: bytes) -> None:
        with self._lock:
            stream = self._stream
        if stream is None:
            return
        view = memoryview(data)
        deadline = time.monotonic() + SEND_PATIENCE
        while view:
            sent = stream.send(bytes(view[:READ_CHUNK]))
            if sent == -2:  # no room now (non-blocking): the guest reads slowly
                if time.monotonic() > deadline:
                    raise TimeoutError("the guest does not take its input")
                time.sleep(0.01)
                continue
            view = view[sent:]

    def _apply_reading(self, on: bool) -> Callable[[Any], None]:
        def apply(_conn: Any) -> None:
            with self._lock:
                stream = self._stream
            if stream is not None:
                stream.eventUpdateCallback(_EVENTS_READING if on else _EVENTS_PAUSED)

        return apply

    def _abort(self, _conn: Any) -> None:
        with self._lock:
            stream, self._stream = self._stream, None
        if stream is not None:
            _quietly(stream.eventRemoveCallback)
            _quietly(stream.abort)

    # -- on libvirt's event-loop thread ---------------------------------------------------

    def _event(self, stream: Any, events: int, _opaque: Any) -> None:
        import libvirt

        with self._lock:
            if stream is not self._stream:
                return  # let go meanwhile
        chunks: list[bytes] = []
        ended: tuple[bool, str] | None = None
        if events & libvirt.VIR_STREAM_EVENT_READABLE:
            got = 0
            while got < READ_BURST:
                try:
                    data = stream.recv(READ_CHUNK)
                except libvirt.libvirtError as e:
                    ended = (False, _why(e))
                    break
                if data == -2:  # nothing more for now
                    break
                if not data or not isinstance(data, bytes):
                    ended = (True, "")  # the guest's side closed
                    break
                chunks.append(data)
                got += len(data)
        if ended is None and events & (libvirt.VIR_STREAM_EVENT_ERROR
                                       | libvirt.VIR_STREAM_EVENT_HANGUP):
            ended = (bool(events & libvirt.VIR_STREAM_EVENT_HANGUP), "the stream failed")
        if chunks:
            self.reactor.callFromThread(self._delivered, b"".join(chunks))
        if ended is not None:
            _quietly(stream.eventRemoveCallback)  # no more events for a stream that ended
            self.reactor.callFromThread(self._ended, *ended)


# the stream's events while the guest's output is read, and while reading is paused
_EVENTS_READING, _EVENTS_PAUSED = 1 | 4 | 8, 4 | 8  # VIR_STREAM_EVENT_{READABLE,ERROR,HANGUP}


def _quietly(fn: Callable[[], Any]) -> None:
    try:
        fn()
    except Exception:
        pass


def _why(e: BaseException) -> str:
    get = getattr(e, "get_error_message", None)
    return str((get() if get else None) or e)
