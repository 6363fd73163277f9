"""The reference of bench/fanout.py: a bare autobahn (Twisted) WebSocket broadcast server.

It reads the same Redis event stream as kimchid (a redis-py thread blocked in XREAD hands
each batch to the reactor) and sends every event, in kimchid's wire form, to every
connected client with ``sendMessage`` (``--prepared``: one ``prepareMessage`` per event,
then ``sendPreparedMessage``, as kimchid does).  No filters, no flow control, no resume:
the floor of "fan one event out to N sockets" with autobahn on Twisted.  ``--tls CERT KEY``:
over TLS, with kimchid's own TLS context (``kimchid.auth.tls.context_factory``) and Twisted's
TLS layer as it comes.

    python bench/_ws_broadcast_server.py REDIS_URL STREAM_KEY [--prepared] [--tls CERT KEY]
Prints ``PORT <n>`` once listening on 127.0.0.1.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis  # noqa: E402
from autobahn.twisted.websocket import (  # noqa: E402
    WebSocketServerFactory,
    WebSocketServerProtocol,
)
from twisted.internet import reactor  # noqa: E402

from kimchi import bus  # noqa: E402

CLIENTS: set[WebSocketServerProtocol] = set()


class Proto(WebSocketServerProtocol):
    def onOpen(self) -> None:
        CLIENTS.add(self)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        CLIENTS.discard(self)


def main() -> None:
    url, key = sys.argv[1], sys.argv[2]
    prepared = "--prepared" in sys.argv
    factory = WebSocketServerFactory()
    factory.protocol = Proto
    factory.setProtocolOptions(autoPingInterval=30, autoPingTimeout=15,
                               perMessageCompressionAccept=lambda offers: None)

    def broadcast(entries: list) -> None:
        for eid, fields in entries:
            payload = bus.event_json(eid, fields).encode()
            if prepared:
                msg = factory.prepareMessage(payload)
                for c in list(CLIENTS):
                    c.sendPreparedMessage(msg)
            else:
                for c in list(CLIENTS):
                    c.sendMessage(payload)

    def reader() -> None:
        r = redis.Redis.from_url(url, decode_responses=True)
        newest: Any = r.xrevrange(key, count=1)
        last = newest[0][0] if newest else "0"
        while True:
            reply: Any = r.xread({key: last}, count=1000, block=1000)
            for _k, entries in reply or ():
                last = entries[-1][0]
                reactor.callFromThread(broadcast, entries)  # type: ignore[attr-defined]

    if "--tls" in sys.argv:
        from kimchid.auth.tls import context_factory

        i = sys.argv.index("--tls")
        options = context_factory(Path(sys.argv[i + 1]), Path(sys.argv[i + 2]))
        port = reactor.listenSSL(  # type: ignore[attr-defined]
            0, factory, options, interface="127.0.0.1", backlog=1024)
    else:
        port = reactor.listenTCP(0, factory, interface="127.0.0.1", backlog=1024)
    threading.Thread(target=reader, daemon=True).start()
    print(f"PORT {port.getHost().port}", flush=True)
    reactor.run()


if __name__ == "__main__":
    main()
