"""Virtual networks: the REST behaviour on libvirt's test driver, then a real isolated
network on libvirtd (its bridge, gateway address and dnsmasq appear and go)."""

from __future__ import annotations

import ipaddress
import os
import socket
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.conftest import Kimchi, RedisServer, wait_for
from tests.isofactory import make_iso


def put(k: Kimchi, path: str, body: Any) -> Any:
    return k.http.put(k.url + path, json=body, allow_redirects=False, timeout=10)


def host_subnets() -> list[ipaddress.IPv4Network]:
    return [ipaddress.IPv4Network(f"{a.address}/{a.netmask}", strict=False)
            for addrs in psutil.net_if_addrs().values() for a in addrs
            if a.family == socket.AF_INET and a.netmask]


def test_networks_are_listed_made_and_deleted(kimchi: Kimchi) -> None:
    k = kimchi
    default = k.get("/networks/default").json()
    assert default["connection"] == "nat" and default["state"] == "active"
    assert default["subnet"] == "192.168.122.0/24" and default["dhcp"]["start"]

    r = k.post("/networks", {"name": "lab", "connection": "nat"})
    assert r.status_code == 201, r.text
    assert r.headers["Location"] == "/networks/lab"
    lab = r.json()
    subnet = ipaddress.IPv4Network(lab["subnet"])
    assert subnet.prefixlen == 24 and subnet != ipaddress.IPv4Network("192.168.122.0/24")
    assert not any(subnet.overlaps(h) for h in host_subnets())  # nothing on the host uses it
    assert lab["gateway"] == str(next(subnet.hosts()))
    assert ipaddress.IPv4Address(lab["dhcp"]["start"]) in subnet
    assert lab["state"] == "active" and lab["autostart"] is True and lab["in_use"] is False

    iso = k.post("/networks", {"name": "quiet", "connection": "isolated",
                               "subnet": "10.77.5.0/24"})
    assert iso.status_code == 201, iso.text
    assert iso.json()["connection"] == "isolated" and iso.json()["gateway"] == "10.77.5.1"
    assert sorted(n["name"] for n in k.get("/networks?connection=isolated").json()) == ["quiet"]

    assert k.delete("/networks/lab").json()["errcode"] == "KCHNET0005E"
    assert put(k, "/networks/lab", {"autostart": False}).json()["autostart"] is False
    assert k.post("/networks/lab/deactivate").json()["state"] == "inactive"
    assert k.post("/networks/lab/deactivate").json()["errcode"] == "KCHNET0006E"
    assert k.post("/networks/lab/activate").json()["state"] == "active"
    assert k.post("/networks/lab/deactivate").status_code == 200
    assert k.delete("/networks/lab").status_code == 204
    assert k.get("/networks/lab").status_code == 404
    kinds = [e["type"] for e in k.get("/events?since=0&types=network.*").json()]
    assert kinds[0] == "network.created" and kinds[-1] == "network.deleted"


def test_bad_requests_get_clear_errors(kimchi: Kimchi) -> None:
    k = kimchi
    before = k.get("/networks").json()
    nics = [i["name"] for i in k.get("/interfaces?type=nic").json()]
    cases = [
        ({"name": "x", "connection": "nat", "subnet": "192.168.122.0/25"}, "KCHNET0011E"),
        ({"name": "x", "connection": "nat", "subnet": "8.8.8.0/24"}, "KCHNET0009E"),
        ({"name": "x", "connection": "nat", "subnet": "10.1.1.0/30"}, "KCHNET0009E"),
        ({"name": "x", "connection": "nat", "subnet": "10.1.1.300/24"}, "KCHNET0009E"),
        ({"name": "x", "connection": "nat", "interface": "eth0"}, "KCHNET0004E"),
        ({"name": "x", "connection": "macvtap", "interface": "nosuch0"}, "KCHNET0010E"),
        ({"name": "x", "connection": "macvtap"}, "KCHNET0004E"),
        ({"name": "default", "connection": "isolated"}, "KCHNET0001E"),
        ({"name": "x", "connection": "vepa"}, None),
        ({"name": "a b", "connection": "nat"}, None),
        ({"name": "x", "connection": "nat", "dns": "1.1.1.1"}, None),
    ]
    if nics:  # a plain interface is no bridge
        cases.append(({"name": "x", "connection": "bridge", "interface": nics[0]},
                      "KCHNET0010E"))
    for body, code in cases:
        r = k.post("/networks", body)
        assert r.status_code == 400, (body, r.text)
        if code:
            assert r.json()["errcode"] == code, (body, r.text)
    assert k.get("/networks").json() == before


