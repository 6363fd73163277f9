"""Every problem kimchid knows is in GET /health, live: the default network or storage pool
taken away while kimchid runs (through its API, or by another libvirt client) is reported
within seconds, announced once, and gone again when the thing is back."""

from __future__ import annotations

from typing import Any

import libvirt
from jsonschema import Draft202012Validator

from tests.conftest import Kimchi, RedisServer, wait_for
from tests.defaults import (
    make_default_network,
    make_default_pool,
    remove_default_network,
    remove_default_pool,
)

FIELDS = {"id", "component", "what", "reason", "fix"}


def health(k: Kimchi) -> dict[str, Any]:
    """GET /health, checked against the response schema kimchid publishes for it."""
    r = k.get("/health")
    body = r.json()
    schema = k.get("/openapi.json").json()["paths"]["/health"]["get"]["responses"]["200"][
        "content"]["application/json"]["schema"]
    Draft202012Validator(schema).validate(body)
    for p in body["problems"]:
        assert set(p) == FIELDS and all(p[f] for f in FIELDS), p
    return body


def problem(k: Kimchi, pid: str) -> dict[str, Any] | None:
    h = health(k)
    found = [p for p in h["problems"] if p["id"] == pid]
    assert h["status"] == ("degraded" if h["problems"] else "ok"), h
    return found[0] if found else None


def service_events(k: Kimchi) -> list[dict[str, Any]]:
    return k.get("/events?since=0&types=service.*").json()


def assert_told_once_per_change(events: list[dict[str, Any]]) -> None:
    """``service.degraded`` whenever the problems changed, never twice for the same ones,
    and ``service.recovered`` last."""
    assert events and events[-1]["type"] == "service.recovered", events
    assert events[-1]["data"] == {"component": "libvirt", "status": "up"}
    told = [e["data"]["problems"] for e in events[:-1]]
    assert told and all(e["type"] == "service.degraded" for e in events[:-1]), events
    assert all(a != b for a, b in zip(told, told[1:], strict=False)), told


def wait_for_problem(k: Kimchi, pid: str, reason: str, timeout: float = 5) -> dict[str, Any]:
    """Within ``timeout`` (libvirt's events, not the 30 s look), a problem ``pid`` whose
    reason holds ``reason``."""
    def found() -> dict[str, Any] | None:
        p = problem(k, pid)
        return p if p and reason in p["reason"].lower() else None

    return wait_for(found, timeout=timeout, what=f"a {pid} problem saying {reason!r}")


def test_default_network_removed_through_the_api_is_reported_then_recovers(kimchi: Kimchi):
    k = kimchi
    assert health(k)["problems"] == []
    remove_default_network(k)
    gone = wait_for_problem(k, "network-default", "not found")
    assert gone["component"] == "libvirt" and gone["what"] == "The default network"
    assert "'default'" in gone["reason"] and "Networks page" in gone["fix"]
    assert health(k)["status"] == "degraded"
    assert k.get("/networks/default").status_code == 404  # reported, not made again
    degraded = service_events(k)[-1]
    assert degraded["type"] == "service.degraded" and degraded["id"]  # in the stream
    assert degraded["data"]["component"] == "libvirt"
    assert degraded["data"]["status"] == "degraded"
    assert degraded["data"]["problems"] == [gone]
    assert degraded["data"]["reason"] == f"The default network: {gone['reason']}"
    assert degraded["data"]["fix"] == gone["fix"]

    make_default_network(k)
    wait_for(lambda: problem(k, "network-default") is None, timeout=5,
             what="the network-default problem to go")
    assert health(k)["status"] == "ok"
    wait_for(lambda: service_events(k)[-1]["type"] == "service.recovered",
             what="service.recovered")
    assert_told_once_per_change(service_events(k))


def test_default_pool_stopped_then_removed_is_reported_then_recovers(kimchi: Kimchi):
    k = kimchi
    assert k.post("/storagepools/default/deactivate").status_code == 200
    stopped = wait_for_problem(k, "pool-default", "not running")
    assert stopped["what"] == "The default storage pool"
    assert "pool-start default" in stopped["fix"]
    remove_default_pool(k)
    missing = wait_for_problem(k, "pool-default", "not found")
    assert "pool-define-as default" in missing["fix"]
    assert k.get("/storagepools/default").status_code == 404

    make_default_pool(k)
    wait_for(lambda: health(k)["status"] == "ok", timeout=5, what="health ok again")
    wait_for(lambda: service_events(k)[-1]["type"] == "service.recovered",
             what="service.recovered")
    events = service_events(k)
    assert_told_once_per_change(events)
    assert [e["data"]["problems"] for e in events[:2]] == [[stopped], [missing]]


def test_default_network_removed_by_another_libvirt_client_is_reported(
        kimchi_factory, redis_db: RedisServer, libvirtd):
    # libvirtd's own test driver: one state that kimchid and this test both connect to
    uri = "test+unix:///default"
    k = kimchi_factory(redis_url=redis_db.url, extra={"libvirt": {"uri": uri}})
    wait_for(lambda: health(k)["problems"] == [], what="kimchid to make its defaults")
    conn = libvirt.open(uri)
    net = conn.networkLookupByName("default")
    xml = net.XMLDesc(0)
    try:
        net.destroy()  # as virsh net-destroy would
        stopped = wait_for_problem(k, "network-default", "not running")
        assert "net-start default" in stopped["fix"]
        net.undefine()
        wait_for_problem(k, "network-default", "not found")
    finally:
        try:
            conn.networkLookupByName("default")
        except libvirt.libvirtError:
            net = conn.networkDefineXML(xml)
        if not net.isActive():
            net.create()
        net.setAutostart(1)
    wait_for(lambda: health(k)["status"] == "ok", timeout=5, what="health ok again")
    wait_for(lambda: service_events(k)[-1]["type"] == "service.recovered",
             what="service.recovered")
    assert_told_once_per_change(service_events(k))
