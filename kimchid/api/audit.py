"""``GET /auditlog``, and the trail every change leaves: who, from where, what, the result.

:class:`AuditTrail` is called by the dispatcher (``kimchid.api.app``) for each POST, PUT,
PATCH and DELETE that reaches a route, before anything else is done with it; once the
answer has gone out, the entry is recorded by :class:`kimchid.model.audit.AuditLog`.
What the request sent is kept only as a small summary that never holds a secret: the
values of a few identifying fields (a name, a template, a host...), the names of the rest.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import urlencode

from twisted.internet import defer
from twisted.logger import Logger
from twisted.web.iweb import IRequest

from kimchid.api.gate import address
from kimchid.api.routes import JSON, Call, Reply, Route, RouteTable, clip, header
from kimchid.auth import policy
from kimchid.auth.sessions import COOKIE_NAME, SessionStore
from kimchid.model.audit import ENTRY_ID, REQUEST, TASK_END, TIME_PATTERN, AuditLog, parse_time

log = Logger()

AUDITED = frozenset({"POST", "PUT", "PATCH", "DELETE"})
SUMMARY_READ = 64 * 1024  # bytes of a body read for its summary; past it, only its size
# Fields whose values the summary keeps (short scalars, or short lists of them): they name
# what is changed. Every other field is named only: its value may be a secret (a password,
# a token, cloud-init user data, a URL with credentials in it).
KEPT_VALUES = frozenset({
    "name", "new_name", "template", "host", "pool", "storagepool", "network", "format",
    "type", "action", "count", "capacity", "allocation", "cpus", "vcpus", "state", "kind",
    "path", "username", "users", "groups", "expires_in", "mode", "disk_mode", "model",
    "bus", "mac", "interface", "autostart", "persistent", "force", "vm", "volume", "iso",
})
SECRET = re.compile(r"pass|secret|token|key|cred|cookie|auth|hash|user_data|ssh", re.I)
MAX_FIELDS = 20
MAX_LIST = 10
VALUE_LIMIT = 100

ENTRY_SCHEMA = {
    "type": "object",
    "required": ["id", "kind", "time", "user", "address", "method", "route", "path",
                 "target", "status", "errcode", "task", "task_status"],
    "properties": {
        "id": {"type": "string", "description": "the entry's id in the stream (a cursor)"},
        "kind": {"enum": [REQUEST, TASK_END],
                 "description": "a request, or the end of a request's task"},
        "time": {"type": "string", "format": "date-time"},
        "user": {"type": "string", "description": "who (`-`: not signed in); for a "
                                                  "login, the user name tried"},
        "address": {"type": "string", "description": "the client's address (the peer)"},
        "method": {"type": "string"},
        "route": {"type": "string", "examples": ["/vms/<name>"]},
        "path": {"type": "string"},
        "target": {"type": "string", "description": "the object changed"},
        "status": {"type": ["integer", "null"], "description": "HTTP status of the answer"},
        "errcode": {"type": ["string", "null"]},
        "task": {"type": ["string", "null"], "description": "the task of a 202 answer"},
        "task_status": {"type": ["string", "null"],
                        "description": "how that task ended (null: running)"},
        "summary": {"type": ["object", "null"],
                    "description": "what was sent: identifying values, the names of the "
                                   "other fields (`fields`), never a secret"},
        "message": {"type": ["string", "null"], "description": "why a task failed"},
    },
}


def summarise(raw: bytes, content_type: str | None, octets: bool) -> dict[str, Any] | None:
    """A small summary of a request body that holds no secret (None: no body)."""
    if not raw.strip():
        return None
    if octets or len(raw) > SUMMARY_READ:
        return {"bytes": len(raw)}
    if (content_type or "").split(";")[0].strip().lower() != JSON:
        return {"bytes": len(raw)}
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return {"bytes": len(raw)}
    if not isinstance(body, dict):
        return {"bytes": len(raw)}
    out: dict[str, Any] = {}
    names: list[str] = []
    for key, value in list(body.items())[:MAX_FIELDS]:
        if not isinstance(key, str):
            continue
        kept = _kept(value) if key in KEPT_VALUES and not SECRET.search(key) else None
        if kept is None:
            names.append(clip(key, 64))
        else:
            out[key] = kept
    if names:
        out["fields"] = sorted(names)
    if len(body) > MAX_FIELDS:
        out["more_fields"] = len(body) - MAX_FIELDS
    return out


def _kept(value: Any) -> Any:
    """``value`` as the summary keeps it (None: only its field's name is kept)."""
    if isinstance(value, bool) or isinstance(value, int | float) or value is None:
        return value
    if isinstance(value, str):
        return clip(value, VALUE_LIMIT)
    if isinstance(value, list) and all(isinstance(v, str | int | float) for v in value):
        return [clip(v, VALUE_LIMIT) if isinstance(v, str) else v for v in value[:MAX_LIST]]
    return None


def target_of(route: Route, path: str, args: dict[str, str],
              summary: dict[str, Any] | None) -> str:
    """The object a change is about: a name given to a collection (POST /vms {"name"}),
    else the path up to its last argument (/vms/a/start is about /vms/a), else the path."""
    segments = [s for s in route.path.split("/") if s]
    real = [s for s in path.split("/") if s]
    name = (summary or {}).get("name")
    if segments and not segments[-1].startswith("<") and isinstance(name, str) and name \
            and route.method == "POST" and len(real) == len(segments):
        return f"{path.rstrip('/')}/{name}"
    last = max((i for i, s in enumerate(segments) if s.startswith("<")), default=-1)
    if last >= 0 and len(real) == len(segments) and not segments[last].startswith("<path:"):
        return "/" + "/".join(real[:last + 1])
    return path


class AuditTrail:
    """Notes each change as it comes and records it once answered."""

    def __init__(self, audit: AuditLog, sessions: SessionStore | None = None) -> None:
        self.audit = audit
        self.sessions = sessions

    def begin(self, route: Route, request: IRequest, args: dict[str, str]) -> None:
        """Called by the dispatcher for every request to ``route``: a change is recorded
        once its answer has gone out (or its client has gone)."""
        if route.method not in AUDITED:
            return
        try:
            self._begin(route, request, args)
        except Exception:  # the audit never stands in the way of a request
            log.failure("audit log: cannot note {method} {path}", method=route.method,
                        path=route.path)

    def _begin(self, route: Route, request: IRequest, args: dict[str, str]) -> None:
        path = clip(request.path.decode(errors="replace"), 512)
        summary = self._summary(route, request)
        entry: dict[str, Any] = {
            "address": address(request), "method": route.method, "route": route.path,
            "path": path, "target": clip(target_of(route, path, args, summary), 512),
            "summary": summary,
        }
        user: Any = self._claimed_user(route, request, summary)
        if route.path == "/logout" and self.sessions is not None:
            cookie = request.getCookie(COOKIE_NAME.encode())
            if cookie:  # asked now: the logout ends the session
                user = defer.Deferred.fromCoroutine(
                    self.sessions.lookup(cookie.decode(errors="replace"), touch=False))
        d = request.notifyFinish()  # type: ignore[attr-defined]
        d.addBoth(lambda _: self._answered(request, entry, user))

    def _answered(self, request: IRequest, entry: dict[str, Any], user: Any) -> None:
        try:
            self._record(request, entry, user)
        except Exception:
            log.failure("audit log: cannot record {method} {path}", method=entry["method"],
                        path=entry["path"])

    def _record(self, request: IRequest, entry: dict[str, Any], user: Any) -> None:
        who = getattr(request, "kimchi_identity", None)
        status = int(getattr(request, "code", 0) or 0)
        entry["status"] = status
        entry["errcode"] = getattr(request, "kimchi_errcode", None) if status >= 400 else None
        if status == 201:
            location = request.responseHeaders.getRawHeaders(b"location")  # type: ignore[attr-defined]
            if location:
                entry["target"] = clip(location[0].decode(errors="replace"), 512)
        if status == 202:
            location = request.responseHeaders.getRawHeaders(b"location")  # type: ignore[attr-defined]
            if location and location[0].startswith(b"/tasks/"):
                entry["task"] = location[0][len(b"/tasks/"):].decode(errors="replace")
        if who is not None:
            entry["user"] = who.username
            self.audit.record_soon(entry)
        elif isinstance(user, defer.Deferred):
            d = defer.Deferred.fromCoroutine(self._with_session_user(entry, user))
            d.addCallback(self.audit.record_soon)
        else:
            entry["user"] = user
            self.audit.record_soon(entry)

    async def _with_session_user(self, entry: dict[str, Any],
                                 lookup: defer.Deferred[Any]) -> dict[str, Any]:
        try:
            session = await lookup
        except Exception:
            session = None
        entry["user"] = session.identity.username if session is not None else "-"
        return entry

    @staticmethod
    def _claimed_user(route: Route, request: IRequest, summary: dict[str, Any] | None) -> str:
        """Who a request says it is, before (or without) being identified: the user name of
        a login, or of HTTP Basic credentials (a failed login is recorded under it)."""
        if route.path == "/login" and summary and isinstance(summary.get("username"), str):
            return clip(summary["username"], 64)
        header = request.getHeader(b"authorization")
        basic = policy.basic_credentials(header.decode(errors="replace")
                                         if isinstance(header, bytes) else header)
        return clip(basic[0], 64) if basic else "-"

    @staticmethod
    def _summary(route: Route, request: IRequest) -> dict[str, Any] | None:
        content: Any = getattr(request, "content", None)
        if content is None:
            return None
        try:
            where = content.tell()
            raw = content.read(SUMMARY_READ + 1)
            content.seek(where)
        except (OSError, ValueError):
            return None
        return summarise(raw, header(request, "content-type"), route.octets)


def register(table: RouteTable, audit: AuditLog) -> None:
    async def list_entries(call: Call) -> Reply:
        q = call.query
        since = parse_time(q["since"], "since") if q.get("since") else None
        until = parse_time(q["until"], "until") if q.get("until") else None
        limit = int(q.get("limit") or 100)
        found, more = await audit.entries(user=q.get("user") or None, since=since,
                                          until=until, before=q.get("before") or None,
                                          limit=limit)
        if more is None:
            return Reply(200, found)
        query = urlencode({**{k: v for k, v in q.items() if v}, "before": more})
        return Reply(200, found, {"Link": f"</auditlog?{query}>; rel=\"next\""})

    time_param = {"type": "string", "maxLength": 40, "pattern": f"^(?:{TIME_PATTERN})?$"}
    table.add(
        "/auditlog", "GET", list_entries, "Who changed what: the audit log, newest first",
        "audit",
        query={
            "user": {"type": "string", "maxLength": 256,
                     "description": "only this user's entries (`-`: not signed in)"},
            "since": {**time_param, "description": "from this time on: ISO 8601 "
                                                   "(UTC unless an offset is given) or "
                                                   "seconds since the epoch"},
            "until": {**time_param, "description": "up to this time (same forms)"},
            "before": {"type": "string", "pattern": f"^(?:{ENTRY_ID})?$",
                       "description": "entries older than this entry id (the `next` link)"},
            "limit": {"type": "integer", "minimum": 1, "maximum": 1000,
                      "description": "entries at most (default 100)"},
        },
        response={"type": "array", "items": ENTRY_SCHEMA},
        description="Every POST, PUT, PATCH and DELETE that reached a route (logins and "
                    "failed logins too): who, from where, the route and path, the object, "
                    "the HTTP status and errcode, the task of a 202 and, once it ended, "
                    "how (`task_status`, and an entry of kind `task.end`). Request bodies "
                    "are summarised, never kept: no password or token is recorded. With "
                    "`Link: <...>; rel=\"next\"` when there may be more (one answer reads "
                    "at most 4,000 entries, matching or not). Admins only. 400 KCHAUDIT0001E "
                    "for a date that does not exist.",
    )
