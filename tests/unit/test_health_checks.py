"""The host's problems: what check_defaults finds on libvirt's test driver, and how Health
keeps them current and tells each change once (on a clock moved by hand)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import libvirt
import pytest
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from kimchi.bus.twisted import RedisClient
from kimchi.errors import ServiceUnavailable
from kimchid.adapters.libvirt import LibvirtConnection
from kimchid.model.events import EventHub
from kimchid.model.health import Health, Problem
from kimchid.model.host_setup import NETWORK, POOL, check_defaults, ensure_defaults

# -- host_setup on the test driver ------------------------------------------------------


@pytest.fixture
def conn() -> Any:
    c = libvirt.open("test:///default")
    yield c
    assert ensure_defaults(c) == []  # as the next test expects to find them
    c.close()


def by_id(problems: list[Problem]) -> dict[str, Problem]:
    return {p.id: p for p in problems}


def test_check_reports_a_stopped_then_missing_default_and_changes_nothing(conn):
    assert ensure_defaults(conn) == []  # made (the test driver has no pool "default")
    assert check_defaults(conn) == []
    conn.networkLookupByName("default").destroy()
    conn.storagePoolLookupByName("default").destroy()
    found = by_id(check_defaults(conn))
    assert set(found) == {NETWORK, POOL}
    assert found[NETWORK].state == "stopped" and "net-start default" in found[NETWORK].fix
    assert found[POOL].state == "stopped" and "pool-start default" in found[POOL].fix
    assert not conn.networkLookupByName("default").isActive()  # only looked

    conn.networkLookupByName("default").undefine()
    net = by_id(check_defaults(conn))[NETWORK]
    assert net.state == "missing"
    assert net.reason == "Network not found: no network with matching name 'default'"
    assert net.public() == {"id": "network-default", "component": "libvirt",
                            "what": "The default network", "reason": net.reason,
                            "fix": net.fix}
    assert ensure_defaults(conn) == []  # the start-up path makes both right again
    assert conn.networkLookupByName("default").isActive()


def test_a_repair_that_fails_gives_libvirts_reason(conn, monkeypatch):
    assert ensure_defaults(conn) == []
    conn.networkLookupByName("default").destroy()

    def refuse(self: Any) -> int:
        raise libvirt.libvirtError("internal error: Network is already in use by virbr9")

    monkeypatch.setattr(libvirt.virNetwork, "create", refuse)
    (p,) = ensure_defaults(conn)
    assert p.id == NETWORK and p.state == "stopped"
    assert p.reason == "internal error: Network is already in use by virbr9"


# -- Health, with stand-ins for the adapters ----------------------------------------------


class StandInLibvirt:
    """The libvirt adapter's listeners and ``run``, without threads."""

    def __init__(self) -> None:
        self.up = True
        self.error = ""
        self.connect_listeners: list[Callable[[], None]] = []
        self.down_listeners: list[Callable[[str], None]] = []
        self.network_listeners: list[Callable[[str, str], None]] = []
        self.pool_listeners: list[Callable[[str, str], None]] = []
        self.conn = self

    def getLibVersion(self) -> int:  # noqa: N802 (libvirt's name)
        return 9000000

    async def run(self, fn: Callable[[Any], Any]) -> Any:
        if not self.up:
            raise RuntimeError(self.error)
        return fn(self.conn)

    async def answering(self, timeout: float) -> None:
        if not self.up:
            raise ServiceUnavailable("KCHSVC0002E", error=self.error)


class StandInRedis:
    def __init__(self) -> None:
        self.up = True
        self.error = ""
        self.listeners: list[Callable[[bool, str], None]] = []

    def on_change(self, listener: Callable[[bool, str], None]) -> None:
        self.listeners.append(listener)


class RecordedEvents:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []
        self.notices: list[tuple[str, dict[str, Any]]] = []

    async def emit(self, etype: str, data: dict[str, Any], task_id: str = "") -> str:
        self.sent.append((etype, data))
        return "0-1"

    async def publish(self, etype: str, data: dict[str, Any]) -> None:
        await self.emit(etype, data)

    def ephemeral(self, etype: str, data: dict[str, Any]) -> None:
        self.notices.append((etype, data))


class Tasks:
    async def live_workers(self, window: float = 3.0) -> int:
        return 2


def test_the_stand_ins_match_the_real_adapters():
    for stand_in, real in ((StandInLibvirt, LibvirtConnection), (StandInRedis, RedisClient),
                           (RecordedEvents, EventHub)):
        for name, fn in inspect.getmembers(stand_in, inspect.isfunction):
            if not name.startswith("_") and name != "getLibVersion":
                assert params(fn) == params(getattr(real, name)), (stand_in, name)


def params(fn: Any) -> list[tuple[str, Any]]:
    return [(p.name, p.kind) for p in inspect.signature(fn).parameters.values()]


STOPPED = Problem(id=NETWORK, component="libvirt", what="The default network",
                  reason="it is defined but not running", fix="virsh net-start default",
                  state="stopped")
MISSING = Problem(id=NETWORK, component="libvirt", what="The default network",
                  reason="Network not found", fix="make it again", state="missing")


