"""/events: the event stream over WebSocket, Server-Sent Events, or JSON pages."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.types import ConnectionRequest
from twisted.internet import defer, task
from twisted.internet.interfaces import IReactorTime
from twisted.internet.tcp import Server as TCPServer
from twisted.logger import Logger
from twisted.web.server import Request

from kimchid import bus
from kimchid.api.access import Access
from kimchid.api.routes import EVENT_SCHEMA, JSON, Call, Reply, RouteTable
from kimchid.errors import InvalidRequest
from kimchid.model.events import RESET, Event, EventFilter, EventHub, Watcher
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
    """Write ``data``; on plain TCP with nothing buffered, try the socket at once.

    A fan-out writes to hundreds of sockets per event: through ``transport.write``
    each costs a reactor turn and two epoll changes; a direct ``send`` that takes
    everything (the usual case) costs one system call.  Whatever the socket does not
    take goes through ``transport.write``, behind nothing, so the order holds.
    """
    if (type(transport) is TCPServer and transport.connected and not transport.disconnecting
            and not transport.dataBuffer and not transport._tempDataBuffer):
        try:
            sent = transport.socket.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            sent = 0  # let Twisted find out and close it its usual way
        if sent == len(data):
            return
        data = data[sent:]
    transport.write(data)


class _SocketWatcher(Watcher):
    def __init__(self, proto: EventSocket, wants: EventFilter, limit: int) -> None:
        super().__init__(wants, limit)
        self.proto = proto

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

    def offer_many(self, events: list[Event]) -> None:
        p = self.proto
        if (len(events) == 1 or not self.ready or self.paused or self.dropped
                or p.state != p.STATE_OPEN or p.send_queue or p._perMessageCompress is not None):
            super().offer_many(events)
            return
        frames = []
        for ev in events:
            if ev.key > self.last and self.wants(ev):
                self.last = ev.key
                if ev.prepared is None:
                    ev.prepared = p.factory.prepareMessage(ev.text.encode())
                frames.append(ev.prepared.payloadHybi)
        if frames:  # the same frames on the wire, in one write
            _send(p.transport, b"".join(frames))

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
    def __init__(self, request: Request, wants: EventFilter, limit: int,
                 done: defer.Deferred[bytes]) -> None:
        super().__init__(wants, limit)
        self.request = request
        self.done = done

    def write(self, ev: Event) -> None:
        self.request.write(b"id: %s\ndata: %s\n\n" % (ev.id.encode(), ev.text.encode()))

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
        upgrade = (call.header("upgrade") or "").lower()
        if upgrade == "websocket":
            if req.channel is not None and req.channel.transport is not None:
                req.channel.transport.kimchi_access = check
            return socket  # Klein renders it: the connection becomes a WebSocket
        accept = (call.header("accept") or "").lower()
        if SSE in accept:
            since = since or _since(call.header("last-event-id"))
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
        description="With `Upgrade: websocket`: one JSON text frame per event. With "
                    "`Accept: text/event-stream`: SSE (`Last-Event-ID` resumes). Otherwise the "
                    "JSON page of events after `since` (with a `Link: <...>; rel=\"next\"` "
                    "header when there may be more: one answer reads at most 20 pages of "
                    "`[events] page_size` events of the stream, matching or not). When "
                    "`since` is older than what is kept, the first event is "
                    "`{\"type\": \"reset\"}`: list again.",
    )
