"""The pure parts of VMs from images: an image's OS from its name, the cloud-init seed's
files, and the XML of linked and copied disks."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

from kimchid.model import cloudinit
from kimchid.model.domainxml import HostGuest, domain_xml, plan_volumes, volume_xml
from kimchid.model.images import guess_os


@pytest.mark.parametrize(("name", "found"), [
    ("debian-12-generic-amd64.qcow2", ("debian", "12")),
    ("Fedora-Cloud-Base-39-1.5.x86_64.qcow2", ("fedora", "39")),
    ("jammy-server-cloudimg-amd64.img", ("ubuntu", "22.04")),
    ("ubuntu-24.04-server-cloudimg-amd64.img", ("ubuntu", "24.04")),
    ("CentOS-Stream-GenericCloud-9-latest.x86_64.qcow2", ("centos", "9")),
    ("Rocky-9-GenericCloud-Base.latest.x86_64.qcow2", ("rocky", "9")),
    ("/srv/images/bookworm.raw", ("debian", "12")),
    ("disk.qcow2", None),
])
def test_the_os_of_a_cloud_image_is_read_from_its_name(name, found):
    assert guess_os(name) == found


def test_the_seed_holds_the_fields_and_a_hash_never_the_password():
    ci = cloudinit.normalise({"user": "ops", "password": "pw", "hostname": "db.example.org",
                              "ssh_authorized_keys": ["ssh-ed25519 AAAA key"]})
    assert ci is not None and "password" not in ci and ci["password_hash"].startswith("$6$")
    files = cloudinit.seed_files(ci, "vm1", "vm1-abc")
    assert json.loads(files["meta-data"]) == {"instance-id": "vm1-abc",
                                               "local-hostname": "db.example.org"}
    text = files["user-data"].decode()
    assert text.startswith("#cloud-config\n") and b"pw\"" not in files["user-data"]
    config = json.loads(text.split("\n", 1)[1])  # JSON is YAML: what cloud-init reads
    assert config["hostname"] == "db" and config["fqdn"] == "db.example.org"
    user = config["users"][1]
    assert user["name"] == "ops" and user["passwd"] == ci["password_hash"]
    assert user["ssh_authorized_keys"] == ["ssh-ed25519 AAAA key"] and config["ssh_pwauth"]
    # keys without a user go to the image's default user; raw user-data goes beside
    files = cloudinit.seed_files({"ssh_authorized_keys": ["ssh-rsa K"],
                                  "user_data": "#!/bin/sh\necho hi\n"}, "vm2", "i")
    text = files["user-data"].decode()
    assert text.startswith("Content-Type: multipart/mixed")
    assert "text/cloud-config" in text and "text/x-shellscript" in text
    assert '"ssh_authorized_keys": [\n    "ssh-rsa K"' in text and "echo hi" in text
    assert cloudinit.public({"user": "u", "password_hash": "$6$x"}) == {
        "user": "u", "password_set": True}


def _template(mode_base: bool = True) -> dict:
    disk = {"index": 0, "size": 10, "format": "qcow2", "bus": "virtio",
            "pool": {"name": "images"}}
    if mode_base:
        disk["base"] = {"path": "/srv/base.img", "format": "raw"}
    return {"source_media": {"type": "image", "path": "/srv/base.img"}, "disks": [disk],
            "memory": {"current": 512}, "cpu_info": {"vcpus": 1}, "networks": []}


def test_a_linked_disk_is_a_qcow2_leaf_declared_over_its_base():
    (vol,) = plan_volumes("web", _template(), "linked")
    assert (vol.name, vol.format, vol.base, vol.mode) == ("web-0.qcow2", "qcow2",
                                                         "/srv/base.img", "linked")
    root = ET.fromstring(volume_xml(vol))
    assert root.findtext("backingStore/path") == "/srv/base.img"
    assert root.find("backingStore/format").get("type") == "raw"
    xml = domain_xml(name="web", template_name="t", template=_template(),
                     guest=HostGuest("qemu", "x86_64"), volumes=[(vol, "/p/web-0.qcow2")],
                     task_id="t1", created="now", cidata="/p/web-cidata.iso")
    dom = ET.fromstring(xml)
    disk, seed = dom.findall("./devices/disk")
    assert disk.find("source").get("file") == "/p/web-0.qcow2"
    assert disk.find("backingStore/source").get("file") == "/srv/base.img"
    assert disk.find("backingStore/backingStore") is not None  # the chain ends there
    assert seed.get("device") == "cdrom" and seed.find("source").get("file") == \
        "/p/web-cidata.iso"  # the seed; never the base image as an installer
    assert [b.get("dev") for b in dom.findall("./os/boot")] == ["hd"]
    assert dom.findtext("./metadata/{urn:kimchi:vm:1}vm/{urn:kimchi:vm:1}cidata") == \
        "/p/web-cidata.iso"


def test_a_full_copy_has_no_backing_and_blank_disks_stay_blank():
    (vol,) = plan_volumes("web", _template(), "full")
    assert vol.mode == "full" and ET.fromstring(volume_xml(vol)).find("backingStore") is None
    (blank,) = plan_volumes("web", _template(mode_base=False))
    assert blank.mode == "" and blank.base == ""
