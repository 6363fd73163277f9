"""The Klein application: routes from the table, errors turned into JSON in exactly one place."""

from __future__ import annotations

import json
import re
from typing import Any

from klein import Klein
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from werkzeug.exceptions import MethodNotAllowed as WzMethodNotAllowed
from werkzeug.exceptions import NotFound as WzNotFound

from kimchid.api.gate import Gate
from kimchid.api.routes import JSON, Call, RawJSON, Reply, Route, RouteTable
from kimchid.auth import policy
from kimchid.auth.policy import Identity
from kimchid.errors import KimchiError, MethodNotAllowed, NotFound, OperationFailed

log = Logger()

_HEADERS = {tls: [(k.encode(), v.encode()) for k, v in policy.security_headers(tls).items()]
            for tls in (False, True)}


def security_headers(request: IRequest) -> None:
    """CSP, HSTS (over HTTPS), nosniff, no frames, no caching: on every answer."""
    for k, v in _HEADERS[bool(request.isSecure())]:
        request.setHeader(k, v)


def _write_json(request: IRequest, status: int, body: Any) -> bytes:
    request.setResponseCode(status)
    if body is None:
        return b""
    request.setHeader(b"Content-Type", b"application/json; charset=utf-8")
    if isinstance(body, RawJSON):
        return bytes(body)
    return json.dumps(body, separators=(",", ":")).encode()


def error_body(request: IRequest, err: KimchiError) -> bytes:
    security_headers(request)
    for k, v in err.headers.items():
        request.setHeader(k.encode(), v.encode())
    return _write_json(request, err.status.value, err.to_json())


def build(table: RouteTable, gate: Gate | None = None) -> Klein:
    """A Klein app serving every route of ``table``; with a ``gate``, non-public routes
    need a login."""
    app = Klein()

    for path, routes in table.by_path().items():
        by_method = {r.method: r for r in routes}
        if "GET" in by_method and "HEAD" not in by_method:
            by_method["HEAD"] = by_method["GET"]
        endpoint = re.sub(r"\W", "_", path) or "root"
        app.route(path, methods=list(by_method), endpoint=endpoint, strict_slashes=False)(
            _dispatcher(by_method, gate)
        )

    @app.handle_errors(WzNotFound)
    def not_found(request: IRequest, failure: Failure) -> bytes:
        return error_body(request, NotFound("KCHAPI0001E", path=request.path.decode(
            errors="replace")))

    @app.handle_errors(WzMethodNotAllowed)
    def not_allowed(request: IRequest, failure: Failure) -> bytes:
        allowed = getattr(failure.value, "valid_methods", None) or []
        if allowed:
            request.setHeader(b"Allow", ", ".join(allowed).encode())
        return error_body(request, MethodNotAllowed(
            "KCHAPI0002E", method=request.method.decode(), path=request.path.decode(
                errors="replace")))

    return app


def _dispatcher(by_method: dict[str, Route], gate: Gate | None) -> Any:
    async def dispatch(request: IRequest, **args: str) -> Any:
        route = by_method[request.method.decode()]
        try:
            security_headers(request)
            who = None
            if gate is not None and not route.public:
                who = await gate.check(request, route.method, route.path)
            return await _handle(route, request, args, who)
        except KimchiError as e:
            return error_body(request, e)
        except Exception as e:
            log.failure("unexpected error in {method} {path}", Failure(),
                        method=route.method, path=request.path.decode(errors="replace"))
            return error_body(request, OperationFailed("KCHAPI0009E", error=type(e).__name__))

    return dispatch


async def _handle(route: Route, request: IRequest, args: dict[str, str],
                  who: Identity | None) -> Any:
    media = route.check_accept(_header(request, b"accept"))
    query = route.validate_query(request.uri)
    body: dict[str, Any] = {}
    if route.method in ("POST", "PUT", "PATCH"):
        body = route.validate_body(request.content.read(), _header(request, b"content-type"))
    call = Call(args, query, body, request, who)
    result = await route.handler(call)
    if route.raw and media != JSON or route.raw and not isinstance(result, (Reply, dict, list)):
        return result
    reply = result if isinstance(result, Reply) else Reply(route.status, result)
    for k, v in reply.headers.items():
        request.setHeader(k.encode(), v.encode())
    return _write_json(request, reply.status, reply.body)


def _header(request: IRequest, name: bytes) -> str | None:
    v = request.getHeader(name)
    return v.decode(errors="replace") if isinstance(v, bytes) else v
