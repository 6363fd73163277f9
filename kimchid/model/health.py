"""What is wrong with this host and how to fix it: ``GET /health`` and the ``service.*`` events.

Every problem kimchid knows of is one :class:`Problem` with a stable id: Redis
away (``redis``), libvirtd away (``libvirt``), the default network or storage
pool missing or stopped (``network-default``, ``pool-default``, see
host_setup).  The default network and pool are checked when libvirt connects
(and made right then), again half a second after libvirt says one of them
changed (by kimchi or by anyone else: a burst of news is one look), and every
30 s in case an event was lost.  Each
change of a component's problems is announced once, ``service.degraded`` with
the problems or ``service.recovered`` when none is left; browsers re-read
``/health`` on either.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from twisted.application.service import Service
from twisted.internet import defer, task
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from kimchi.bus.twisted import RedisClient
from kimchi.errors import ServiceUnavailable
from kimchid.adapters.libvirt import LibvirtConnection
from kimchid.model.events import EventHub
from kimchid.model.tasks import TaskService

log = Logger()

RECHECK_SECONDS = 30.0  # a look now and then, in case an event was lost
ANSWER_SECONDS = 5.0  # libvirtd silent this long is reported down
SETTLE_SECONDS = 0.5  # after libvirt's news, one look for a burst (defined, then started)


@dataclass(frozen=True)
class Problem:
    """One thing that is wrong, as ``GET /health`` and ``service.degraded`` show it."""

    id: str  # stable: "redis", "libvirt", "network-default", "pool-default"
    component: str  # "redis" | "libvirt"
    what: str  # short, for people: "The default network"
    reason: str  # why: the adapter's or libvirt's own message
    fix: str  # what the admin should do, with the commands
    # What was found ("missing", "stopped"); not shown. A re-check that finds the same
    # keeps the reason already given, which may be libvirt's message of a failed repair.
    state: str = ""

    def public(self) -> dict[str, str]:
        return {"id": self.id, "component": self.component, "what": self.what,
                "reason": self.reason, "fix": self.fix}


def redis_down(error: str, embedded: bool) -> Problem:
    fix = ("kimchid restarts its own redis-server by itself; if it keeps failing, read "
           "kimchid's log (./kimchi.sh logs, or journalctl -u kimchid)" if embedded else
           "start the Redis server kimchid is configured with (systemctl start "
           "redis-server); kimchid reconnects by itself once it answers")
    return Problem(id="redis", component="redis", what="Redis, the message bus",
                   reason=error or "it does not answer", fix=fix)


def libvirt_down(error: str) -> Problem:
    return Problem(id="libvirt", component="libvirt", what="libvirtd",
                   reason=error or "it does not answer",
                   fix="start libvirtd (systemctl start libvirtd, or libvirtd -d); kimchid "
                       "reconnects by itself")


Check = Callable[[Any], list[Problem]]  # (libvirt connection) -> problems, blocking


class Health(Service):
    """The host's problems, kept current, and ``GET /health``."""

    name = "health"  # type: ignore[assignment]

    def __init__(self, redis: RedisClient, libvirt: LibvirtConnection, events: EventHub,
                 tasks: TaskService, clock: IReactorTime, *, ensure_defaults: Check,
                 check_defaults: Check, redis_embedded: bool,
                 recheck_every: float = RECHECK_SECONDS,
                 settle: float = SETTLE_SECONDS) -> None:
        """``ensure_defaults`` makes the default network and pool right (on connecting);
        ``check_defaults`` only looks (every other time)."""
        self.redis = redis
        self.libvirt = libvirt
        self.events = events
        self.tasks = tasks
        self.clock = clock
        self.ensure_defaults = ensure_defaults
        self.check_defaults = check_defaults
        self.redis_embedded = redis_embedded
        self.recheck_every = recheck_every
        self.settle = settle
        self.defaults: list[Problem] = []  # of the default network and pool, last checked
        self._told: list[Problem] = []  # libvirt's problems, as last announced
        self._wanted: bool | None = None  # a check asked for: True makes things right
        self._checking: defer.Deferred[None] | None = None
        self._timer: task.LoopingCall | None = None
        self._settling: IDelayedCall | None = None
        self._redis_down_since: float | None = None
        libvirt.connect_listeners.append(self._libvirt_connected)
        libvirt.down_listeners.append(self._libvirt_down)
        libvirt.network_listeners.append(self._default_changed)
        libvirt.pool_listeners.append(self._default_changed)
        redis.on_change(self._redis_changed)

    def startService(self) -> None:
        super().startService()
        self._timer = task.LoopingCall(self.recheck)
        self._timer.clock = self.clock
        self._timer.start(self.recheck_every, now=False)

    def stopService(self) -> defer.Deferred[None] | None:
        super().stopService()
        if self._timer is not None and self._timer.running:
            self._timer.stop()
        if self._settling is not None and self._settling.active():
            self._settling.cancel()
        self._wanted = None
        return self._checking  # a check in flight ends before libvirt's threads stop

    # -- GET /health ------------------------------------------------------------------

    async def report(self) -> dict[str, Any]:
        """What runs, and every problem known now."""
        problems: list[Problem] = []
        workers = 0
        if self.redis.up:
            try:
                workers = await self.tasks.live_workers()
            except Exception:
                pass
        else:
            problems.append(redis_down(self.redis.error, self.redis_embedded))
        try:
            await self.libvirt.answering(ANSWER_SECONDS)
            lv = "up"
            problems += self.defaults
        except ServiceUnavailable as e:
            lv = "down"
            problems.append(libvirt_down(self.libvirt.error or e.params.get("error", "")
                                         or "not connected"))
        return {
            "status": "degraded" if problems else "ok",
            "redis": "up" if self.redis.up else "down",
            "libvirt": lv,
            "workers": workers,
            "problems": [p.public() for p in problems],
        }

    # -- the default network and pool -------------------------------------------------

    def recheck(self, fix: bool = False) -> None:
        """Check the default network and pool soon (``fix``: make them right, as on
        connecting).  Never two checks at once: one asked for meanwhile runs after."""
        if not self.running:
            return
        self._wanted = fix or bool(self._wanted)
        if self._checking is None:
            d = defer.Deferred.fromCoroutine(self._run_checks())
            if not d.called:
                self._checking = d

    async def _run_checks(self) -> None:
        try:
            while self._wanted is not None:
                fix, self._wanted = self._wanted, None
                try:
                    await self._check(fix)
                except Exception as e:
                    log.warn("checking the default network and pool failed: {e}", e=str(e))
        finally:
            self._checking = None

    async def _check(self, fix: bool) -> None:
        if not self.libvirt.up:
            return  # libvirtd's own problem is told; connecting again checks everything
        found = await self.libvirt.run(self.ensure_defaults if fix else self.check_defaults)
        if not self.libvirt.up:
            return  # went away meanwhile: that is the news
        if not fix:  # the same as before keeps its reason (libvirt's, of a failed repair)
            known = {(p.id, p.state): p for p in self.defaults}
            found = [known.get((p.id, p.state), p) for p in found]
        self.defaults = found
        await self._tell(found, "degraded")

    def _libvirt_connected(self) -> None:
        self.recheck(fix=True)

    def _default_changed(self, name: str, event: str) -> None:
        if name == "default" and self._settling is None:
            self._settling = self.clock.callLater(self.settle, self._settled)

    def _settled(self) -> None:
        self._settling = None
        self.recheck()

    def _libvirt_down(self, error: str) -> None:
        d = defer.Deferred.fromCoroutine(self._tell([libvirt_down(error)], "down"))
        d.addErrback(lambda f: log.warn("cannot tell libvirt is down: {e}",
                                        e=f.getErrorMessage()))

    # -- Redis ------------------------------------------------------------------------

    def _redis_changed(self, up: bool, error: str) -> None:
        now = self.clock.seconds()
        if not up:
            self._redis_down_since = self._redis_down_since or now
            # Redis is away: only the live watchers can hear it, and nothing is replayed
            self.events.ephemeral("service.degraded", _degraded(
                "redis", "down", [redis_down(error, self.redis_embedded)]))
            return
        if self._redis_down_since is None:
            return  # the first connection: nothing was wrong before
        down_for, self._redis_down_since = now - self._redis_down_since, None
        d = defer.Deferred.fromCoroutine(self.events.publish("service.recovered", {
            "component": "redis", "status": "up", "down_seconds": round(down_for, 1)}))
        d.addErrback(lambda f: log.warn("cannot tell redis is back: {e}",
                                        e=f.getErrorMessage()))

    # -- telling ----------------------------------------------------------------------

    async def _tell(self, problems: list[Problem], status: str) -> None:
        """libvirt's ``service.degraded`` or ``service.recovered``, once per change of its
        problems (Redis has its own: it comes and goes as a whole)."""
        if [p.public() for p in problems] == [p.public() for p in self._told]:
            return
        self._told = problems
        if problems:
            for p in problems:
                log.warn("{what}: {reason} ({fix})", what=p.what, reason=p.reason, fix=p.fix)
            etype, data = "service.degraded", _degraded("libvirt", status, problems)
        else:
            log.info("libvirt: every problem is gone")
            etype, data = "service.recovered", {"component": "libvirt", "status": "up"}
        try:
            await self.events.emit(etype, data)
        except Exception:
            self.events.ephemeral(etype, data)  # Redis away too: at least the live watchers


def _degraded(component: str, status: str, problems: list[Problem]) -> dict[str, Any]:
    return {"component": component, "status": status,
            "reason": "; ".join(f"{p.what}: {p.reason}" for p in problems),
            "fix": "; ".join(p.fix for p in problems),
            "problems": [p.public() for p in problems]}
