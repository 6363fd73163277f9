"""The Klein application: routes from the table, errors turned into JSON in exactly one place.

Also the limits on what a caller may send, checked before the body is parsed and before
the caller is identified: :class:`LimitedRequest` stops reading a body that is larger than
its route takes (``Route.max_body``) and answers 413 at once.
"""

from __future__ import annotations

import json
import re
from http import HTTPStatus
from io import BytesIO
from typing import Any, cast
from urllib.parse import unquote, urlsplit

from klein import Klein
from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from twisted.web.server import Request
from werkzeug.exceptions import MethodNotAllowed as WzMethodNotAllowed
from werkzeug.exceptions import NotFound as WzNotFound
from werkzeug.routing import Map, Rule

from kimchi import i18n
from kimchi.accept import weighted
from kimchi.errors import (
    KimchiError,
    MethodNotAllowed,
    NotFound,
    OperationFailed,
    PayloadTooLarge,
)
from kimchid.api.gate import Gate
from kimchid.api.routes import (
    ECHO_LIMIT,
    JSON,
    NO_BODY_LIMIT,
    Call,
    RawJSON,
    Reply,
    Route,
    RouteTable,
    clip,
    header,
    request_language,
)
from kimchid.auth import policy
from kimchid.auth.policy import Identity

log = Logger()

REASON_LIMIT = 1000  # characters of an error's reason; past it, each parameter is clipped
LINGER_SECONDS = 5.0  # after a 413, how long the rest of the body is read (and dropped) ...
LINGER_BYTES = 64 * 1024 * 1024  # ... and how much of it: a client that sends its whole
#                                  body before reading the answer can then read the 413

_HEADERS = {tls: [(k.encode(), v.encode()) for k, v in policy.security_headers(tls).items()]
            for tls in (False, True)}


def security_headers(request: IRequest) -> None:
    """CSP, HSTS (over HTTPS), nosniff, no frames, no caching: on every answer."""
    for k, v in _HEADERS[bool(request.isSecure())]:
        request.setHeader(k, v)


def _write_json(request: IRequest, status: int, body: Any) -> bytes:
    # Twisted's table has no phrase for some codes: 429 would read "Unknown Status"
    request.setResponseCode(status, HTTPStatus(status).phrase.encode())
    if body is None:
        return b""
    request.setHeader(b"Content-Type", b"application/json; charset=utf-8")
    if isinstance(body, RawJSON):
        request.setHeader(b"Vary", b"Accept-Encoding")
        if len(body.body) >= GZIP_FROM and takes_gzip(header(request, "accept-encoding")):
            request.setHeader(b"Content-Encoding", b"gzip")
            return body.gzipped()
        return body.body
    return json.dumps(body, separators=(",", ":")).encode()


# Cached listings (RawJSON) of at least this many bytes go gzip-compressed to a client
# that accepts it: 1,000 VMs are 629 KB of JSON, which TLS would encrypt and the client
# decrypt whole.  Nothing else is compressed: a listing quotes no secret and none of the
# request (BREACH needs both in one compressed body).
GZIP_FROM = 1400


def takes_gzip(accept: str | None) -> bool:
    """Whether an ``Accept-Encoding`` value accepts gzip (RFC 9110: ``gzip`` or ``*``
    without ``q=0``; an explicit ``gzip`` decides over ``*``)."""
    star = False
    for name, q in weighted(accept):
        name = name.lower()
        if name not in ("gzip", "x-gzip", "*"):
            continue
        if name == "*":
            star = q > 0
        else:
            return q > 0
    return star


def error_body(request: IRequest, err: KimchiError) -> bytes:
    security_headers(request)
    for k, v in err.headers.items():
        request.setHeader(k.encode(), v.encode())
    body = err.to_json()
    request.kimchi_errcode = err.errcode  # type: ignore[attr-defined]  # for the audit log
    lang = request_language(request)
    if lang != i18n.DEFAULT:  # the reason in the request's language; the errcode stays
        body["reason"] = i18n.reason(err.errcode, err.params, lang)
        request.setHeader(b"Content-Language", lang.encode())
    if len(body["reason"]) > REASON_LIMIT:  # it quotes too much of something sent
        body["reason"] = i18n.reason(err.errcode, {
            k: clip(v, 4 * ECHO_LIMIT) if isinstance(v, str) else v
            for k, v in err.params.items()}, lang)
    return _write_json(request, err.status.value, body)


