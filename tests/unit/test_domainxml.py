"""What kimchi asks libvirt for when it makes a VM from a template."""

import xml.etree.ElementTree as ET

import libvirt
import pytest

from kimchid.model.domainxml import (
    LIBOSINFO_NS,
    METADATA_NS,
    HostGuest,
    domain_xml,
    pick_guest,
    plan_volumes,
    volume_xml,
)
from kimchid.model.osinfo import defaults, osinfo_id

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
        ("disk", "vda"), ("disk", "vdb"), ("cdrom", "sda")]  # q35: a SATA CD-ROM
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


def test_the_vm_says_its_os_as_libosinfo_names_it():
    ns = f"{{{LIBOSINFO_NS}}}"
    root = _dom({**defaults("fedora", "39"), "os_distro": "fedora", "os_version": "39"})
    assert root.find(f"./metadata/{ns}libosinfo/{ns}os").get("id") == \
        "http://fedoraproject.org/fedora/39"
    # kimchi's own metadata is still there, beside it
    assert root.find(f"./metadata/{{{METADATA_NS}}}vm") is not None
    # an OS nobody knows: nothing said
    root = _dom({**defaults("unknown", ""), "os_distro": "unknown", "os_version": ""})
    assert root.find(f"./metadata/{ns}libosinfo") is None


@pytest.mark.parametrize(("distro", "version", "expected"), [
    ("fedora", "39", "http://fedoraproject.org/fedora/39"),
    ("ubuntu", "22.04", "http://ubuntu.com/ubuntu/22.04"),
    ("debian", "12.2", "http://debian.org/debian/12"),
    ("rhel", "9", "http://redhat.com/rhel/9.0"),
    ("alpine", "3.18.4", "http://alpinelinux.org/alpinelinux/3.18"),
    ("windows", "11", "http://microsoft.com/win/11"),
    ("gentoo", "2.3", None),
    ("fedora", "", None),
])
def test_libosinfo_ids_without_osinfo_db(distro, version, expected, tmp_path):
    assert osinfo_id(distro, version, db=str(tmp_path / "none")) == expected


def test_osinfo_db_wins_where_it_knows_the_os(tmp_path):
    folder = tmp_path / "os" / "example.org"
    folder.mkdir(parents=True)
    (folder / "fedora-39.xml").write_text(
        "<libosinfo version='0.0.1'><os id='http://example.org/fedora/39-custom'>"
        "<short-id>fedora39</short-id></os></libosinfo>")
    (folder / "broken.xml").write_text("<libosinfo><os")
    assert osinfo_id("fedora", "39", db=str(tmp_path)) == "http://example.org/fedora/39-custom"
    # what it does not know falls back to the project's own patterns
    assert osinfo_id("debian", "12", db=str(tmp_path)) == "http://debian.org/debian/12"
