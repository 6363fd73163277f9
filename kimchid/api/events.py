"""/events: the event stream over WebSocket, Server-Sent Events, or JSON pages."""

from __future__ import annotations

from functools import partial
from typing import Any
from urllib.parse import urlencode

from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.types import ConnectionRequest
from OpenSSL.SSL import Error as TLSError
from OpenSSL.SSL import WantReadError as TLSWantRead
from twisted.internet import defer, task
from twisted.internet.interfaces import IReactorTime
from twisted.internet.tcp import Server as TCPServer
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOProtocol
from twisted.python.failure import Failure
from twisted.web.server import Request

from kimchi import bus
from kimchi.errors import InvalidRequest
from kimchid.api.access import Access
from kimchid.api.routes import EVENT_SCHEMA, JSON, Call, Reply, RouteTable
from kimchid.api.streams import TEXT, EventStream, Message, WebSocket, check_handshake
from kimchid.model.events import RESET, Batch, Event, EventFilter, EventHub, Watcher
from kimchid.model.tasks import TaskService

log = Logger()

SSE = "text/event-stream"


def _since(value: str | None) -> str | None:
    if value is None or value == "":
        return None
    try:
        bus.parse_event_id(value)
    except ValueError:
        raise InvalidRequest("KCHEVT0001E", since=value) from None
    return value


# -- WebSocket ----------------------------------------------------------------------


def _send(transport: Any, data: bytes) -> None:
    """Write ``data`` now, in one go, over plain TCP or TLS alike.

    A fan-out writes to hundreds of sockets per batch of events.  Through
    ``transport.write`` each write costs a reactor pass: over plain TCP a buffered
    write and two epoll changes; over TLS, Twisted's ``BufferingTLSTransport`` first
    holds the bytes for a ``callLater(0)``, then encrypts them and writes the records
    buffered.  Here the usual case (nothing buffered before, one record's worth) is
    sealed and sent at once (:func:`_seal`, :func:`_put`); anything else is encrypted
    now (:func:`_encrypt`) and goes through the TCP transport's ``write``, behind what
    it holds, so the order holds, and that transport pauses the watcher (its producer)
    when its buffer fills: flow control as before.
    """
    lane = _lane(transport)
    if lane is not None:
        sealed = _seal(lane, data)
        if sealed is not None:
            if sealed:
                _put([(lane, sealed)])
            return
    if isinstance(transport, TLSMemoryBIOProtocol):
        records = _encrypt(transport, data)
        if records is None:
            return
        transport, data = transport.transport, records
    transport.write(data)


# A socket's way out for the fan-out, found once (after the TLS handshake): the TLS
# layer, its OpenSSL handles and small-write buffer (None over plain TCP), the TCP
# transport and its socket's send.
_Lane = tuple[Any, Any, Any, Any, TCPServer, Any]


def _lane(transport: Any) -> _Lane | None:
    if isinstance(transport, TLSMemoryBIOProtocol):
        tcp = transport.transport
        if (_ssl_lib is None or not transport._handshakeDone or type(tcp) is not TCPServer
                or transport._lostTLSConnection):
            return None  # not yet (or not this kind): _send, until the next batch
        conn = transport._tlsConnection
        return (transport, conn._ssl, conn._from_ssl, getattr(transport, "_aggregator", None),
                tcp, tcp.socket.send)
    if type(transport) is TCPServer:
        return (None, None, None, None, transport, transport.socket.send)
    return None


def _seal(lane: _Lane, data: bytes) -> bytes | None:
    """The bytes to put on ``lane``'s socket for ``data`` (over TLS: its records, made
    now), or None when this is not :func:`_send`'s usual case and ``_send`` must take it
    (anything buffered before it, a closing connection, a batch over one record)."""
    tls, ssl, bio, held, tcp, _ = lane
    if tcp.dataBuffer or tcp._tempDataBuffer or tcp.disconnecting or not tcp.connected:
        return None
    if tls is None:
        return data
    if (tls._appSendBuffer or tls.disconnecting or tls._lostTLSConnection
            or (held is not None and held._buffer) or len(data) > _RECORD):
        return None
    done = _ssl_lib.SSL_write(ssl, data, len(data))
    if done <= 0:
        return None  # nothing taken: _send's way finds out why, and says so
    got = _ssl_lib.BIO_read(bio, _OUT, 2**16)
    records: bytes = _ssl_ffi.buffer(_OUT, got)[:] if got > 0 else b""
    if done < len(data):  # a partial write (not seen: OpenSSL writes a record whole)
        _send(tcp, records)
        _send(tls, data[done:])
        return b""
    return records


