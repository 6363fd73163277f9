"""``GET /openapi.json``, generated from the route table that also validates requests."""

from __future__ import annotations

import re
from typing import Any

from jsonschema import Draft202012Validator

from kimchi.errors import CATALOGUE, REFUSALS
from kimchid.api.routes import ERROR_SCHEMA, EVENT_SCHEMA, JSON, OCTETS, Route, RouteTable, no_nul
from kimchid.api.streams import UPGRADE_PATTERN

SSE = "text/event-stream"

_PARAM = re.compile(r"<(?:(?:\w+):)?(\w+)>")


def _error(description: str) -> dict[str, Any]:
    return {"description": description,
            "content": {JSON: {"schema": {"$ref": "#/components/schemas/Error"}}}}


def _upgrade(r: Route) -> dict[str, Any]:
    """The ``Upgrade`` header of a route that becomes a WebSocket."""
    assert r.websocket is not None
    if r.websocket.only:
        return {"name": "Upgrade", "in": "header", "required": True,
                "schema": {"type": "string", "pattern": UPGRADE_PATTERN},
                "description": "websocket: this route is only a WebSocket (RFC 6455); the "
                               "rest of the handshake is in x-websocket"}
    return {"name": "Upgrade", "in": "header", "required": False, "schema": {"type": "string"},
            "description": "websocket: the stream as a WebSocket instead (RFC 6455; the "
                           "rest of the handshake is in x-websocket); any other value is "
                           "ignored"}


def _switching(r: Route) -> dict[str, Any]:
    """The 101 answer of a route that becomes a WebSocket."""
    assert r.websocket is not None
    headers: dict[str, Any] = {
        "Upgrade": {"schema": {"const": "websocket"}, "description": "websocket"},
        "Sec-WebSocket-Accept": {"schema": {"type": "string"},
                                 "description": "the key's answer (RFC 6455)"},
    }
    if r.websocket.subprotocols:
        headers["Sec-WebSocket-Protocol"] = {
            "schema": {"enum": list(r.websocket.subprotocols)},
            "description": "the subprotocol the client offered, when it offered one"}
    return {"description": "Switching Protocols: the connection is a WebSocket from here on; "
                           "its messages are in x-websocket", "headers": headers}


def _event_stream(r: Route) -> dict[str, Any]:
    """The text/event-stream media type of a route that answers with one."""
    assert r.sse is not None
    out: dict[str, Any] = {
        "schema": {"type": "string", "description": r.sse.description},
        "x-sse": r.sse.spec(),
    }
    if r.sse.example:
        out["example"] = r.sse.example
    return out


