"""``/openapi.json`` describes the streams as the server serves them: ``GET /events`` as
server-sent events and as a WebSocket, a VM's console and serial console as WebSockets.

One daemon for the whole module's checks (the spec, then the same answers live)."""

from __future__ import annotations

import base64
import json
import os
import socket
from pathlib import Path
from typing import Any

import requests
import websocket
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate

from tests.conftest import Kimchi

SSE = "text/event-stream"
JSON = "application/json"
WS_ROUTES = ("/vms/{name}/console", "/vms/{name}/serial", "/hosts/{host}/vms/{name}/console",
             "/hosts/{host}/vms/{name}/serial")


def _header(op: dict[str, Any], name: str) -> dict[str, Any]:
    found = [p for p in op["parameters"] if p["in"] == "header" and p["name"] == name]
    assert len(found) == 1, (name, op["parameters"])
    return found[0]


def _event_schema(spec: dict[str, Any]) -> Draft202012Validator:
    return Draft202012Validator(spec["components"]["schemas"]["Event"],
                                format_checker=Draft202012Validator.FORMAT_CHECKER)


def _sse_lines(resp: requests.Response, want: int) -> list[str]:
    """The first ``want`` non-empty lines of a text/event-stream (comments left out)."""
    out: list[str] = []
    for raw in resp.iter_lines(decode_unicode=True):
        line = raw if isinstance(raw, str) else raw.decode()
        if line and not line.startswith(":"):
            out.append(line)
            if len(out) == want:
                break
    return out


def _raw_upgrade(k: Kimchi, path: str, headers: dict[str, str]) -> tuple[int, str, bytes]:
    """A GET with ``headers`` over a plain socket (requests will not send an Upgrade and
    read what follows): status, Content-Type, body."""
    token = base64.b64encode(f"{k.auth[0]}:{k.auth[1]}".encode()).decode() if k.auth else ""
    lines = [f"GET {path} HTTP/1.1", f"Host: 127.0.0.1:{k.port}", "Accept: */*",
             f"Authorization: Basic {token}", *(f"{n}: {v}" for n, v in headers.items()),
             "", ""]
    with socket.create_connection(("127.0.0.1", k.port), timeout=10) as s:
        s.sendall("\r\n".join(lines).encode())
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        status = int(head.split(b" ")[1])
        fields = dict(line.split(b": ", 1) for line in head.split(b"\r\n")[1:] if b": " in line)
        if status == 101:
            return status, "", b""
        chunked = fields.get(b"Transfer-Encoding", b"").lower() == b"chunked"
        length = int(fields.get(b"Content-Length", b"0"))
        while (b"\r\n0\r\n\r\n" not in b"\r\n" + body) if chunked else len(body) < length:
            chunk = s.recv(65536)
            if not chunk:
                break
            body += chunk
    if chunked:  # <size in hex>\r\n<bytes>\r\n ... 0\r\n\r\n
        plain, rest = b"", body
        while True:
            size, _, rest = rest.partition(b"\r\n")
            n = int(size, 16)
            if n == 0:
                break
            plain, rest = plain + rest[:n], rest[n + 2:]
        body = plain
    return status, fields.get(b"Content-Type", b"").decode(), body


