"""The routes that answer with a stream: what they carry, declared once for the spec.

A route that can become a WebSocket (``Route.websocket``) or answer with server-sent
events (``Route.sse``) says here what flows each way, and ``GET /openapi.json`` publishes
it (``kimchid.api.openapi``): the WebSocket as the GET it starts with (an ``Upgrade``
header, a 101 answer) and an ``x-websocket`` extension for its messages; the events
stream as a ``text/event-stream`` answer with an ``x-sse`` extension for its fields.

:func:`check_handshake` is the one check of a WebSocket request before a route hands it
to autobahn: an incomplete handshake gets kimchid's JSON error (KCHWS0001E), not
autobahn's HTML page.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kimchi.errors import InvalidOperation

TEXT = "text"
BINARY = "binary"

# The value of ``Upgrade`` a WebSocket request sends, in any case (RFC 6455, 4.2.1).
UPGRADE_PATTERN = "^[Ww][Ee][Bb][Ss][Oo][Cc][Kk][Ee][Tt]$"
WS_VERSION = "13"


@dataclass(frozen=True)
class Message:
    """One kind of WebSocket message: its frame type and what it holds."""

    frame: str  # TEXT or BINARY
    description: str
    media_type: str | None = None  # of a text frame's content (application/json)
    schema: dict[str, Any] | None = None  # of that content

    def spec(self) -> dict[str, Any]:
        out: dict[str, Any] = {"frame": self.frame, "description": self.description}
        if self.media_type:
            out["contentType"] = self.media_type
        if self.schema is not None:
            out["schema"] = self.schema
        return out


@dataclass(frozen=True)
class WebSocket:
    """What a route's WebSocket carries each way, and how it ends."""

    summary: str
    from_server: tuple[Message, ...]
    from_client: tuple[Message, ...]
    close_codes: dict[int, str] = field(default_factory=dict)
    subprotocols: tuple[str, ...] = ()  # offered by the client, echoed by the server
    only: bool = True  # the route is only a WebSocket (else ``Upgrade`` chooses it)

    def spec(self) -> dict[str, Any]:
        """The ``x-websocket`` extension of the route's operation."""
        out: dict[str, Any] = {
            "summary": self.summary,
            "handshake": {
                "request": {"Connection": "Upgrade", "Upgrade": "websocket",
                            "Sec-WebSocket-Version": WS_VERSION,
                            "Sec-WebSocket-Key": "16 random bytes, base64 (RFC 6455)",
                            "Origin": "kimchid's own origin (or one of [auth] allowed_origins), "
                                      "when a browser sends one"},
                "refused": "an incomplete handshake: 400 KCHWS0001E",
            },
            "fromServer": [m.spec() for m in self.from_server],
            "fromClient": [m.spec() for m in self.from_client],
            "closeCodes": {str(code): why for code, why in sorted(self.close_codes.items())},
        }
        if self.subprotocols:
            out["subprotocols"] = list(self.subprotocols)
        return out


@dataclass(frozen=True)
class EventStream:
    """A ``text/event-stream`` answer: what each event's ``data`` holds."""

    description: str
    data: dict[str, Any]  # the schema of one ``data:`` line, parsed as JSON
    comments: tuple[str, ...] = ()  # the ``: ...`` lines it may send
    retry_ms: int | None = None  # the ``retry:`` it sends first
    example: str = ""

    def spec(self) -> dict[str, Any]:
        """The ``x-sse`` extension of the media type."""
        fields: dict[str, str] = {
            "id": "the event's id: resume after it (Last-Event-ID, or ?since=)",
            "data": "the event, one line of JSON (schema: data)",
        }
        if self.retry_ms is not None:
            fields["retry"] = f"{self.retry_ms}: milliseconds before reconnecting, sent first"
        return {"description": self.description, "fields": fields, "data": self.data,
                "comments": list(self.comments)}


def check_handshake(header: Callable[[str], str | None]) -> None:
    """Refuse a WebSocket request (``Upgrade: websocket``) that autobahn would refuse with
    a page of its own: no ``Connection: Upgrade``, no valid ``Sec-WebSocket-Key``, another
    ``Sec-WebSocket-Version`` than 13.  ``header(name)``: the request's header."""
    tokens = {t.strip().lower() for t in (header("connection") or "").split(",")}
    if "upgrade" not in tokens:
        raise InvalidOperation("KCHWS0001E", problem="Connection: Upgrade is missing")
    key = (header("sec-websocket-key") or "").strip()
    try:
        raw = base64.b64decode(key, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 16:
        raise InvalidOperation("KCHWS0001E",
                               problem="Sec-WebSocket-Key is not 16 bytes in base64")
    if (header("sec-websocket-version") or "").strip() != WS_VERSION:
        raise InvalidOperation("KCHWS0001E",
                               problem=f"Sec-WebSocket-Version is not {WS_VERSION}")
