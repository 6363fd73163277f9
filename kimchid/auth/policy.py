"""Who may do what: the pure rules of access, with no I/O.

* the role of a user, from their groups;
* which methods of which routes are for administrators only (:data:`ADMIN_ONLY`, a table);
* which VMs (and so which tasks) a user may see;
* the security headers of every answer, and the Basic challenge of a 401;
* credentials read from ``Authorization`` (Basic, Bearer);
* the Origin check that keeps cross-site requests from riding on a browser's credentials.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

from kimchi.errors import Forbidden

ADMIN = "admin"
USER = "user"

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
ALL_METHODS = SAFE_METHODS | UNSAFE_METHODS


@dataclass(frozen=True)
class Identity:
    """Who is calling: a Linux user, their groups and the role those give them."""

    username: str
    groups: tuple[str, ...]
    role: str  # ADMIN | USER

    @property
    def is_admin(self) -> bool:
        return self.role == ADMIN

    def to_json(self) -> dict[str, Any]:
        """The body of ``POST /login``: ``{"username", "groups", "role"}``."""
        return {"username": self.username, "groups": list(self.groups), "role": self.role}


def role_for(groups: Iterable[str], admin_groups: Iterable[str]) -> str:
    """``admin`` when one of ``groups`` is one of ``admin_groups``, else ``user``."""
    return ADMIN if set(groups) & set(admin_groups) else USER


# Admin-only routes -----------------------------------------------------------------


@dataclass(frozen=True)
class AdminRule:
    """``methods`` on ``path`` (and, with ``subtree``, on every path below it) need an admin.

    In ``path`` a ``*`` segment stands for any one segment (a name).
    """

    path: str
    methods: frozenset[str]
    subtree: bool = True

    def matches(self, method: str, segments: list[str]) -> bool:
        mine = [s for s in self.path.split("/") if s]
        if method not in self.methods or len(segments) < len(mine):
            return False
        if not self.subtree and len(segments) != len(mine):
            return False
        return all(m == "*" or m == s for m, s in zip(mine, segments, strict=False))


#: Everything not listed here is open to every logged-in user, subject to VM visibility.
ADMIN_ONLY: tuple[AdminRule, ...] = (
    # creating and changing templates, pools and networks (reading them is for all)
    AdminRule("/templates", UNSAFE_METHODS),
    AdminRule("/storagepools", UNSAFE_METHODS),
    AdminRule("/networks", UNSAFE_METHODS),
    AdminRule("/interfaces", UNSAFE_METHODS),
    # debug reports carry the host's logs and configuration: even reading them
    AdminRule("/debugreports", ALL_METHODS),
    # the host: looking is for all, changing (reboot, shutdown, updates) for admins
    AdminRule("/host", UNSAFE_METHODS),
    # the hosts kimchi manages: looking is for all, adding and removing for admins
    AdminRule("/hosts", frozenset({"POST"}), subtree=False),
    AdminRule("/hosts/*", frozenset({"PUT", "PATCH", "DELETE"}), subtree=False),
    AdminRule("/hosts/*/storagepools", UNSAFE_METHODS),
    AdminRule("/hosts/*/networks", UNSAFE_METHODS),
    # VMs: users operate the VMs assigned to them (start, poweroff, ...), but only admins
    # create, change (a PUT can assign users and groups), delete, clone, template or move
    # them
    AdminRule("/vms", frozenset({"POST"}), subtree=False),
    # at both of a VM's addresses, /vms/<name>/... and /hosts/<host>/vms/<name>/...
    *(AdminRule(f"{at}{path}", methods, subtree=path != "")
      for at in ("/vms/*", "/hosts/*/vms/*")
      for path, methods in (
          ("", frozenset({"PUT", "PATCH", "DELETE"})),
          ("/clone", frozenset({"POST"})),
          ("/template", frozenset({"POST"})),
          ("/migrate", frozenset({"POST"})),
          # snapshots: users see their VMs' snapshots; taking, reverting, deleting are
          # for admins
          ("/snapshots", UNSAFE_METHODS),
          # a VM's devices: users see them, admins attach, change and detach them
          ("/storages", UNSAFE_METHODS),
          ("/ifaces", UNSAFE_METHODS))),
    # reading the host's file systems and probing the hypervisor
    AdminRule("/isos/scan", UNSAFE_METHODS),
    AdminRule("/config/capabilities/refresh", UNSAFE_METHODS),
    # API tokens are issued, listed and revoked by admins
    AdminRule("/tokens", ALL_METHODS),
    # the host's accounts, to pick whom a VM is given to
    AdminRule("/users", ALL_METHODS),
    AdminRule("/groups", ALL_METHODS),
    # who changed what, from where: the audit log
    AdminRule("/auditlog", ALL_METHODS),
    # Prometheus' scrape: the figures of every host and user (or an address of [metrics]
    # allow, let in before the gate)
    AdminRule("/metrics", ALL_METHODS),
)


def _segments(path: str) -> list[str]:
    # decoded, as the router matches it, so "/%74emplates" cannot slip past "/templates"
    return [unquote(s) for s in path.split("?")[0].split("/") if s]


def admin_only(method: str, path: str, rules: Iterable[AdminRule] = ADMIN_ONLY) -> bool:
    """Whether ``method`` on ``path`` is for administrators only.

    ``path`` is best the route's pattern (``/vms/<name>``), else the request's path.
    """
    method = "GET" if method.upper() == "HEAD" else method.upper()
    segments = _segments(path)
    return any(rule.matches(method, segments) for rule in rules)


def check_route(who: Identity, method: str, path: str,
                rules: Iterable[AdminRule] = ADMIN_ONLY) -> None:
    """Raise 403 (``KCHAUTH0005E``) when ``who`` may not call ``method`` on ``path``."""
    if not who.is_admin and admin_only(method, path, rules):
        raise Forbidden("KCHAUTH0005E", method=method.upper(), path=path)


# What a user may see ---------------------------------------------------------------

T = TypeVar("T", bound=Mapping[str, Any])


def can_see_vm(who: Identity, vm: Mapping[str, Any]) -> bool:
    """Admins see every VM; a user those naming them in ``users`` or a group of theirs in
    ``groups`` (the VM's metadata)."""
    if who.is_admin:
        return True
    return who.username in (vm.get("users") or ()) or bool(
        set(who.groups) & set(vm.get("groups") or ()))


def visible_vms(who: Identity, vms: Iterable[T]) -> list[T]:
    """The VMs of ``vms`` that ``who`` may see, in their order."""
    return [vm for vm in vms if can_see_vm(who, vm)]


def check_vm(who: Identity, vm: Mapping[str, Any]) -> None:
    """Raise 403 (``KCHAUTH0006E``) when ``who`` may not see or operate ``vm``."""
    if not can_see_vm(who, vm):
        raise Forbidden("KCHAUTH0006E", name=vm.get("name", "?"), username=who.username)


_VM_URI = re.compile(r"^/vms/([^/?#]+)")


def can_see_task(who: Identity, task: Mapping[str, Any],
                 can_see_vm_named: Callable[[str], bool]) -> bool:
    """Admins see every task; a user their own, and those of VMs they may see."""
    if who.is_admin or (task.get("owner") and task.get("owner") == who.username):
        return True
    m = _VM_URI.match(task.get("target_uri") or "")
    return m is not None and can_see_vm_named(unquote(m.group(1)))


# Headers ---------------------------------------------------------------------------

#: Everything from kimchid itself: no inline script or style, no frames, no plug-ins.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
HSTS = "max-age=31536000"  # a year; not includeSubDomains: the domain may hold other hosts


def security_headers(tls: bool) -> dict[str, str]:
    """Headers for every answer; HSTS only over HTTPS (browsers ignore it over HTTP)."""
    headers = {
        "Content-Security-Policy": CONTENT_SECURITY_POLICY,
        "X-Frame-Options": "DENY",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "same-origin",
        "Cache-Control": "no-store",
    }
    if tls:
        headers["Strict-Transport-Security"] = HSTS
    return headers


# Credentials in headers ------------------------------------------------------------

BASIC_CHALLENGE = 'Basic realm="kimchi", charset="UTF-8"'


def challenge_headers(x_requested_with: str | None) -> dict[str, str]:
    """Headers of a 401: a Basic challenge, except to a page's own scripts
    (``X-Requested-With: XMLHttpRequest``), for which a browser would pop up a dialog."""
    if (x_requested_with or "").strip().lower() == "xmlhttprequest":
        return {}
    return {"WWW-Authenticate": BASIC_CHALLENGE}


def basic_credentials(authorization: str | None) -> tuple[str, str] | None:
    """``(username, password)`` from ``Authorization: Basic ...``; None if not one."""
    scheme, _, value = (authorization or "").strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return None
    username, sep, password = decoded.partition(":")
    return (username, password) if sep and username else None


def bearer_token(authorization: str | None) -> str | None:
    """The token of ``Authorization: Bearer <token>``; None if not one."""
    scheme, _, value = (authorization or "").strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return value.strip() or None


# Cross-site requests ---------------------------------------------------------------

_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def normalise_origin(origin: str) -> str | None:
    """``scheme://host[:port]`` in lower case without a default port; None if not an origin."""
    try:
        u = urlsplit(origin.strip())
        port = u.port
    except ValueError:
        return None
    scheme = u.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not u.hostname or u.path not in ("", "/"):
        return None
    if u.query or u.fragment or u.username or u.password:
        return None
    host = u.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    scheme = {"ws": "http", "wss": "https"}.get(scheme, scheme)
    if port is None or port == _DEFAULT_PORTS[scheme]:
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def origin_allowed(*, method: str, origin: str | None, host: str | None, scheme: str,
                   ambient: bool, websocket: bool = False, sec_fetch_site: str | None = None,
                   extra_origins: Iterable[str] = ()) -> bool:
    """Whether a request may go on, as far as cross-site forgery goes.

    Only credentials a browser sends by itself (``ambient``: the session cookie, HTTP
    Basic it remembered) can be abused from another site; a bearer token cannot.  For
    those, a state-changing method or a WebSocket upgrade must come from our own origin
    (``scheme://host``) or one of ``extra_origins``.  Browsers send ``Origin`` with every
    such request; a request without one is from a script, unless Fetch Metadata
    (``Sec-Fetch-Site``) says a browser sent it from elsewhere.  ``SameSite=Strict`` on
    the cookie is the second line: it does not cover other ports of the same host.
    """
    if not ambient or (method.upper() in SAFE_METHODS and not websocket):
        return True
    if origin is None:
        return sec_fetch_site in (None, "same-origin", "none")
    mine = {normalise_origin(f"{scheme}://{host}")} if host else set()
    mine |= {normalise_origin(o) for o in extra_origins}
    got = normalise_origin(origin)
    return got is not None and got in mine