class BodyLimits:
    """The route a request line names, to know its body limit before the body comes."""

    def __init__(self, table: RouteTable) -> None:
        self._routes = {(r.path, r.method): r for r in table.routes}
        self._map = Map([Rule(path, methods=[r.method for r in routes], endpoint=path,
                              strict_slashes=False)
                         for path, routes in table.by_path().items()]).bind("localhost")

    def route(self, method: bytes, target: bytes) -> Route | None:
        """The route of ``method`` on the request target (the request line's), if any."""
        verb = method.decode("ascii", errors="replace").upper()
        verb = "GET" if verb == "HEAD" else verb
        path = unquote(urlsplit(target.decode("latin-1")).path or "/", errors="replace")
        try:
            endpoint, _ = self._map.match(path, method=verb)
        except Exception:  # werkzeug's NotFound, MethodNotAllowed, RequestRedirect
            return None
        return self._routes.get((endpoint, verb))

    def limit(self, method: bytes, target: bytes) -> tuple[int, str, str, bool]:
        """Bytes of body taken, the method and path to name in a 413, and whether the
        body is bytes (``Route.octets``)."""
        route = self.route(method, target)
        if route is None:  # a 404 or 405 to come: it takes no body
            return NO_BODY_LIMIT, clip(method.decode("ascii", errors="replace")), clip(
                target.decode("latin-1").partition("?")[0]), False
        return route.max_body, route.method, route.path, route.octets


class LimitedRequest(Request):
    """A request whose body is bounded by its route's ``max_body``, checked on
    ``Content-Length`` and on the bytes of a chunked body as they come: past it, the
    body is no longer kept, 413 is answered at once and the connection closes (once the
    rest of the body has been read and dropped, up to LINGER_BYTES or LINGER_SECONDS, so
    that a client still sending can read the answer). Nothing is parsed, no one identified.

    ``limits`` is set by :func:`request_factory`.
    """

    limits: BodyLimits
    _limit = NO_BODY_LIMIT
    _verb = "POST"
    _where = "/"
    _received = 0
    _refused = False
    _dropped = 0
    _linger: Any = None

    def gotLength(self, length: int | None) -> None:
        octets = False
        if length != 0:
            self._limit, self._verb, self._where, octets = self.limits.limit(
                getattr(self.channel, "_command", b""), getattr(self.channel, "_path", b""))
            if length is not None and length > self._limit:
                self.requestHeaders.removeHeader(b"Expect")  # no 100 Continue: not wanted
                self._drop_body()
                self._refuse(length)
                return
        super().gotLength(length)
        if octets:  # a chunk of bytes (bounded by its route): kept in memory, not written
            #         to a temporary file first and read back
            made: Any = self.content
            self.content = cast(Any, BytesIO())
            if made is not None:
                made.close()

    def handleContentChunk(self, data: bytes) -> None:
        if self._refused:
            self._dropped += len(data)
            if self._dropped > LINGER_BYTES:
                self._close()
            return
        self._received += len(data)
        if self._received > self._limit:
            self._drop_body()  # what came so far too
            self._refuse(self._received)
            return
        super().handleContentChunk(data)

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        if not self._refused:
            super().requestReceived(command, path, version)
            return
        # the rest of the body has been read and dropped: end the answer already sent;
        # the channel, no longer persistent, then closes the connection
        if self._linger is not None and self._linger.active():
            self._linger.cancel()
        self.finish()

    def connectionLost(self, reason: Failure) -> None:
        if self._linger is not None and self._linger.active():
            self._linger.cancel()
        super().connectionLost(reason)

    def _drop_body(self) -> None:
        kept: Any = self.content
        if kept is not None:
            kept.close()
        self.content = cast(Any, BytesIO())  # what the request's users read: nothing

    def _refuse(self, size: int) -> None:
        channel = self.channel
        self._refused = True
        self.method = getattr(channel, "_command", b"POST")
        self.clientproto = getattr(channel, "_version", b"HTTP/1.1")
        self.uri = getattr(channel, "_path", b"/")
        self.path = self.uri.partition(b"?")[0]
        self.site = getattr(channel, "site", None)
        channel.persistent = False
        self.setHeader(b"Connection", b"close")
        body = error_body(self, PayloadTooLarge("KCHAPI0011E", method=self._verb,
                                                path=self._where, limit=self._limit))
        self.setHeader(b"Content-Length", str(len(body)).encode())
        self.write(body)
        log.info("refused a body of {size} bytes or more to {method} {path} (it takes "
                 "{limit})", size=size, method=self._verb, path=self._where,
                 limit=self._limit)
        call_later = getattr(channel, "callLater", None)
        if call_later is not None:
            self._linger = call_later(LINGER_SECONDS, self._close)

    def _close(self) -> None:
        if self._linger is not None and self._linger.active():
            self._linger.cancel()
        channel = getattr(self, "channel", None)  # gone once the request has finished
        if channel is not None and channel.transport is not None:
            channel.transport.loseConnection()


