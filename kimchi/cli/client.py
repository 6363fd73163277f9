"""The CLI's HTTP client: kimchid's REST API, its errors, and its event stream (SSE).

Everything the CLI does goes through here, over the public API only.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import requests

from kimchi import __version__, i18n
from kimchi.cli.settings import Settings

# Exit codes scripts can rely on (docs/cli.md lists them).
OK = 0
API_ERROR = 1  # the server refused the request (400, 409, 5xx ...)
USAGE = 2  # bad flags or arguments (click's own code), or a bad cli.toml
AUTH = 3  # not logged in (401) or not allowed (403)
NOT_FOUND = 4  # no such object (404)
TASK_FAILED = 5  # a task waited for ended failed or cancelled
UNREACHABLE = 6  # no answer: connection refused, DNS, TLS certificate not verified
TIMED_OUT = 7  # --timeout ran out while waiting for a task

TASK_ENDED = ("finished", "failed", "cancelled")
STREAM_READ_TIMEOUT = 40.0  # seconds of silence before a stream is deemed dead (the
# server sends a keepalive comment every 15 s)


class CliError(Exception):
    """An error to report and exit with ``exit_code``."""

    def __init__(self, message: str, exit_code: int = API_ERROR,
                 body: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code
        self.body = body  # the server's JSON error, when it sent one


class ApiError(CliError):
    """The server answered with an error status."""

    def __init__(self, status: int, message: str, body: dict[str, Any] | None) -> None:
        code = {401: AUTH, 403: AUTH, 404: NOT_FOUND}.get(status, API_ERROR)
        super().__init__(message, code, body)
        self.status = status
        self.errcode = (body or {}).get("errcode")


class Unreachable(CliError):
    def __init__(self, message: str) -> None:
        super().__init__(message, UNREACHABLE)


class StreamLost(Exception):
    """An event stream ended or broke: reconnect from the last event seen."""


def path_of(*parts: str) -> str:
    """An API path from its segments, each quoted (a name never escapes its segment)."""
    return "/" + "/".join(quote(p, safe="") for p in parts)


def accept_language(environ: Mapping[str, str]) -> str | None:
    """The locale's language as an ``Accept-Language`` value (pt_BR.UTF-8: pt-BR)."""
    for var in ("LC_ALL", "LC_MESSAGES", "LANG"):
        value = environ.get(var)
        if value:
            tag = value.split(".")[0].split("@")[0]
            if tag in ("C", "POSIX"):
                return None
            return tag.replace("_", "-")
    return None


def event_key(event_id: str) -> tuple[int, int]:
    """An event id as a comparable pair (ids are Redis stream ids: ``<ms>-<seq>``)."""
    ms, _, seq = event_id.partition("-")
    return int(ms), int(seq or 0)


@dataclass
class Event:
    id: str | None
    data: dict[str, Any]


