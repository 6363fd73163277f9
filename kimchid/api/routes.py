"""The route table and the HTTP conventions of API.md, applied in one place.

Each route is declared once — path, method, query parameters, body schema,
response schema — and that one declaration drives the Klein routing, request
validation (400/406/415), the error model and ``GET /openapi.json``.
"""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.parse import parse_qs

from jsonschema import Draft202012Validator
from twisted.web.iweb import IRequest

from kimchi import i18n
from kimchi.accept import weighted
from kimchi.errors import InvalidRequest, NotAcceptable, PayloadTooLarge, UnsupportedMediaType
from kimchid.api.streams import EventStream, WebSocket
from kimchid.auth.policy import Identity

JSON = "application/json"
OCTETS = "application/octet-stream"

# Limits on what a caller sends, checked before it is identified (see app.LimitedRequest).
JSON_BODY_LIMIT = 1024 * 1024  # bytes of a route's JSON body: ample for every schema here
NO_BODY_LIMIT = 4 * 1024  # bytes for a route without a body schema (it takes only ``{}``)
MAX_DEPTH = 64  # arrays and objects inside each other; json.loads recurses on each
ECHO_LIMIT = 100  # characters of what was sent that an error message may quote

_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_BRACKETS = bytes(range(256)).translate(None, b"[]{}")  # every byte but the brackets
_DEPTH_STEP = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}


def clip(value: object, limit: int = ECHO_LIMIT) -> str:
    """``value`` as text to quote in an error message: at most ``limit`` characters."""
    text = value if isinstance(value, str) else str(value)
    return text if len(text) <= limit else text[:limit] + "…"


def parse_json(raw: bytes) -> Any:
    """A JSON document, or 400: not JSON, nested deeper than MAX_DEPTH, or a NUL in a string."""
    brackets = _JSON_STRING.sub(b"", raw).translate(None, _BRACKETS)
    if len(brackets) > MAX_DEPTH:  # only then can it be too deep
        depth = 0
        for b in brackets:
            depth += _DEPTH_STEP[b]
            if depth > MAX_DEPTH:
                raise InvalidRequest("KCHAPI0012E", depth=MAX_DEPTH)
    try:
        data = json.loads(raw)
    except RecursionError as e:  # not reached below MAX_DEPTH; kept as the last guard
        raise InvalidRequest("KCHAPI0012E", depth=MAX_DEPTH) from e
    except (ValueError, UnicodeDecodeError) as e:
        raise InvalidRequest("KCHAPI0005E", error=clip(e)) from e
    where = _nul_at(data, "")
    if where is not None:
        raise InvalidRequest("KCHAPI0013E", where=clip(where or "body"))
    return data


def _nul_at(value: Any, where: str) -> str | None:
    """Where (``a.b.0``) the first string holding a NUL is, keys included; else None."""
    if isinstance(value, str):
        return where if "\x00" in value else None
    if isinstance(value, dict):
        for k, v in value.items():
            here = f"{where}.{k}" if where else k
            if "\x00" in k:
                return here.replace("\x00", "\\u0000")
            found = _nul_at(v, here)
            if found is not None:
                return found
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found = _nul_at(v, f"{where}.{i}" if where else str(i))
            if found is not None:
                return found
    return None


class RawJSON:
    """A body already serialised (a cached listing): written as it is, or compressed for
    a client that accepts gzip.  The compressed form is made once per body: the same bytes
    object again (the listing until its next change) finds it in a small cache."""

    __slots__ = ("body",)
    _gzipped: ClassVar[list[tuple[bytes, bytes]]] = []  # (body, its gzip), newest last
    KEEP = 4

    def __init__(self, body: bytes) -> None:
        self.body = body

    def gzipped(self) -> bytes:
        for body, gz in reversed(RawJSON._gzipped):
            if body is self.body:
                return gz
        # level 1: the listing of 1,000 VMs (629 KB) in about 2 ms, to a tenth of its size
        gz = gzip.compress(self.body, compresslevel=1, mtime=0)
        RawJSON._gzipped = [*RawJSON._gzipped[-(self.KEEP - 1):], (self.body, gz)]
        return gz