class Host:
    """Health wired to stand-ins; ``found`` is what the next look at libvirt finds."""

    def __init__(self) -> None:
        self.clock = Clock()
        self.libvirt = StandInLibvirt()
        self.redis = StandInRedis()
        self.events = RecordedEvents()
        self.found: list[Problem] = []
        self.repaired: list[Problem] = []
        self.looks = 0
        self.health = Health(self.redis, self.libvirt, self.events, Tasks(),  # type: ignore
                             self.clock, ensure_defaults=self._ensure,
                             check_defaults=self._check, redis_embedded=True)
        self.health.startService()

    def _ensure(self, conn: Any) -> list[Problem]:
        self.looks += 1
        return list(self.repaired)

    def _check(self, conn: Any) -> list[Problem]:
        self.looks += 1
        return list(self.found)

    def libvirt_says(self, name: str = "default") -> None:
        for listener in self.libvirt.network_listeners:
            listener(name, "stopped")

    def told(self) -> list[tuple[str, list[str]]]:
        return [(t, [p["reason"] for p in d.get("problems", [])]) for t, d in self.events.sent]

    def report(self) -> dict[str, Any]:
        """GET /health's body (every stand-in answers at once)."""
        d = Deferred.fromCoroutine(self.health.report())
        out: list[dict[str, Any]] = []
        d.addCallback(out.append)
        assert out, "the report waited on something"
        return out[0]


def connected() -> Host:
    host = Host()
    for listener in host.libvirt.connect_listeners:
        listener()
    return host


def test_a_change_libvirt_tells_of_is_seen_after_it_settles_and_told_once():
    host = connected()
    assert host.looks == 1 and host.events.sent == []  # all fine at start: nothing to say
    host.found = [STOPPED]
    host.libvirt_says()
    host.libvirt_says()  # a burst: one look
    host.libvirt_says("other")
    host.clock.advance(0.5)
    assert host.looks == 2
    assert host.told() == [("service.degraded", ["it is defined but not running"])]
    etype, data = host.events.sent[0]
    assert data["component"] == "libvirt" and data["status"] == "degraded"
    assert data["reason"] == "The default network: it is defined but not running"
    assert data["fix"] == "virsh net-start default"

    host.found = [MISSING]
    host.libvirt_says()
    host.clock.advance(0.5)
    host.clock.pump([30.0] * 4)  # the periodic looks find the same: nothing more is told
    assert host.looks == 7
    assert host.told() == [("service.degraded", ["it is defined but not running"]),
                           ("service.degraded", ["Network not found"])]

    host.found = []
    host.libvirt_says()
    host.clock.advance(0.5)
    assert host.events.sent[-1] == ("service.recovered", {"component": "libvirt",
                                                         "status": "up"})
    assert len(host.events.sent) == 3


def test_a_change_no_event_told_of_is_found_by_the_periodic_look():
    host = connected()
    host.found = [MISSING]
    host.clock.advance(29.0)
    assert host.events.sent == []
    host.clock.advance(1.0)
    assert host.told() == [("service.degraded", ["Network not found"])]


def test_health_lists_every_problem_with_its_shape():
    host = connected()
    host.found = [STOPPED]
    host.clock.advance(30.0)
    h = host.report()
    assert h["status"] == "degraded" and h["libvirt"] == "up" and h["workers"] == 2
    assert h["problems"] == [STOPPED.public()]
    assert set(h["problems"][0]) == {"id", "component", "what", "reason", "fix"}

    host.redis.up, host.redis.error = False, "Connection refused"
    for listener in host.redis.listeners:
        listener(False, "Connection refused")
    h = host.report()
    assert h["redis"] == "down" and [p["id"] for p in h["problems"]] == ["redis",
                                                                          NETWORK]
    redis = h["problems"][0]
    assert redis["component"] == "redis" and redis["reason"] == "Connection refused"
    assert redis["fix"] and redis["what"]
    (etype, data), = host.events.notices  # Redis away: a notice only the live watchers get
    assert etype == "service.degraded" and data["problems"] == [redis]

    host.libvirt.up, host.libvirt.error = False, "Failed to connect socket"
    h = host.report()  # libvirtd away hides what is known of its network and pool
    assert [p["id"] for p in h["problems"]] == ["redis", "libvirt"]
    assert h["problems"][1]["reason"] == "Failed to connect socket"
    assert "libvirtd" in h["problems"][1]["fix"]


def test_libvirtd_away_and_back_is_told_and_repaired_on_connecting():
    host = connected()
    host.libvirt.up = False
    for listener in host.libvirt.down_listeners:
        listener("connection closed")
    for listener in host.libvirt.down_listeners:
        listener("connection closed")  # told twice: one event
    host.clock.advance(30.0)  # no look while libvirtd is away
    assert host.looks == 1
    assert host.told() == [("service.degraded", ["connection closed"])]
    assert host.events.sent[0][1]["status"] == "down"

    host.libvirt.up = True
    host.found = host.repaired = []
    for listener in host.libvirt.connect_listeners:
        listener()
    assert host.events.sent[-1][0] == "service.recovered"


def test_a_repair_failure_keeps_its_reason_while_the_same_is_found():
    host = Host()
    host.repaired = [Problem(id=NETWORK, component="libvirt", what="The default network",
                             reason="Network is already in use by virbr9", fix="f",
                             state="stopped")]
    for listener in host.libvirt.connect_listeners:
        listener()
    host.found = [STOPPED]  # a look finds it still stopped: libvirt's reason stays
    host.clock.advance(30.0)
    assert host.told() == [("service.degraded", ["Network is already in use by virbr9"])]
    assert host.health.defaults[0].reason == "Network is already in use by virbr9"
    host.found = [MISSING]  # something else now: said as it is
    host.clock.advance(30.0)
    assert host.told()[-1] == ("service.degraded", ["Network not found"])
