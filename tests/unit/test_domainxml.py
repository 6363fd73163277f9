"""What kimchi asks libvirt for when it makes a VM from a template."""

import xml.etree.ElementTree as ET

import libvirt
import pytest

from kimchid.model.domainxml import (
    METADATA_NS,
    HostGuest,
    domain_xml,
    pick_guest,
    plan_volumes,
    volume_xml,
)
from kimchid.model.osinfo import defaults

QEMU = HostGuest("qemu", "x86_64")


def _dom(template, guest=QEMU, name="vm1"):
    vols = plan_volumes(name, template)
    xml = domain_xml(name=name, template_name="t", template=template, guest=guest,
                     volumes=[(v, f"/pool/{v.name}") for v in vols], task_id="abc",
                     created="2026-01-01T00:00:00.000Z")
    return ET.fromstring(xml)


def test_a_modern_linux_gets_virtio_disks_the_iso_and_its_network():
    t = {**defaults("fedora", "39"), "source_media": {"type": "disk", "path": "/isos/f.iso"}}
    t["disks"].append({"index": 1, "size": 2, "format": "raw", "bus": "virtio"})
    root = _dom(t)
    assert root.get("type") == "qemu"
    disks = root.findall("./devices/disk")
    assert [(d.get("device"), d.find("target").get("dev")) for d in disks] == [
        ("disk", "vda"), ("disk", "vdb"), ("cdrom", "hda")]
    assert disks[0].find("source").get("file") == "/pool/vm1-0.qcow2"
    assert disks[1].find("driver").get("type") == "raw"
    assert disks[2].find("source").get("file") == "/isos/f.iso"
    assert [b.get("dev") for b in root.findall("./os/boot")] == ["cdrom", "hd"]
    assert root.find("./devices/interface/source").get("network") == "default"
    assert root.find("./devices/interface/model").get("type") == "virtio"
    assert root.find("memory").text == "2048" and root.find("memory").get("unit") == "MiB"
    ns = f"{{{METADATA_NS}}}"
    assert root.findtext(f"./metadata/{ns}vm/{ns}template") == "t"
    assert root.findtext(f"./metadata/{ns}vm/{ns}task") == "abc"


def test_netboot_boots_from_the_network_and_remote_isos_are_network_cdroms():
    net = _dom({**defaults("debian", "12"), "source_media": {"type": "netboot"}})
    assert [b.get("dev") for b in net.findall("./os/boot")] == ["network", "hd"]
    assert not [d for d in net.findall("./devices/disk") if d.get("device") == "cdrom"]
    remote = _dom({**defaults("debian", "12"), "source_media": {
        "type": "disk", "path": "https://mirror.example/debian/d.iso?x=1"}})
    cd = [d for d in remote.findall("./devices/disk") if d.get("device") == "cdrom"][0]
    assert cd.get("type") == "network"
    src = cd.find("source")
    assert (src.get("protocol"), src.get("name")) == ("https", "/debian/d.iso?x=1")
    assert (src.find("host").get("name"), src.find("host").get("port")) == (
        "mirror.example", "443")


def test_old_systems_get_ide_and_e1000_and_names_cannot_inject_xml():
    t = {**defaults("centos", "5.5"), "source_media": {"type": "disk", "path": "/i'<x>.iso"}}
    root = _dom(t, name="a&b")
    assert root.find("name").text == "a&b"
    assert root.findall("./devices/disk")[0].find("target").get("bus") == "ide"
    assert root.find("./devices/interface/model").get("type") == "e1000"
    cd = root.findall("./devices/disk")[1]
    assert cd.find("source").get("file") == "/i'<x>.iso"


def test_volumes_are_sparse_and_sized_in_bytes():
    vol = plan_volumes("vm", {"disks": [{"index": 0, "size": 1.5, "format": "qcow2"}]})[0]
    root = ET.fromstring(volume_xml(vol))
    assert root.find("capacity").text == str(int(1.5 * 1024 ** 3))
    assert root.find("allocation").text == "0"
    assert root.find("target/format").get("type") == "qcow2"


@pytest.mark.parametrize("want_kvm", [True, False])
def test_the_domain_type_comes_from_what_the_connection_offers(want_kvm):
    caps = libvirt.open("test:///default").getCapabilities()
    assert pick_guest(caps, want_kvm) == HostGuest("test", "i686")
    qemu_caps = """<capabilities><host><cpu><arch>x86_64</arch></cpu></host>
      <guest><os_type>hvm</os_type><arch name='x86_64'><domain type='qemu'/>
      <domain type='kvm'/></arch></guest>
      <guest><os_type>hvm</os_type><arch name='i686'><domain type='qemu'/></arch></guest>
      </capabilities>"""
    assert pick_guest(qemu_caps, want_kvm) == HostGuest("kvm" if want_kvm else "qemu", "x86_64")
