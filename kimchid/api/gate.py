"""Who is calling, and may they: every request but the public ones passes here first.

Credentials, in this order: ``Authorization: Bearer`` (an API token),
``Authorization: Basic`` (PAM, throttled; a right password is remembered for a
minute so a script's requests do not each cost a PAM check), the session cookie.
An ``Authorization`` header that is neither is a 401 even with a valid cookie.
Logins that arrive together with the same credentials share one PAM check.
Then the cross-site check for credentials a browser sends by itself (cookie,
Basic), then the admin-only table of :mod:`kimchid.auth.policy`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest

from kimchi.errors import Forbidden, KimchiError, TooManyRequests, Unauthorized
from kimchid.api.routes import header
from kimchid.auth import policy
from kimchid.auth.pam import PamLogin
from kimchid.auth.policy import Identity
from kimchid.auth.sessions import COOKIE_NAME, EXPIRES_HEADER, SessionStore
from kimchid.auth.throttle import LoginThrottle, address_bucket
from kimchid.auth.tokens import TokenStore

log = Logger()

BASIC_MEMORY = 60.0  # seconds a right Basic password is remembered (per daemon)
IDENTITY_MEMORY = 30.0  # seconds a token user's groups are remembered


def address(request: IRequest) -> str:
    peer = request.getClientAddress()
    return str(getattr(peer, "host", "") or "")


def is_tls(request: IRequest) -> bool:
    return bool(request.isSecure())


class Gate:
    def __init__(self, *, pam: PamLogin, sessions: SessionStore, tokens: TokenStore,
                 throttle: LoginThrottle, clock: IReactorTime,
                 extra_origins: tuple[str, ...] = (),
                 on_failure: Callable[[str], None] | None = None) -> None:
        """``on_failure(reason)``: a login refused, ``password``, ``token`` or
        ``throttled`` (the metrics count them)."""
        self.pam = pam
        self.on_failure = on_failure
        self.sessions = sessions
        self.tokens = tokens
        self.throttle = throttle
        self.clock = clock
        self.extra_origins = extra_origins
        self._basic: dict[str, tuple[float, Identity]] = {}
        self._identities: dict[str, tuple[float, Identity | None]] = {}
        # password checks in flight, by credentials and address: who is waiting for each
        self._checking: dict[tuple[str, str], list[defer.Deferred[Identity]]] = {}

    async def identify(self, request: IRequest) -> tuple[Identity, bool]:
        """The caller and whether the browser sent the credentials by itself; else 401."""
        authorization = header(request, "authorization")
        bearer = policy.bearer_token(authorization)
        if bearer is not None:
            token = await self.tokens.lookup(bearer)
            who = await self._identity(token.username) if token else None
            if who is None:
                self._failed("token")
                raise self._unauthorized(request, "KCHAUTH0004E")
            return who, False
        basic = policy.basic_credentials(authorization)
        if basic is not None:
            return await self._basic_login(request, *basic), True
        if authorization and authorization.strip():
            # credentials given but not readable (an unknown scheme, bad base64, no colon,
            # an empty token): refused, never silently replaced by the cookie
            scheme = authorization.strip().partition(" ")[0].lower()
            raise self._unauthorized(request, {"basic": "KCHAUTH0001E",
                                               "bearer": "KCHAUTH0004E"}.get(scheme,
                                                                             "KCHAUTH0002E"))
        cookie = request.getCookie(COOKIE_NAME.encode())
        if cookie:
            session = await self.sessions.lookup(cookie.decode(errors="replace"))
            if session is None:
                raise self._unauthorized(request, "KCHAUTH0003E")
            request.setHeader(EXPIRES_HEADER, session.expires_on_header)
            return session.identity, True
        raise self._unauthorized(request, "KCHAUTH0002E")

    async def check(self, request: IRequest, method: str, path: str) -> Identity:
        """Identify the caller of ``method`` on the route ``path``, or raise 401/403."""
        who, ambient = await self.identify(request)
        request.kimchi_identity = who  # type: ignore[attr-defined]  # for the audit log
        self.check_origin(request, method, ambient)
        policy.check_route(who, method, path)
        return who

    def check_origin(self, request: IRequest, method: str, ambient: bool) -> None:
        websocket = (header(request, "upgrade") or "").lower() == "websocket"
        origin = header(request, "origin")
        if not policy.origin_allowed(
                method=method, origin=origin, host=header(request, "host"),
                scheme="https" if is_tls(request) else "http", ambient=ambient,
                websocket=websocket, sec_fetch_site=header(request, "sec-fetch-site"),
                extra_origins=self.extra_origins):
            raise Forbidden("KCHAUTH0007E", origin=origin or "(none)")

    async def login(self, request: IRequest, username: str, password: str) -> Identity:
        """Check a password, throttled (429 after repeated failures), through PAM.

        Requests that arrive together with the same credentials from the same address (a
        script's first requests, a double-clicked button) share one check: each would
        otherwise cost a PAM check and count as an attempt, and the sixth be refused.
        Per address, since the throttle's answer is the address's.
        """
        key = hashlib.sha256(f"{username}\0{password}".encode()).hexdigest()
        checking = (key, address_bucket(address(request)))
        d: defer.Deferred[Identity] = defer.Deferred()  # this request's wait only
        waiting = self._checking.get(checking)
        if waiting is not None:
            waiting.append(d)
        else:
            self._checking[checking] = [d]
            # run apart from this request, so its client going away fails nobody else
            defer.Deferred.fromCoroutine(self._check(checking, request, username, password))
        return await d

    async def _check(self, checking: tuple[str, str], request: IRequest,
                     username: str, password: str) -> None:
        """One throttled PAM check for every request waiting in ``self._checking``."""
        try:
            who = await self._check_password(request, username, password)
        except BaseException:
            outcome = Failure()
            for d in self._checking.pop(checking):
                d.errback(outcome)
            return
        for d in self._checking.pop(checking):
            d.callback(who)

    async def _check_password(self, request: IRequest, username: str,
                              password: str) -> Identity:
        addr = address(request)
        try:
            await self.throttle.attempt(username, addr)
        except TooManyRequests:
            self._failed("throttled")
            raise
        try:
            who = await self.pam.authenticate(username, password, addr)
        except Unauthorized:
            self._failed("password")
            raise  # a wrong password: it stays counted
        except Exception:
            # not checked at all (PAM busy, shutting down): not a failure of the client
            try:
                await self.throttle.unchecked(username, addr)
            except Exception:
                log.failure("could not give back an unchecked login attempt", Failure())
            raise
        await self.throttle.succeeded(username, addr)
        return who

    async def _basic_login(self, request: IRequest, username: str, password: str) -> Identity:
        key = hashlib.sha256(f"{username}\0{password}".encode()).hexdigest()
        hit = self._basic.get(key)
        if hit and self.clock.seconds() - hit[0] < BASIC_MEMORY:
            return hit[1]
        try:
            who = await self.login(request, username, password)
        except KimchiError as e:
            if e.status == 401:
                raise self._unauthorized(request, e.errcode) from None
            raise
        if len(self._basic) > 10_000:
            self._basic.clear()
        self._basic[key] = (self.clock.seconds(), who)
        return who

    async def _identity(self, username: str) -> Identity | None:
        now = self.clock.seconds()
        hit = self._identities.get(username)
        if hit and now - hit[0] < IDENTITY_MEMORY:
            return hit[1]
        who = await self.pam.identity(username)
        self._identities[username] = (now, who)
        return who

    def _failed(self, reason: str) -> None:
        if self.on_failure is not None:
            self.on_failure(reason)

    @staticmethod
    def _unauthorized(request: IRequest, errcode: str) -> Unauthorized:
        err = Unauthorized(errcode)
        err.headers.update(policy.challenge_headers(header(request, "x-requested-with")))
        return err