def test_the_spec_describes_the_streams_and_the_server_serves_them_so(
        kimchi: Kimchi, iso_tree: Path) -> None:
    spec = kimchi.get("/openapi.json").json()
    validate(spec)  # a valid OpenAPI 3.1 document, extensions and all
    event = _event_schema(spec)

    # -- GET /events: a JSON page, server-sent events, or a WebSocket
    op = spec["paths"]["/events"]["get"]
    content = op["responses"]["200"]["content"]
    assert set(content) == {JSON, SSE}
    assert content[JSON]["schema"]["items"] == spec["components"]["schemas"]["Event"]
    sse = content[SSE]
    assert sse["x-sse"]["data"] == {"$ref": "#/components/schemas/Event"}
    assert set(sse["x-sse"]["fields"]) == {"id", "data", "retry"}
    assert {p["name"] for p in op["parameters"] if p["in"] == "query"} == {
        "since", "types", "task", "limit"}
    last = _header(op, "Last-Event-ID")
    assert not last["required"] and Draft202012Validator(last["schema"]).is_valid("1-0")
    assert not Draft202012Validator(last["schema"]).is_valid("yesterday")
    upgrade = _header(op, "Upgrade")
    assert not upgrade["required"]  # the same route answers JSON and SSE without it
    assert "101" in op["responses"] and "200" in op["responses"]
    ws = op["x-websocket"]
    assert [m["frame"] for m in ws["fromServer"]] == ["text"]
    assert ws["fromServer"][0]["contentType"] == JSON
    assert ws["fromServer"][0]["schema"] == {"$ref": "#/components/schemas/Event"}
    assert "4000" in ws["closeCodes"]
    assert "KCHWS0001E" in spec["components"]["x-refusals"]

    # -- a VM's console and serial console: only WebSockets
    for path in WS_ROUTES:
        op = spec["paths"][path]["get"]
        assert set(op["responses"]) >= {"101", "400", "401"} and "200" not in op["responses"]
        upgrade = _header(op, "Upgrade")
        check = Draft202012Validator(upgrade["schema"])
        assert upgrade["required"] and check.is_valid("websocket") and check.is_valid("WebSocket")
        assert not check.is_valid("h2c")
        ws = op["x-websocket"]
        assert ws["subprotocols"] == ["binary"]
        assert ws["fromServer"][0]["frame"] == "binary"
        assert ws["handshake"]["request"]["Sec-WebSocket-Version"] == "13"
    serial = spec["paths"]["/vms/{name}/serial"]["get"]["x-websocket"]
    assert {"1000", "4001", "4002", "4003"} <= set(serial["closeCodes"])
    assert {m["frame"] for m in serial["fromClient"]} == {"text", "binary"}

    # -- and the server serves what the spec says
    task = kimchi.post("/isos/scan", {"path": str(iso_tree)}).json()
    resp = requests.get(kimchi.url + "/events?since=0&types=task.created",
                        headers={"Accept": SSE}, stream=True, timeout=10, auth=kimchi.auth)
    try:
        assert resp.status_code == 200 and resp.headers["Content-Type"].startswith(SSE)
        retry, sse_id, data = _sse_lines(resp, 3)
    finally:
        resp.close()
    assert retry == "retry: 1000" and sse_id.startswith("id: ") and data.startswith("data: ")
    first = json.loads(data[len("data: "):])
    assert list(event.iter_errors(first)) == [] and first["id"] == sse_id[len("id: "):]
    assert first["type"] == "task.created" and first["data"]["id"] == task["id"]

    # Last-Event-ID is checked against its schema: an invalid one is refused
    for bad in ("yesterday", b"\x84\xff"):  # not UTF-8: refused, not a 500
        r = kimchi.get("/events", headers={"Last-Event-ID": bad})
        assert r.status_code == 400 and r.json()["errcode"] == "KCHEVT0001E", r.text

    # the WebSocket: 101, then one JSON text message per event, each an Event
    sock = websocket.create_connection(f"{kimchi.ws_url}/events?since=0&types=task.created",
                                       timeout=10, header=kimchi.ws_headers)
    try:
        assert sock.getstatus() == 101
        opcode, frame = sock.recv_data()
    finally:
        sock.close()
    assert opcode == websocket.ABNF.OPCODE_TEXT
    assert json.loads(frame) == first

    # an Upgrade without the rest of the handshake: a JSON refusal, not autobahn's page
    key = base64.b64encode(os.urandom(16)).decode()
    for headers in ({"Upgrade": "websocket"},
                    {"Upgrade": "websocket", "Connection": "Upgrade"},
                    {"Upgrade": "websocket", "Connection": "Upgrade",
                     "Sec-WebSocket-Key": "short", "Sec-WebSocket-Version": "13"},
                    {"Upgrade": "websocket", "Connection": "Upgrade",
                     "Sec-WebSocket-Key": key, "Sec-WebSocket-Version": "8"}):
        status, ctype, body = _raw_upgrade(kimchi, "/events", headers)
        assert status == 400 and ctype.startswith(JSON), (headers, status, body)
        assert json.loads(body)["errcode"] == "KCHWS0001E", (headers, body)
    status, _ctype, _body = _raw_upgrade(kimchi, "/events", {
        "Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Key": key,
        "Sec-WebSocket-Version": "13"})
    assert status == 101