@dataclass
class Reply:
    """A response: status, JSON body (None: no body), extra headers."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Call:
    """What a handler receives: path arguments, validated query and body, the raw request."""

    args: dict[str, str]
    query: dict[str, str]
    body: dict[str, Any]
    request: IRequest
    who: Identity | None = None  # None on public routes (and when login is off, in tests)
    data: bytes = b""  # the raw body of a route that takes bytes (``Route.octets``)

    def header(self, name: str) -> str | None:
        return header(self.request, name)


def header(request: IRequest, name: str) -> str | None:
    """A request header's value as text: its bytes as ISO-8859-1, as HTTP defines them
    (any byte decodes; a handler's own check then refuses what it does not take).  Asked
    by its name in bytes: with a text name Twisted decodes the value as UTF-8, and raises
    on bytes that are not."""
    v = request.getHeader(name.encode("ascii"))
    return v.decode("latin-1") if isinstance(v, bytes) else v


def request_language(request: IRequest) -> str:
    """The language of a request: the user's choice (the ``kimchi_lang`` cookie), else its
    Accept-Language (kimchi.i18n.negotiate)."""
    cookie = request.getCookie(i18n.COOKIE.encode())
    return i18n.negotiate(header(request, "accept-language"),
                          cookie.decode(errors="replace") if cookie else None)


Handler = Callable[[Call], Awaitable[Any]]


@dataclass
class Route:
    path: str  # werkzeug syntax: /tasks/<id>
    method: str
    handler: Handler
    summary: str
    tag: str
    query: dict[str, dict[str, Any]] = field(default_factory=dict)
    body: dict[str, Any] | None = None
    response: dict[str, Any] | None = None
    status: int = 200
    produces: tuple[str, ...] = (JSON,)
    public: bool = False  # reachable without a login
    raw: bool = False  # the handler answers by itself (streams, files)
    description: str = ""
    max_body: int = 0  # bytes of body taken; 0: JSON_BODY_LIMIT with a body schema, else
    #                    NO_BODY_LIMIT
    params: dict[str, dict[str, Any]] = field(default_factory=dict)  # the schemas of path
    #                    arguments (default: any string); a value outside them is a 404
    octets: bool = False  # the body is bytes (application/octet-stream, at most max_body),
    #                    not JSON: handed over unparsed as ``Call.data``
    headers: dict[str, tuple[str, dict[str, Any]]] = field(default_factory=dict)  # request
    #                    headers it reads, for the spec: name -> (description, schema)
    also: dict[int, tuple[str, dict[str, Any]]] = field(default_factory=dict)  # other
    #                    answers it gives, for the spec: status -> (description, schema)
    websocket: WebSocket | None = None  # it becomes a WebSocket (101): what it carries
    sse: EventStream | None = None  # it answers text/event-stream (in produces): its events
    let_in: Callable[[IRequest], bool] | None = None  # callers taken without a login
    #                    (the addresses of ``[metrics] allow``); everyone else passes the gate
    media: dict[str, dict[str, Any]] = field(default_factory=dict)  # for the spec: the
    #                    success's bodies other than JSON (media type with parameters -> schema)

    def __post_init__(self) -> None:
        # no string the server takes holds a NUL (refused first, KCHAPI0013E): the schemas
        # say so too, so the published ones admit only what the server takes
        self.body = no_nul(self.body) if self.body else self.body
        self.query = {k: no_nul(v) for k, v in self.query.items()}
        self.params = {k: no_nul(v) for k, v in self.params.items()}
        self._body_validator = Draft202012Validator(self.body) if self.body else None
        # made once, not per request; formats are checked in queries too (a ``regex`` the
        # server compiles must compile)
        self._query_validators = {name: Draft202012Validator(
            schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
            for name, schema in self.query.items()}
        self._param_validators = {name: Draft202012Validator(schema)
                                  for name, schema in self.params.items()}
        if not self.max_body:
            self.max_body = JSON_BODY_LIMIT if self.body else NO_BODY_LIMIT

    def check_size(self, size: int, path: str) -> None:
        """413 when ``size`` bytes of body are more than this route takes."""
        if size > self.max_body:
            raise PayloadTooLarge("KCHAPI0011E", method=self.method, path=clip(path),
                                  limit=self.max_body)

    def check_octets(self, raw: bytes, content_type: str | None) -> bytes:
        """The bytes of a route that takes bytes: 415 unless sent as application/octet-stream."""
        self.check_size(len(raw), self.path)
        ctype = (content_type or "").split(";")[0].strip().lower()
        if ctype != OCTETS:
            raise UnsupportedMediaType("KCHAPI0014E", content_type=clip(ctype or "none"))
        return raw

    def validate_body(self, raw: bytes, content_type: str | None) -> dict[str, Any]:
        self.check_size(len(raw), self.path)
        raw = raw.strip()
        if not raw:
            data: Any = {}
        else:
            ctype = (content_type or "").split(";")[0].strip().lower()
            if ctype != JSON:
                raise UnsupportedMediaType("KCHAPI0004E", content_type=clip(ctype or "none"))
            data = parse_json(raw)
        if not isinstance(data, dict):
            raise InvalidRequest("KCHAPI0006E", error="the body must be a JSON object")
        if self._body_validator is None:
            if data:
                raise InvalidRequest("KCHAPI0007E", fields=", ".join(sorted(data)))
            return data
        errors = sorted(self._body_validator.iter_errors(data), key=lambda e: list(e.path))
        for err in errors:
            if err.validator == "additionalProperties":
                allowed = set(err.schema.get("properties", {}))
                extra = sorted(set(err.instance) - allowed)
                raise InvalidRequest("KCHAPI0007E", fields=clip(", ".join(extra)))
        if errors:
            first = errors[0]
            where = clip(".".join(str(p) for p in first.path) or "body")
            rule = first.schema if isinstance(first.schema, dict) else {}
            errcode = rule.get("x-errcode")
            # a field's own pattern or ``not``, or any part of a schema that is only a rule
            # (no "type": a ``then`` naming the fields a kind needs)
            if errcode and (first.validator in ("pattern", "not") or "type" not in rule):
                # a rule of the handler written into the schema (``x-errcode``: the code it
                # answers with, ``x-reason`` the words): answered as before it was in the schema
                name = data.get("name")
                raise InvalidRequest(errcode, path=clip(first.instance),
                                     name=clip(name if isinstance(name, str) else ""),
                                     reason=(f"{where}: " if where != "body" else "")
                                     + (rule.get("x-reason") or _message(first)))
            raise InvalidRequest("KCHAPI0006E", error=f"{where}: {_message(first)}")
        return data

    def matches_args(self, args: Mapping[str, Any]) -> bool:
        """Whether every path argument is one its schema in ``params`` admits."""
        return all(v.is_valid(args[name])
                   for name, v in self._param_validators.items() if name in args)

    def validate_query(self, uri: bytes) -> dict[str, str]:
        """The query string's parameters (never the form body Twisted merges into args)."""
        out: dict[str, str] = {}
        qs = uri.partition(b"?")[2].decode(errors="replace")
        for name, values in parse_qs(qs, keep_blank_values=True).items():
            schema = self.query.get(name)
            if schema is None:
                raise InvalidRequest("KCHAPI0008E", param=clip(name), error="unknown parameter")
            value = values[-1]
            if "\x00" in value:
                raise InvalidRequest("KCHAPI0013E", where=f"query parameter {clip(name)}")
            errors = list(self._query_validators[name].iter_errors(_typed(value, schema)))
            if errors:
                raise InvalidRequest("KCHAPI0008E", param=name, error=_message(errors[0]))
            out[name] = value
        return out

    def check_accept(self, accept: str | None) -> str:
        """The media type to answer with, or 406."""
        if not accept:
            return self.produces[0]
        offered = [(q, media.lower()) for media, q in weighted(accept) if q > 0]
        for _q, media in sorted(offered, key=lambda x: -x[0]):
            for mine in self.produces:
                major = mine.split("/")[0]
                if media in (mine, "*/*", major + "/*"):
                    return mine
        raise NotAcceptable("KCHAPI0003E", accept=clip(accept))


def _message(err: Any) -> str:
    """A jsonschema error's message, quoting at most ECHO_LIMIT characters of the value
    (its message quotes the whole value: ``'aaa…' is too long``)."""
    text = str(err.message)
    quoted = repr(err.instance)
    if len(quoted) > ECHO_LIMIT:
        text = text.replace(quoted, clip(quoted), 1)
    return clip(text, 4 * ECHO_LIMIT)  # the schema's side (an enum, a pattern) is ours


NO_NUL = "^[^\\x00]*$"
_SUBSCHEMAS = ("items", "additionalProperties", "then", "else")
_SCHEMA_LISTS = ("allOf", "anyOf", "oneOf", "prefixItems")


def no_nul(schema: Any) -> Any:
    """``schema`` with every string in it refusing a NUL character (a new dict; ``not`` and
    ``if`` left as they are: a rule there is read the other way round)."""
    if not isinstance(schema, dict):
        return schema
    out = dict(schema)
    types = out.get("type")
    is_string = types == "string" or (isinstance(types, list) and "string" in types)
    if is_string and "enum" not in out and "const" not in out:
        if "pattern" not in out:
            out["pattern"] = NO_NUL
        elif out["pattern"] != NO_NUL:
            out["allOf"] = [*out.get("allOf", []), {"pattern": NO_NUL}]
    if isinstance(out.get("properties"), dict):
        out["properties"] = {k: no_nul(v) for k, v in out["properties"].items()}
    for key in _SUBSCHEMAS:
        if key in out:
            out[key] = no_nul(out[key])
    for key in _SCHEMA_LISTS:
        if key in out:
            out[key] = [no_nul(v) for v in out[key]]
    return out


def _typed(value: str, schema: dict[str, Any]) -> Any:
    if schema.get("type") == "integer":
        try:
            return int(value)
        except ValueError:
            return value
    return value


class RouteTable:
    """All routes of the daemon, in declaration order."""

    def __init__(self) -> None:
        self.routes: list[Route] = []

    def add(self, path: str, method: str, handler: Handler, summary: str, tag: str,
            **kw: Any) -> Route:
        r = Route(path, method, handler, summary, tag, **kw)
        if any(x.path == path and x.method == method for x in self.routes):
            raise ValueError(f"route {method} {path} declared twice")
        self.routes.append(r)
        return r

    def by_path(self) -> dict[str, list[Route]]:
        out: dict[str, list[Route]] = {}
        for r in self.routes:
            out.setdefault(r.path, []).append(r)
        return out


def matching(items: Iterable[dict[str, Any]], query: dict[str, str]) -> list[dict[str, Any]]:
    """The items whose fields equal every ``?field=value`` of the query, fields written as
    in a query string (booleans as true/false)."""
    def text(value: object) -> str:
        return json.dumps(value) if isinstance(value, bool) else str(value)

    return [i for i in items if all(text(i.get(k)) == v for k, v in query.items())]


# Shared schema pieces -------------------------------------------------------------

ERROR_SCHEMA = {
    "type": "object",
    "required": ["code", "reason", "errcode"],
    "properties": {
        "code": {"type": "string", "examples": ["400 Bad Request"]},
        "reason": {"type": "string"},
        "errcode": {"type": "string", "pattern": "^KCH[A-Z]+[0-9]{4}[EW]$"},
    },
}

TASK_SCHEMA = {
    "type": "object",
    "required": ["id", "kind", "status", "message", "progress", "target_uri", "created",
                 "updated", "result"],
    "properties": {
        "id": {"type": "string"},
        "kind": {"type": "string", "examples": ["iso.scan"]},
        "status": {"enum": ["running", "finished", "failed", "cancelled"]},
        "message": {"type": "string",
                    "description": "what the task says now, in the language of the request "
                                   "(Accept-Language, the kimchi_lang cookie)"},
        "message_id": {"type": ["string", "null"],
                       "description": "the English template of `message`, a msgid of the "
                                      "catalogues (`GET /i18n`), `{field}`s filled from "
                                      "`message_args`"},
        "message_args": {"type": ["object", "null"],
                         "description": "the values of `message_id`'s fields"},
        "errcode": {"type": ["string", "null"],
                    "description": "set when `message` is an error's reason (a failed task): "
                                   "its errcode, `message_args` its parameters"},
        "progress": {"type": ["number", "null"], "minimum": 0, "maximum": 100},
        "target_uri": {"type": "string"},
        "created": {"type": "string", "format": "date-time"},
        "updated": {"type": "string", "format": "date-time"},
        "result": {"type": ["object", "null"]},
        "params": {"type": ["object", "null"]},
        "details": {"type": ["object", "null"],
                    "description": "structured progress: counters of the job"},
        "attempt": {"type": "integer", "description": "runs of the job so far (0: queued)"},
        "worker": {"type": ["string", "null"]},
        "owner": {"type": ["string", "null"]},
        "host": {"type": "string", "description": "the host it is about: a host job runs on "
                                                  "a worker serving it"},
    },
}

EVENT_SCHEMA = {
    "type": "object",
    "required": ["type"],
    "properties": {
        "id": {"type": ["string", "null"], "description": "stream id; null for notices"},
        "type": {"type": "string"},
        "time": {"type": "string", "format": "date-time"},
        "data": {},
    },
}