class Client:
    """kimchid's API as seen from one set of :class:`Settings`."""

    def __init__(self, settings: Settings,
                 password_prompt: Callable[[str], str | None] | None = None) -> None:
        self.settings = settings
        self.http = requests.Session()
        self.http.headers["User-Agent"] = f"kimchi-cli/{__version__}"
        self.http.headers["Accept"] = "application/json"
        language = accept_language(os.environ)
        if language:  # the server's messages in the user's language (errcodes never change)
            self.http.headers["Accept-Language"] = language
        #: the language the server answers in: what events (in English) are shown in
        self.language = i18n.negotiate(language)
        self._password_prompt = password_prompt
        self._auth_ready = False

    # -- credentials ---------------------------------------------------------------

    def _authenticate(self) -> None:
        if self._auth_ready:
            return
        s = self.settings
        if s.token:
            self.http.headers["Authorization"] = f"Bearer {s.token}"
        elif s.user:
            password = s.password
            if password is None and self._password_prompt is not None:
                password = self._password_prompt(s.user)
            if password is None:
                raise CliError(f"no password for user {s.user}: set KIMCHI_PASSWORD, "
                               "--password or password in cli.toml (or use a token)", AUTH)
            self.http.auth = (s.user, password)
        self._auth_ready = True

    # -- requests ------------------------------------------------------------------

    def url(self, path: str) -> str:
        return self.settings.url + path

    def request(self, method: str, path: str, *, body: Any = None,
                params: dict[str, Any] | None = None, headers: dict[str, str] | None = None,
                stream: bool = False, timeout: Any = None,
                allow_redirects: bool = True) -> requests.Response:
        """Send one request; an error status raises :class:`ApiError`."""
        self._authenticate()
        kw: dict[str, Any] = {}
        if body is not None:
            kw["data"] = json.dumps(body).encode()
            kw["headers"] = {"Content-Type": "application/json"}
        if headers:
            kw["headers"] = {**kw.get("headers", {}), **headers}
        query = {k: v for k, v in (params or {}).items() if v is not None}
        try:
            # verify given with each request: requests' session-wide one loses to
            # REQUESTS_CA_BUNDLE in the environment, and --ca-file must win
            r = self.http.request(method, self.url(path), params=query, stream=stream,
                                  verify=self.settings.verify,
                                  timeout=timeout or self.settings.timeout,
                                  allow_redirects=allow_redirects, **kw)
        except requests.exceptions.SSLError as e:
            raise Unreachable(
                f"the certificate of {self._where()} could not be verified ({_cause(e)}); "
                "give the CA that signed it with --ca-file or ca_file in cli.toml "
                "(kimchid's own certificate: /var/lib/kimchi/tls/kimchi-cert.pem)") from None
        except requests.exceptions.Timeout:
            raise Unreachable(f"{self._where()} did not answer within "
                              f"{timeout or self.settings.timeout:g} s") from None
        except requests.exceptions.ConnectionError as e:
            raise Unreachable(f"cannot reach {self._where()}: {_cause(e)}") from None
        except requests.exceptions.InvalidURL as e:
            raise CliError(f"bad server URL {self.settings.url!r}: {e}", USAGE) from None
        if r.status_code >= 400:
            raise self._error(r)
        return r

    def _where(self) -> str:
        u = urlsplit(self.settings.url)
        return f"{u.scheme}://{u.netloc}"

    @staticmethod
    def _error(r: requests.Response) -> ApiError:
        try:
            body = r.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and "reason" in body:
            reason, errcode = str(body["reason"]), body.get("errcode")
            if errcode and str(errcode) not in reason:
                reason = f"{errcode}: {reason}"
            return ApiError(r.status_code, reason, body)
        text = " ".join(r.text.split())[:200] if r.text else ""
        return ApiError(r.status_code, f"{r.status_code} {r.reason}" + (f": {text}" if text
                                                                          else ""), None)

    def call(self, method: str, path: str, body: Any = None,
             params: dict[str, Any] | None = None) -> Any:
        """The JSON answer of one request (None for an empty one, as 204 sends)."""
        r = self.request(method, path, body=body, params=params)
        if not r.content:
            return None
        try:
            return r.json()
        except ValueError:
            raise CliError(f"{method} {path}: the server's answer is not JSON") from None

    def get(self, path: str, **params: Any) -> Any:
        return self.call("GET", path, params=params)

    def post(self, path: str, body: Any = None) -> Any:
        return self.call("POST", path, {} if body is None else body)

    def put(self, path: str, body: Any) -> Any:
        return self.call("PUT", path, body)

    def delete(self, path: str) -> Any:
        return self.call("DELETE", path)

    def cursor(self) -> str:
        """The newest event's id now: watching after it misses nothing that follows."""
        r = self.request("GET", "/tasks", params={"limit": 1})
        return r.headers.get("Events-Cursor") or "0"

    def download(self, path: str, into: Any) -> requests.Response:
        """Stream ``path``'s body into the file object ``into``; returns the response."""
        r = self.request("GET", path, stream=True, headers={"Accept": "*/*"},
                         timeout=(self.settings.timeout, STREAM_READ_TIMEOUT))
        try:
            for chunk in r.iter_content(1 << 16):
                into.write(chunk)
        except requests.exceptions.RequestException as e:
            raise Unreachable(f"the download of {path} broke off: {_cause(e)}") from None
        finally:
            r.close()
        return r

    # -- events --------------------------------------------------------------------

    def sse(self, since: str | None, types: str | None = None, task: str | None = None,
            read_timeout: float = STREAM_READ_TIMEOUT) -> Iterator[Event]:
        """One SSE connection to ``/events``: its events, in order, until it ends.

        Raises :class:`StreamLost` when the connection ends or breaks for any reason (the
        daemon restarting, a proxy, the server dropping a client too slow to read), so the
        caller reconnects after the last event it got."""
        headers = {"Accept": "text/event-stream"}
        if since:
            headers["Last-Event-ID"] = since
        params = {"types": types, "task": task, "since": since}
        try:
            r = self.request("GET", "/events", params=params, headers=headers, stream=True,
                             timeout=(self.settings.timeout, read_timeout))
        except Unreachable as e:
            if "certificate" in e.message:
                raise
            raise StreamLost(e.message) from None
        except ApiError as e:
            if e.status in (502, 503, 504):  # starting, or a proxy in front of it is
                raise StreamLost(e.message) from None
            raise
        try:
            yield from _parse_sse(r)
        except requests.exceptions.RequestException as e:
            raise StreamLost(_cause(e)) from None
        finally:
            r.close()
        raise StreamLost("the server closed the stream")