def request_factory(table: RouteTable) -> type[LimitedRequest]:
    """The ``Site.requestFactory`` bounding each body by its route's ``max_body``."""
    return type("LimitedRequest", (LimitedRequest,), {"limits": BodyLimits(table)})


def build(table: RouteTable, gate: Gate | None = None, audit: Any = None) -> Klein:
    """A Klein app serving every route of ``table``; with a ``gate``, non-public routes
    need a login; with an ``audit`` (kimchid.api.audit.AuditTrail), every change is
    recorded."""
    app = Klein()

    siblings = _Siblings(table)
    for path, routes in table.by_path().items():
        by_method = {r.method: r for r in routes}
        if "GET" in by_method and "HEAD" not in by_method:
            by_method["HEAD"] = by_method["GET"]
        endpoint = re.sub(r"\W", "_", path) or "root"
        app.route(path, methods=list(by_method), endpoint=endpoint, strict_slashes=False)(
            _dispatcher(by_method, gate, siblings, audit)
        )

    @app.handle_errors(WzNotFound)
    def not_found(request: IRequest, failure: Failure) -> bytes:
        return error_body(request, NotFound("KCHAPI0001E", path=_path(request)))

    @app.handle_errors(WzMethodNotAllowed)
    def not_allowed(request: IRequest, failure: Failure) -> bytes:
        # werkzeug's valid_methods take every rule the path matches, also those whose
        # route refuses the argument (DELETE of <snap> for snapshots/current): not those
        allowed = siblings.methods(request.path.decode(errors="replace"))
        if allowed:
            request.setHeader(b"Allow", ", ".join(allowed).encode())
        return error_body(request, MethodNotAllowed(
            "KCHAPI0002E", method=clip(request.method.decode(errors="replace")),
            path=_path(request)))

    return app


class _Siblings:
    """The methods of the other routes a path is, for a path argument its route's
    ``params`` refuse: ``DELETE /vms/a/snapshots/current`` reaches ``<snap>``'s route
    (werkzeug looks further when ``current``'s route lacks the method), which refuses
    ``current``; the answer is then the 405 of ``current``'s own route."""

    def __init__(self, table: RouteTable) -> None:
        self._paths = [(Map([Rule(path, endpoint=path, strict_slashes=False)]).bind("localhost"),
                        routes) for path, routes in table.by_path().items()]

    def methods(self, path: str, refused_by: Route | None = None) -> list[str]:
        """The methods of every route that takes ``path`` (its arguments included),
        but ``refused_by``'s."""
        found: set[str] = set()
        for adapter, routes in self._paths:
            if refused_by is not None and routes[0].path == refused_by.path:
                continue
            try:
                _, args = adapter.match(path)
            except Exception:  # werkzeug's NotFound, RequestRedirect
                continue
            found.update(r.method for r in routes if r.matches_args(args))
        if "GET" in found:
            found.add("HEAD")
        return sorted(found)


