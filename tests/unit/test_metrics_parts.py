"""The metrics' parts that need no daemon: a scrape with Redis away, task durations from
the event stream, ``[metrics] allow``.  The real daemon: tests/integration/test_metrics.py."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import defer
from twisted.internet.testing import MemoryReactorClock

from kimchi import bus, config
from kimchi.bus.twisted import RedisDown
from kimchi.errors import ConfigError
from kimchid.metrics import Metrics, address_check
from kimchid.model.events import Event


class AwayRedis:
    async def call(self, *args: Any, **kw: Any) -> Any:
        raise RedisDown("Connection refused")


def _metrics() -> Metrics:
    vms = SimpleNamespace(loaded=True, vms={"a": {"state": "running"},
                                            "b": {"state": "shutoff"},
                                            "c": {"state": "running"}})
    host = SimpleNamespace(name="local", state="connected", vms=vms)
    hub = SimpleNamespace(watchers=set(), delivered=7)
    return Metrics(AwayRedis(), bus.Keys(), [host], hub,  # type: ignore[arg-type]
                   MemoryReactorClock(), 3600)


def _samples(m: Metrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """A scrape of ``m`` (its Redis answers at once: no reactor needed), parsed."""
    got: list[bytes] = []
    defer.Deferred.fromCoroutine(m.scrape()).addCallback(got.append)
    return {(s.name, frozenset(s.labels.items())): s.value
            for f in text_string_to_metric_families(got[0].decode()) for s in f.samples}


def test_a_scrape_with_redis_away_says_so_and_reports_the_rest() -> None:
    m = _metrics()
    got = _samples(m)
    assert got[("kimchi_redis_up", frozenset())] == 0
    assert got[("kimchi_vms", frozenset({("host", "local"), ("state", "running")}))] == 2
    assert got[("kimchi_vms", frozenset({("host", "local"), ("state", "paused")}))] == 0
    assert got[("kimchi_libvirt_up", frozenset({("host", "local")}))] == 1
    assert got[("kimchi_events_delivered_total", frozenset())] == 7
    assert not any(name.startswith("kimchi_queue") for name, _ in got)


def test_task_durations_come_from_the_ends_the_hub_reads() -> None:
    m = _metrics()

    def ev(i: int, etype: str, data: str) -> Event:
        return Event(f"{i}-0", {"type": etype, "time": "2026-01-01T00:00:00.000Z",
                                "data": data, "task": "t"})

    task = ('{"id":"t","kind":"iso.scan","status":"%s","created":"2026-01-01T00:00:00.000Z",'
            '"updated":"2026-01-01T00:00:02.500Z"}')
    m.events_read([ev(1, "task.progress", '{"id":"t"}'), ev(2, "task.finished",
                                                             task % "finished"),
                   ev(3, "task.failed", "not json"), ev(4, "task.cancelled", task % "cancelled")])
    got = _samples(m)
    key = frozenset({("kind", "iso.scan"), ("status", "finished")})
    assert got[("kimchi_task_duration_seconds_count", key)] == 1
    assert got[("kimchi_task_duration_seconds_sum", key)] == 2.5
    assert got[("kimchi_task_duration_seconds_count",
                frozenset({("kind", "iso.scan"), ("status", "cancelled")}))] == 1


def test_allowed_addresses() -> None:
    def request(host: str) -> Any:
        return SimpleNamespace(getClientAddress=lambda: SimpleNamespace(host=host))

    assert address_check([]) is None
    allowed = address_check(["127.0.0.1", "10.1.0.0/16", "fd00::/8"])
    assert allowed is not None
    assert allowed(request("127.0.0.1")) and allowed(request("10.1.200.3"))
    assert allowed(request("::ffff:10.1.0.9"))  # IPv4 through a dual-stack listener
    assert allowed(request("fd00::1"))
    assert not allowed(request("127.0.0.2")) and not allowed(request("10.2.0.1"))
    assert not allowed(request("")) and not allowed(request("/run/kimchi.sock"))


def test_metrics_allow_must_be_addresses_or_networks(tmp_path: Path) -> None:
    f = tmp_path / "k.toml"
    f.write_text('[metrics]\nallow = ["127.0.0.1", "10.0.0.0/8", "::1"]\n')
    assert config.load(f, environ={}).metrics.allow == ("127.0.0.1", "10.0.0.0/8", "::1")
    assert config.load(f, environ={"KIMCHI_METRICS_ALLOW": "192.168.1.0/24"}
                       ).metrics.allow == ("192.168.1.0/24",)
    f.write_text('[metrics]\nallow = ["prometheus.lan"]\n')
    with pytest.raises(ConfigError) as e:
        config.load(f, environ={})
    assert [k for k, _ in e.value.problems] == ["metrics.allow"]
