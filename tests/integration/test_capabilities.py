"""GET /config/capabilities: found by trying, forced by [features], nothing left behind."""

from __future__ import annotations

import shutil

import libvirt

from tests.conftest import Kimchi, wait_for


def test_capabilities_are_probed_for_real(kimchi: Kimchi):
    caps = kimchi.get("/config/capabilities").json()
    assert caps["libvirtd_running"] is True
    assert set(caps["libvirt_stream_protocols"]) >= {"http", "https"}
    assert caps["qemu_img"] is (shutil.which("qemu-img") is not None)
    # QEMU (qemu-img's curl driver) really read a file this daemon served, with ranges
    assert caps["qemu_stream"] is True
    assert isinstance(caps["system_report_tool"], bool) and isinstance(caps["kvm"], bool)
    again = kimchi.post("/config/capabilities/refresh")
    assert again.status_code == 200 and again.json()["qemu_stream"] is True
    names = [v["name"] for v in kimchi.get("/vms").json()]
    assert not [n for n in names if n.startswith("kimchi-featuretest-")]  # nothing left


def test_features_force_a_capability(kimchi_factory, redis_db):
    k = kimchi_factory(redis_url=redis_db.url, extra={"features": {"iso_streaming": "off"}})
    caps = k.get("/config/capabilities").json()
    assert caps["qemu_stream"] is False and caps["forced"] == ["qemu_stream"]


def test_probes_on_a_real_libvirtd_leave_no_domain(kimchi_factory, redis_db, libvirtd):
    k = kimchi_factory(redis_url=redis_db.url, extra={"libvirt": {"uri": "qemu:///system"}})
    caps = k.post("/config/capabilities/refresh").json()
    assert caps["libvirtd_running"] is True and "http" in caps["libvirt_stream_protocols"]
    conn = libvirt.open("qemu:///system")
    wait_for(lambda: not [d for d in conn.listAllDomains(0)
                          if d.name().startswith("kimchi-featuretest-")], what="no probe VM")