def _put(outbox: list[tuple[_Lane, bytes]]) -> None:
    """Send what :func:`_seal` made for each socket of a batch, in one pass after all of
    them were made; what a socket does not take goes to its TCP transport's buffer."""
    for lane, data in outbox:
        try:
            sent = lane[5](data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            sent = 0  # let Twisted find out and close it its usual way
        if sent != len(data):
            lane[4].write(data[sent:])


_RECORD = 2**14  # the most plaintext one TLS record carries

try:  # pyOpenSSL's own binding of OpenSSL: SSL_write and BIO_read without its wrappers,
    # which cost more than the C calls (Connection.send, Connection.bio_read: each
    # checks and allocates per call; 2.9 against 1.2 us of CPU per 250-byte frame,
    # bench/_tls_layer.py)
    from OpenSSL._util import ffi as _ssl_ffi
    from OpenSSL._util import lib as _ssl_lib

    _OUT: Any = _ssl_ffi.new("char[]", 2**16)  # the reactor thread's buffer for records
except ImportError:  # pragma: no cover - another pyOpenSSL: its public calls do it all
    _ssl_lib = None


def _encrypt(tls: TLSMemoryBIOProtocol, data: bytes) -> bytes | None:
    """The TLS records carrying ``data``, made now through pyOpenSSL (what :func:`_seal`
    does not take: several records, bytes held before them); None when ``data`` went
    the TLS layer's own way instead (handshake not done, closing, or bytes already
    waiting in the TLS layer: they go first)."""
    if (tls._lostTLSConnection or not tls._handshakeDone or tls.disconnecting
            or tls._appSendBuffer or tls.transport is None):
        tls.write(data)
        return None
    held = getattr(tls, "_aggregator", None)  # BufferingTLSTransport's small-write buffer
    if held is not None:
        held.flush()  # what autobahn wrote before (a ping, a pong) goes first
    conn = tls._tlsConnection
    out = []
    done = 0
    while done < len(data):
        try:
            done += conn.send(data[done:done + _RECORD])  # the whole of a small batch
        except TLSWantRead:  # the TLS layer waits for the peer: its own buffer keeps order
            tls._bufferedWrite(data[done:])
            break
        except TLSError:
            tls._tlsShutdownFinished(Failure())  # as Twisted does when a send fails
            return None
        out.append(_records(conn))
    return b"".join(out) if len(out) != 1 else out[0]


def _records(conn: Any) -> bytes:
    """Every byte waiting in the connection's outgoing memory BIO."""
    out = []
    while True:
        try:
            chunk = conn.bio_read(65536)
        except TLSWantRead:
            break
        out.append(chunk)
        if len(chunk) < 65536:
            break
    return b"".join(out)


class _SocketWatcher(Watcher):
    transport = "websocket"

    def __init__(self, proto: EventSocket, wants: EventFilter, limit: int) -> None:
        super().__init__(wants, limit)
        self.proto = proto
        self.lane: _Lane | None = None  # the fan-out's way to the socket, once it has one

    def write(self, ev: Event) -> None:
        p = self.proto
        if ev.prepared is None:  # framed once, sent to every socket as is
            ev.prepared = p.factory.prepareMessage(ev.text.encode())
        if p.state == p.STATE_OPEN and not p.send_queue and p._perMessageCompress is None:
            # The hot path of a fan-out: autobahn's sendData formats a debug message per
            # frame even when debug logging is off; the frame is ready, write it.
            _send(p.transport, ev.prepared.payloadHybi)
        else:
            p.sendPreparedMessage(ev.prepared)

    def offer_many(self, events: list[Event], batch: Batch) -> None:
        p = self.proto
        if (not self.ready or self.paused or self.dropped
                or p.state != p.STATE_OPEN or p.send_queue or p._perMessageCompress is not None):
            super().offer_many(events, batch)
            return
        # the same frames on the wire, in one write; framed and joined once per filter key
        payload = self.wire(events, batch, "ws", self._frames)
        if payload is None:
            return
        if self.lane is None:
            self.lane = _lane(p.transport)
        data = None if self.lane is None else _seal(self.lane, payload)
        if data is None:
            _send(p.transport, payload)
        elif data:  # sent once every socket's bytes are made (Batch.then)
            outbox = batch.shared.get(_put)
            if outbox is None:
                outbox = batch.shared[_put] = []
                batch.then.append(partial(_put, outbox))
            outbox.append((self.lane, data))

    def _frames(self, events: list[Event]) -> bytes:
        make = self.proto.factory.prepareMessage
        for ev in events:
            if ev.prepared is None:  # framed once, sent to every socket as is
                ev.prepared = make(ev.text.encode())
        return b"".join(ev.prepared.payloadHybi for ev in events)

    def write_reset(self) -> None:
        self.proto.sendMessage(RESET.encode())

    def write_ephemeral(self, text: str) -> None:
        self.proto.sendMessage(text.encode())

    def drop(self, reason: str) -> None:
        self.proto.sendClose(4000, reason[:120])


class EventSocket(WebSocketServerProtocol):
    watcher: _SocketWatcher | None = None

    def onConnect(self, request: ConnectionRequest) -> None:
        p = {k: v[-1] for k, v in request.params.items()}
        self.since = _since(p.get("since"))
        # what this user may see, decided by the HTTP handler before the upgrade
        self.wants = EventFilter(p.get("types"), p.get("task"),
                                 getattr(self.transport, "kimchi_access", None))

    def onOpen(self) -> None:
        hub: EventHub = self.factory.hub
        self.watcher = _SocketWatcher(self, self.wants, self.factory.buffer_limit)
        # After the upgrade the HTTP channel is still the transport's producer: ours takes over.
        transport: Any = self.transport
        if getattr(transport, "producer", None) is not None:
            transport.unregisterProducer()
        transport.registerProducer(self.watcher, True)
        d = defer.Deferred.fromCoroutine(hub.watch(self.watcher, self.since))
        d.addErrback(self._failed)

    def _failed(self, f: Any) -> None:
        log.warn("event socket back-fill failed: {error}", error=f.getErrorMessage())
        self.sendClose(1011, "event stream unavailable; retry")

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        pass  # the stream is one-way; clients resume by reconnecting with since

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        if self.watcher is not None:
            self.factory.hub.unwatch(self.watcher)
            self.watcher.dropped = True


class EventSocketFactory(WebSocketServerFactory):
    protocol = EventSocket

    def __init__(self, hub: EventHub, buffer_limit: int) -> None:
        super().__init__()
        self.hub = hub
        self.buffer_limit = buffer_limit


def socket_factory(hub: EventHub, buffer_limit: int) -> EventSocketFactory:
    factory = EventSocketFactory(hub, buffer_limit)
    factory.setProtocolOptions(autoPingInterval=30, autoPingTimeout=15,
                               perMessageCompressionAccept=lambda offers: None)
    return factory


# -- Server-Sent Events ----------------------------------------------------------------


class _StreamWatcher(Watcher):
    transport = "sse"

    def __init__(self, request: Request, wants: EventFilter, limit: int,
                 done: defer.Deferred[bytes]) -> None:
        super().__init__(wants, limit)
        self.request = request
        self.done = done

    def write(self, ev: Event) -> None:
        self.request.write(b"id: %s\ndata: %s\n\n" % (ev.id.encode(), ev.text.encode()))

    def offer_many(self, events: list[Event], batch: Batch) -> None:
        if not self.ready or self.paused or self.dropped:
            super().offer_many(events, batch)
            return
        chunk = self.wire(events, batch, "sse", lambda got: b"".join(
            b"id: %s\ndata: %s\n\n" % (ev.id.encode(), ev.text.encode()) for ev in got))
        if chunk is not None:
            self.request.write(chunk)  # one chunk (one TLS write) per read of the stream

    def write_reset(self) -> None:
        self.request.write(b"data: %s\n\n" % RESET.encode())

    def write_ephemeral(self, text: str) -> None:
        self.request.write(b"data: %s\n\n" % text.encode())

    def drop(self, reason: str) -> None:
        self.request.write(b": dropped: %s\n\n" % reason.encode())
        if not self.done.called:
            self.done.callback(b"")


async def _serve_sse(hub: EventHub, clock: IReactorTime, request: Request,
                     wants: EventFilter, since: str | None, limit: int) -> bytes:
    request.setHeader(b"Content-Type", b"text/event-stream; charset=utf-8")
    request.setHeader(b"Cache-Control", b"no-store")
    request.setHeader(b"X-Accel-Buffering", b"no")
    request.write(b"retry: 1000\n\n")
    done: defer.Deferred[bytes] = defer.Deferred()
    w = _StreamWatcher(request, wants, limit, done)
    request.registerProducer(w, True)

    def gone(_: object) -> None:
        if not done.called:
            done.callback(b"")

    request.notifyFinish().addBoth(gone)
    keepalive = task.LoopingCall(lambda: request.write(b": keepalive\n\n"))
    keepalive.clock = clock
    keepalive.start(15.0, now=False)
    try:
        await hub.watch(w, since)
        return await done
    finally:
        hub.unwatch(w)
        w.dropped = True
        keepalive.stop()
        if request.channel is not None:  # None once the client has gone
            request.unregisterProducer()


# -- the route -------------------------------------------------------------------------

_EVENT = {"$ref": "#/components/schemas/Event"}
_NOTICES = ('`{"type": "reset"}` (no id) when `since` is older than what is kept: list '
            'again; notices that are not kept (no id): `service.degraded` while Redis is '
            'away, `vm.stats` figures')

EVENTS_SOCKET = WebSocket(
    "The event stream: one text message per event, from `since` (the query) on",
    from_server=(Message(TEXT, "one event; " + _NOTICES, JSON, _EVENT),),
    from_client=(Message(TEXT, "ignored: the stream is one-way; resume by connecting "
                               "again with ?since=<the last id>"),),
    close_codes={4000: "dropped: the client read too slowly (the reason says so); connect "
                       "again with ?since=<the last id>",
                 1011: "the stream could not be read (Redis away): connect again"},
    only=False,
)

EVENTS_SSE = EventStream(
    "Server-sent events (with Accept: text/event-stream): each event an `id:` and a "
    "`data:` line; resume with Last-Event-ID or ?since=",
    data=_EVENT,
    comments=(": keepalive (every 15 s)",
              ": dropped: <reason> (the client read too slowly; the stream ends: "
              "reconnect with Last-Event-ID)"),
    retry_ms=1000,
    example='retry: 1000\n\nid: 1718000000000-0\ndata: {"id":"1718000000000-0",'
            '"type":"vm.state","time":"2024-06-10T06:13:20Z","data":{"name":"vm1",'
            '"state":"running"}}\n\n',
)


def register(table: RouteTable, hub: EventHub, clock: IReactorTime, buffer_limit: int,
             page_size: int, access: Access, tasks: TaskService) -> None:
    factory = socket_factory(hub, buffer_limit)
    socket = WebSocketResource(factory)

    async def events(call: Call) -> Any:
        req: Any = call.request  # twisted.web.server.Request
        check = None
        if call.who is not None and not call.who.is_admin:
            # tasks running now (their progress events carry no task to judge by);
            # the others' events carry it
            own = {t["id"] for t in await tasks.list(status="running")
                   if access.can_see_task(call.who, t)}
            check = access.event_filter(call.who, own)
        wants = EventFilter(call.query.get("types"), call.query.get("task"), check)
        since = _since(call.query.get("since"))
        last_seen = _since(call.header("last-event-id"))  # refused when invalid, read by SSE
        upgrade = (call.header("upgrade") or "").lower()
        if upgrade == "websocket":
            check_handshake(call.header)
            if req.channel is not None and req.channel.transport is not None:
                req.channel.transport.kimchi_access = check
            return socket  # Klein renders it: the connection becomes a WebSocket
        accept = (call.header("accept") or "").lower()
        if SSE in accept:
            since = since or last_seen
            return await _serve_sse(hub, clock, req, wants, since, buffer_limit)
        limit = int(call.query.get("limit", page_size))
        events, more = await hub.page(since or "0", wants, limit)
        if more is None:
            return Reply(200, events)
        # more to read: the same request from where this one stopped (RFC 8288)
        query = urlencode({**call.query, "since": more})
        return Reply(200, events, {"Link": f"</events?{query}>; rel=\"next\""})

    table.add(
        "/events", "GET", events, "Watch events (WebSocket, SSE) or page through them (JSON)",
        "events", raw=True, produces=(JSON, SSE),
        query={
            "since": {"type": "string", "pattern": f"^$|{bus.EVENT_ID_PATTERN}",
                      "description": "resume after this event id (0: everything kept)"},
            "types": {"type": "string", "maxLength": 512,
                      "pattern": f"^$|{EventFilter.PATTERN}",
                      "description": "comma-separated types, * wildcards: task.*,vm.state"},
            "task": {"type": "string", "maxLength": 64},
            "limit": {"type": "integer", "minimum": 1, "maximum": 10000},
        },
        response={"type": "array", "items": EVENT_SCHEMA},
        headers={"Last-Event-ID": (
            "with Accept: text/event-stream: resume after this event id (what an EventSource "
            "sends when it reconnects; ?since= wins)",
            {"type": "string", "pattern": f"^$|{bus.EVENT_ID_PATTERN}"})},
        websocket=EVENTS_SOCKET, sse=EVENTS_SSE,
        description="With `Upgrade: websocket`: one JSON text frame per event. With "
                    "`Accept: text/event-stream`: SSE (`Last-Event-ID` resumes). Otherwise the "
                    "JSON page of events after `since` (with a `Link: <...>; rel=\"next\"` "
                    "header when there may be more: one answer reads at most 20 pages of "
                    "`[events] page_size` events of the stream, matching or not). When "
                    "`since` is older than what is kept, the first event is "
                    "`{\"type\": \"reset\"}`: list again.",
    )