def _parse_sse(r: requests.Response) -> Iterator[Event]:
    event_id: str | None = None
    data: list[str] = []
    for raw in r.iter_lines(chunk_size=4096):
        line = raw.decode("utf-8", errors="replace")
        if line == "":
            if data:
                yield Event(event_id, json.loads("\n".join(data)))
            event_id, data = None, []
        elif line.startswith(":"):
            if line.startswith(": dropped"):  # the server gave up on us: resume
                raise StreamLost(line[2:])
        else:
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "id":
                event_id = value
            elif name == "data":
                data.append(value)


def _cause(e: BaseException) -> str:
    """The innermost reason of a requests/urllib3 error, without their wrapping."""
    while True:
        args = getattr(e, "args", ())
        inner = getattr(e, "reason", None) or (args[0] if args and isinstance(
            args[0], BaseException) else None)
        if inner is None or inner is e:
            break
        e = inner
    text = str(e)
    errno = re.search(r"\[Errno -?\d+\] ([^)'\]]+)", text)  # socket errors: their words
    if errno:
        return errno.group(1).strip()
    return text.split(": ", 1)[-1] if text.startswith("<") else text


def follow(client: Client, since: str | None, *, types: str | None = None,
           task: str | None = None, on_lost: Callable[[str, str | None], None] | None = None,
           deadline: float | None = None,
           retry: Callable[[int], float] = lambda n: min(0.25 * 2 ** n, 5.0)) -> Iterator[Event]:
    """Every event after ``since``, for ever, across dropped connections and restarts.

    Each reconnection resumes after the last event received (``Last-Event-ID``), so none
    is missed or repeated; an event whose id is not after the last one is dropped all the
    same.  ``on_lost(reason, last_id)`` is told of each loss; ``deadline`` (a
    ``time.monotonic()``) ends the watch with :class:`TimeoutError`.
    """
    last = since
    last_key = event_key(since) if since else None
    failures = 0
    while True:
        read_timeout = STREAM_READ_TIMEOUT
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            read_timeout = max(0.2, min(read_timeout, left))
        try:
            for ev in client.sse(last, types, task, read_timeout):
                failures = 0
                if deadline is not None and time.monotonic() >= deadline:
                    raise TimeoutError
                if ev.id:
                    key = event_key(ev.id)
                    if last_key is not None and key <= last_key:
                        continue  # already seen (a replay overlapping what we had)
                    last, last_key = ev.id, key
                yield ev
        except StreamLost as e:
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError from None
            if on_lost is not None:
                on_lost(str(e), last)
            pause = retry(failures)
            if deadline is not None:
                pause = min(pause, max(0.0, deadline - time.monotonic()))
            time.sleep(pause)
            failures += 1