def openapi(table: RouteTable, version: str) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for r in table.routes:
        path = _PARAM.sub(r"{\1}", r.path)
        params = [{"name": n, "in": "path", "required": True,
                   "schema": r.params.get(n, no_nul({"type": "string"}))}
                  for n in _PARAM.findall(r.path)]
        params += [{"name": n, "in": "query", "required": False, "schema": s}
                   for n, s in r.query.items()]
        params += [{"name": n, "in": "header", "required": r.octets, "schema": schema,
                    "description": d}
                   for n, (d, schema) in r.headers.items()]
        if r.websocket is not None:
            params.append(_upgrade(r))
        ok: dict[str, Any] = {"description": "success"}
        if r.response is not None:
            ok["content"] = {m: {"schema": r.response} for m in r.produces if m == JSON}
        if SSE in r.produces and r.sse is not None:
            ok.setdefault("content", {})[SSE] = _event_stream(r)
        if r.media:
            ok["content"] = {**ok.get("content", {}),
                             **{m: {"schema": schema} for m, schema in r.media.items()}}
        slug = re.sub(r"\W+", "_", r.path).strip("_") or "root"
        op: dict[str, Any] = {
            "summary": r.summary,
            "operationId": f"{r.method.lower()}_{slug}",
            "tags": [r.tag],
            "parameters": params,
            "responses": {
                str(r.status): ok,
                "401": {"description": "not signed in (or bad credentials)",
                        "content": {JSON: {"schema": {"$ref": "#/components/schemas/Error"}}}},
                "4XX": {"description": "invalid request",
                        "content": {JSON: {"schema": {"$ref": "#/components/schemas/Error"}}}},
                "503": {"description": "service not ready",
                        "content": {JSON: {"schema": {"$ref": "#/components/schemas/Error"}}}},
            },
        }
        for status, (about, schema) in r.also.items():
            if str(status) == str(r.status) and r.response is not None:
                ok["content"][JSON]["schema"] = {"oneOf": [r.response, schema]}
                ok["description"] = f"success; {about}"
            else:
                op["responses"][str(status)] = {"description": about,
                                                "content": {JSON: {"schema": schema}}}
        if r.websocket is not None:
            op["responses"]["101"] = _switching(r)
            if r.websocket.only:  # never a 200: a WebSocket or an error
                del op["responses"][str(r.status)]
            op["x-websocket"] = r.websocket.spec()
        if r.description:
            op["description"] = r.description
        if r.public:
            op["security"] = []
            del op["responses"]["401"]
        responses = op["responses"]
        if r.body is not None:
            responses["400"] = _error(
                "invalid request: body not JSON (KCHAPI0005E), not valid against the schema "
                "(KCHAPI0006E, or the x-errcode of the rule it breaks), unknown fields "
                "(KCHAPI0007E), nested too deeply (KCHAPI0012E), a NUL character "
                "(KCHAPI0013E), an unknown or invalid query parameter (KCHAPI0008E); or a "
                "valid request refused (one of x-refusals: the state of the host or an "
                "object, a rule between fields)")
        elif r.octets:
            responses["400"] = _error(
                "invalid request: the bytes do not fit their headers (the code of the route, "
                "in its description), an unknown or invalid query parameter (KCHAPI0008E), a "
                "NUL character (KCHAPI0013E); or a valid request refused (one of x-refusals)")
        elif r.method in ("POST", "PUT", "PATCH"):
            responses["400"] = _error(
                "invalid request: a body other than {} (KCHAPI0005E, KCHAPI0006E, "
                "KCHAPI0007E), an unknown or invalid query parameter (KCHAPI0008E), a NUL "
                "character (KCHAPI0013E); or a valid request refused (one of x-refusals)")
        else:
            responses["400"] = _error(
                "invalid request: an unknown or invalid query parameter (KCHAPI0008E), a NUL "
                "character (KCHAPI0013E); or a valid request refused (one of x-refusals)")
        if r.octets:
            responses["415"] = _error("the body is not application/octet-stream (KCHAPI0014E)")
            op["requestBody"] = {"required": True, "content": {OCTETS: {"schema": {
                "type": "string", "format": "binary", "maxLength": r.max_body}}}}
        elif r.method in ("POST", "PUT", "PATCH"):
            responses["415"] = _error("the body is not application/json (KCHAPI0004E)")
        responses["413"] = _error(f"request body over {r.max_body} bytes (KCHAPI0011E)")
        if r.body is not None:
            # no body is taken as {}: required unless the schema admits {}
            op["requestBody"] = {"required": not Draft202012Validator(r.body).is_valid({}),
                                 "content": {JSON: {"schema": r.body}}}
        paths.setdefault(path, {})[r.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "kimchid", "version": version,
                 "description": "KVM host management: VMs, templates, storage, networks, "
                                "tasks and a resumable event stream."},
        "paths": paths,
        # every operation needs one of these, but those with "security": [] (public)
        "security": [{"basic": []}, {"bearer": []}, {"session": []}],
        "components": {
            "schemas": {"Error": ERROR_SCHEMA, "Event": EVENT_SCHEMA},
            "securitySchemes": {
                "basic": {"type": "http", "scheme": "basic",
                          "description": "a Linux account, checked by PAM"},
                "bearer": {"type": "http", "scheme": "bearer",
                           "description": "an API token from POST /tokens"},
                "session": {"type": "apiKey", "in": "cookie", "name": "kimchi_session",
                            "description": "from POST /login"},
            },
            "x-error-codes": CATALOGUE,
            # the 400s a request valid against its schema may get (kimchi.errors.REFUSALS)
            "x-refusals": sorted(REFUSALS),
        },
    }