def _dispatcher(by_method: dict[str, Route], gate: Gate | None,
                siblings: _Siblings | None = None, audit: Any = None) -> Any:
    async def dispatch(request: IRequest, **args: str) -> Any:
        route = by_method[request.method.decode()]
        if audit is not None:  # a change is recorded once answered
            audit.begin(route, request, args)
        request.route_template = route.path  # type: ignore[attr-defined]  # for the metrics
        gone: list[Any] = []  # the connection was lost (noted before Klein cancels this)
        request.notifyFinish().addErrback(gone.append)  # type: ignore[attr-defined]
        try:
            security_headers(request)
            if siblings is not None and not route.matches_args(args):
                allowed = siblings.methods(request.path.decode(errors="replace"), route)
                if allowed:
                    request.setHeader(b"Allow", ", ".join(allowed).encode())
                    raise MethodNotAllowed(
                        "KCHAPI0002E", method=clip(request.method.decode(errors="replace")),
                        path=_path(request))
            raw = _body(route, request)  # 413 before the caller is identified
            who = None
            if gate is not None and not route.public and not (
                    route.let_in is not None and route.let_in(request)):
                who = await gate.check(request, route.method, route.path)
            return await _handle(route, request, args, who, raw)
        except KimchiError as e:
            return error_body(request, e)
        except Exception as e:
            if gone and isinstance(e, defer.CancelledError):
                # Klein cancels the handler when the client goes away: nobody is left to
                # answer, and it is no error of ours.  Klein drops the cancellation quietly.
                log.debug("{method} {path}: the client went away", method=route.method,
                          path=request.path.decode(errors="replace"))
                raise
            log.failure("unexpected error in {method} {path}", Failure(),
                        method=route.method, path=request.path.decode(errors="replace"))
            return error_body(request, OperationFailed("KCHAPI0009E", error=type(e).__name__))

    return dispatch


def _body(route: Route, request: IRequest) -> bytes:
    """The request body, at most ``route.max_body`` bytes of it (else 413), unparsed.

    LimitedRequest has refused a larger one already; this holds wherever the request
    comes from (in-memory tests), reading no more than one byte past the limit.
    """
    content = getattr(request, "content", None)
    if content is None:
        return b""
    if route.octets and isinstance(content, BytesIO):
        raw: bytes = content.getvalue()  # its buffer itself: no copy of a 64 MiB chunk
    else:
        raw = content.read(route.max_body + 1)
    route.check_size(len(raw), route.path)
    return raw


def _path(request: IRequest) -> str:
    return clip(request.path.decode(errors="replace"))


async def _handle(route: Route, request: IRequest, args: dict[str, str],
                  who: Identity | None, raw: bytes = b"") -> Any:
    if any("\x00" in v for v in args.values()) or not route.matches_args(args):
        # no name or file has a NUL; a name its schema refuses names nothing
        raise NotFound("KCHAPI0001E", path=_path(request))
    media = route.check_accept(header(request, "accept"))
    query = route.validate_query(request.uri)
    body: dict[str, Any] = {}
    data = b""
    if route.octets:
        data = route.check_octets(raw, header(request, "content-type"))
    elif route.method in ("POST", "PUT", "PATCH"):
        body = route.validate_body(raw, header(request, "content-type"))
    call = Call(args, query, body, request, who, data)
    result = await route.handler(call)
    if route.raw and media != JSON or route.raw and not isinstance(result, (Reply, dict, list)):
        return result
    reply = result if isinstance(result, Reply) else Reply(route.status, result)
    for k, v in reply.headers.items():
        request.setHeader(k.encode(), v.encode())
    body = reply.body
    lang = request_language(request)
    if lang != i18n.DEFAULT:  # a task's message in the request's language, as a reason is
        body = i18n.translate_tasks(body, lang)
        if body is not reply.body:
            request.setHeader(b"Content-Language", lang.encode())
    return _write_json(request, reply.status, body)


