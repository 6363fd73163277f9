"""Passwords checked by PAM, on a small pool of threads of its own.

PAM is blocking, and slow on purpose when a password is wrong (``pam_unix`` waits about
2 seconds), so every check runs on this pool, never on the reactor thread: a flood of
bad logins fills the pool and its bounded queue, and everything else keeps answering.
The groups of a user are read on the same pool too (NSS may ask LDAP).

Passwords are never logged, kept or put in an exception.
"""

from __future__ import annotations

import grp
import os
import pwd
from collections.abc import Sequence
from typing import Any

import pam as python_pam
from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool

from kimchi.errors import ServiceUnavailable, Unauthorized
from kimchid.auth.policy import Identity, role_for

log = Logger()

MAX_USERNAME = 256
MAX_PASSWORD = 4096


def groups_of(username: str) -> tuple[str, ...] | None:
    """``username`` as the system spells it, then the names of all its groups (primary
    first); None if there is no such user.  Blocking (NSS)."""
    try:
        pw = pwd.getpwnam(username)
    except KeyError:
        return None
    names: list[str] = []
    for gid in os.getgrouplist(pw.pw_name, pw.pw_gid):
        try:
            name = grp.getgrgid(gid).gr_name
        except KeyError:  # a gid without a name: keep the number
            name = str(gid)
        if name not in names:
            names.append(name)
    return (pw.pw_name, *names)


def _check_password(service: str, username: str, password: str) -> tuple[bool, int, str]:
    """One PAM conversation (authenticate, then account); blocking, on a pool thread."""
    p = python_pam.PamAuthenticator()
    # resetcreds=False: kimchid only asks whether the password is right; it does not
    # become the user, so there are no credentials to establish
    ok = p.authenticate(username, password, service=service, resetcreds=False)
    reason = p.reason.decode(errors="replace") if isinstance(p.reason, bytes) else p.reason
    return ok, p.code, reason or ""


def _plausible(username: str, password: str) -> bool:
    return (0 < len(username) <= MAX_USERNAME and len(password) <= MAX_PASSWORD
            and not username.startswith("-")
            and not any(ord(c) < 32 or c == "\x7f" for c in username)
            and "\x00" not in password)


class PamLogin(Service):
    """Check passwords with PAM service ``service`` on ``threads`` threads.

    At most ``queue`` checks wait for a thread; more get a 503 (``KCHAUTH0009E``) at
    once instead of a place in a queue that would take minutes to drain.
    """

    name = "pam"  # type: ignore[assignment]

    def __init__(self, service: str, admin_groups: Sequence[str], reactor: Any,
                 threads: int = 4, queue: int = 64) -> None:
        self.service = service
        self.admin_groups = tuple(admin_groups)
        self.reactor = reactor
        self.threads = threads
        self.queue = queue
        self._pool = ThreadPool(minthreads=0, maxthreads=threads, name="pam")
        self._in_flight: set[defer.Deferred[Any]] = set()
        self._closing = False

    @property
    def pending(self) -> int:
        """Checks running or waiting for a thread."""
        return len(self._in_flight)

    def startService(self) -> None:
        super().startService()
        self._closing = False
        self._pool.start()

    def stopService(self) -> defer.Deferred[None]:
        super().stopService()
        return defer.Deferred.fromCoroutine(self._stop())

    async def _stop(self) -> None:
        # let the checks in flight end (a failure delay at most), then join idle threads
        self._closing = True
        await defer.DeferredList(list(self._in_flight), consumeErrors=True)
        self._pool.stop()

    async def _run(self, f: Any, *args: Any) -> Any:
        if self._closing or len(self._in_flight) >= self.threads + self.queue:
            err = ServiceUnavailable("KCHAUTH0009E")
            err.headers["Retry-After"] = "2"
            raise err
        d = deferToThreadPool(self.reactor, self._pool, f, *args)
        self._in_flight.add(d)
        try:
            return await d
        finally:
            self._in_flight.discard(d)

    async def authenticate(self, username: str, password: str, address: str = "") -> Identity:
        """The identity of ``username`` if ``password`` is theirs, else 401 ``KCHAUTH0001E``.

        Wrong password, unknown user and locked account are one answer, so it tells an
        attacker nothing; the log says which.
        """
        shown = username[:64]
        if not _plausible(username, password):
            log.warn("login refused for {username!r} from {address}: malformed credentials",
                     username=shown, address=address or "?")
            raise Unauthorized("KCHAUTH0001E")
        ok, code, reason = await self._run(_check_password, self.service, username, password)
        if not ok:
            log.warn("login refused for {username!r} from {address}: PAM {code} {reason}",
                     username=shown, address=address or "?", code=code, reason=reason)
            raise Unauthorized("KCHAUTH0001E")
        who = await self.identity(username)
        if who is None:  # PAM knows the user, NSS does not: no groups, no role
            log.warn("login refused for {username!r}: PAM accepted, but no such user in NSS",
                     username=shown)
            raise Unauthorized("KCHAUTH0001E")
        log.info("login accepted for {username} ({role}) from {address}",
                 username=who.username, role=who.role, address=address or "?")
        return who

    async def identity(self, username: str) -> Identity | None:
        """The current groups and role of ``username`` (no password asked), None if unknown.

        For API tokens and cached credentials: roles follow group changes.
        """
        if not _plausible(username, ""):
            return None
        found = await self._run(groups_of, username)
        if found is None:
            return None
        name, *groups = found
        return Identity(name, tuple(groups), role_for(groups, self.admin_groups))
