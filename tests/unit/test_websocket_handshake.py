"""A WebSocket request missing part of its handshake is refused with KCHWS0001E (the
routes that upgrade: /events, a VM's console and serial console) before autobahn sees it."""

from __future__ import annotations

import base64

import pytest

from kimchi.errors import InvalidOperation
from kimchid.api.streams import check_handshake

KEY = base64.b64encode(b"0123456789abcdef").decode()
GOOD = {"connection": "keep-alive, Upgrade", "sec-websocket-key": KEY,
        "sec-websocket-version": "13"}


def test_a_complete_handshake_passes() -> None:
    check_handshake(GOOD.get)
    check_handshake({**GOOD, "connection": "upgrade"}.get)


@pytest.mark.parametrize("change, problem", [
    ({"connection": None}, "Connection: Upgrade"),
    ({"connection": "keep-alive"}, "Connection: Upgrade"),
    ({"sec-websocket-key": None}, "Sec-WebSocket-Key"),
    ({"sec-websocket-key": "not base64!"}, "Sec-WebSocket-Key"),
    ({"sec-websocket-key": base64.b64encode(b"short").decode()}, "Sec-WebSocket-Key"),
    ({"sec-websocket-version": None}, "Sec-WebSocket-Version"),
    ({"sec-websocket-version": "8"}, "Sec-WebSocket-Version"),
])
def test_an_incomplete_handshake_is_refused_with_what_is_missing(
        change: dict[str, str | None], problem: str) -> None:
    headers = {**GOOD, **change}
    with pytest.raises(InvalidOperation) as e:
        check_handshake(headers.get)
    assert e.value.errcode == "KCHWS0001E" and problem in e.value.reason