def test_what_is_in_use_is_protected(kimchi: Kimchi, tmp_path: Path) -> None:
    k = kimchi
    iso = make_iso(tmp_path / "iso" / "f.iso", "Fedora-WS-Live-39-1-5")
    assert k.post("/templates", {"name": "t", "source_media": {
        "type": "disk", "path": str(iso)}}).status_code == 201
    wait_for(lambda: k.get("/templates/t").json()["invalid"] == {}, what="a valid template")
    task = k.post("/vms", {"template": "t", "name": "guest"}).json()
    assert k.wait_task(task["id"])["status"] == "finished"
    assert k.get("/vms/guest").json()["networks"] == ["default"]
    net = k.get("/networks/default").json()  # the test driver's own "test" VM is on it too
    assert net["used_by"] == {"templates": ["t"], "vms": ["guest", "test"]} and net["in_use"]

    assert k.post("/vms/test/poweroff").status_code == 200
    assert k.post("/vms/guest/start").status_code == 200
    r = k.post("/networks/default/deactivate")
    assert r.status_code == 400 and r.json()["errcode"] == "KCHNET0007E", r.text
    assert "guest" in r.json()["reason"] and "test" not in r.json()["reason"]
    assert k.post("/vms/guest/poweroff").status_code == 200
    assert k.post("/networks/default/deactivate").status_code == 200
    r = k.delete("/networks/default")
    assert r.status_code == 400 and r.json()["errcode"] == "KCHNET0003E", r.text
    assert "t" in r.json()["reason"] and "guest" in r.json()["reason"]
    assert k.post("/networks/default/activate").status_code == 200


def test_interfaces_are_the_hosts(kimchi: Kimchi) -> None:
    got = {i["name"]: i for i in kimchi.get("/interfaces").json()}
    assert set(got) == set(os.listdir("/sys/class/net")) - {"lo"}
    for name, i in got.items():
        is_bridge = os.path.isdir(f"/sys/class/net/{name}/bridge")
        assert (i["type"] == "bridge") == is_bridge, i
    up = {n for n, s in psutil.net_if_stats().items() if s.isup}
    assert {n for n, i in got.items() if i["status"] == "up"} == up - {"lo"}


@pytest.fixture
def system(kimchi_factory: Any, redis_db: RedisServer, libvirtd: Any) -> Kimchi:
    return kimchi_factory(redis_url=redis_db.url, workers=0,
                          extra={"libvirt": {"uri": "qemu:///system"}})


def test_on_libvirtd_an_isolated_network_is_a_real_bridge(system: Kimchi) -> None:
    import libvirt

    k = system
    name = f"kimchi-net-{os.getpid()}"
    conn = libvirt.open("qemu:///system")
    try:
        r = k.post("/networks", {"name": name, "connection": "isolated"})
        assert r.status_code == 201, r.text
        net = r.json()
        bridge, gateway = net["bridge"], net["gateway"]
        assert bridge and os.path.isdir(f"/sys/class/net/{bridge}/bridge")
        addrs = [a.address for a in psutil.net_if_addrs().get(bridge, [])]
        assert gateway in addrs  # the host holds the gateway address on the bridge
        assert any("dnsmasq" in " ".join(p.info["cmdline"] or []) and name in
                   " ".join(p.info["cmdline"] or [])
                   for p in psutil.process_iter(["cmdline"]))  # its DHCP server runs
        interfaces = {i["name"]: i for i in k.get("/interfaces").json()}
        assert interfaces[bridge]["type"] == "bridge" and interfaces[bridge]["ipaddr"] == gateway
        assert k.post(f"/networks/{name}/deactivate").status_code == 200
        wait_for(lambda: not os.path.exists(f"/sys/class/net/{bridge}"), timeout=10,
                 what="the bridge to go")
        assert k.delete(f"/networks/{name}").status_code == 204
        assert name not in [n.name() for n in conn.listAllNetworks(0)]
    finally:
        try:
            n = conn.networkLookupByName(name)
            if n.isActive():
                n.destroy()
            n.undefine()
        except libvirt.libvirtError:
            pass
