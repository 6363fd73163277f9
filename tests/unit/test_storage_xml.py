"""The XML of new pools, for the types that cannot be made on this machine in a test
(NFS, LVM, iSCSI), checked by libvirt's own parser on the test driver."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import libvirt
import pytest

from kimchi.errors import InvalidOperation, InvalidRequest
from kimchid.model.storage import check_pool_request, pool_xml, volume_xml


def _at(root: ET.Element, path: str) -> ET.Element:
    found = root.find(path)
    assert found is not None, path
    return found


def test_netfs_pool() -> None:
    body = {"name": "nfs1", "type": "netfs", "path": "/mnt/nfs1",
            "source": {"host": "nas.example", "path": "/export/vms"}}
    check_pool_request(body)
    root = ET.fromstring(pool_xml(body))
    assert root.get("type") == "netfs"
    assert _at(root, "source/host").get("name") == "nas.example"
    assert _at(root, "source/dir").get("path") == "/export/vms"
    assert _at(root, "source/format").get("type") == "nfs"
    assert root.findtext("target/path") == "/mnt/nfs1"


def test_logical_and_iscsi_pools() -> None:
    lvm = ET.fromstring(pool_xml({"name": "vg0", "type": "logical",
                                  "source": {"devices": ["/dev/sdb", "/dev/sdc"]}}))
    assert [d.get("path") for d in lvm.findall("source/device")] == ["/dev/sdb", "/dev/sdc"]
    assert lvm.findtext("source/name") == "vg0" and lvm.findtext("target/path") == "/dev/vg0"
    iscsi = ET.fromstring(pool_xml({"name": "san", "type": "iscsi", "source": {
        "host": "10.0.0.5", "target": "iqn.2024-01.com.example:vms"}}))
    assert _at(iscsi, "source/host").get("port") == "3260"
    assert _at(iscsi, "source/device").get("path") == "iqn.2024-01.com.example:vms"


def test_markup_in_names_stays_text() -> None:
    xml = pool_xml({"name": "a", "type": "dir", "path": "/srv/<x>&'\""})
    assert ET.fromstring(xml).findtext("target/path") == "/srv/<x>&'\""
    vol = ET.fromstring(volume_xml("d.qcow2", 1 << 30, "qcow2"))
    assert vol.findtext("capacity") == str(1 << 30)
    assert _at(vol, "target/format").get("type") == "qcow2"


@pytest.mark.parametrize("body", [
    {"name": "x", "type": "netfs", "source": {"host": "nas"}},
    {"name": "x", "type": "iscsi", "source": {"target": "iqn.x"}},
    {"name": "x", "type": "logical", "source": {"devices": ["/etc/passwd"]}},
])
def test_incomplete_requests_are_refused(body: dict) -> None:
    with pytest.raises(InvalidRequest) as e:
        check_pool_request(body)
    assert e.value.errcode == "KCHPOOL0004E"


@pytest.mark.parametrize("path", ["/sys/kernel", "/", "/proc/1/.."])
def test_folders_of_the_system_are_refused(path: str) -> None:
    with pytest.raises(InvalidOperation) as e:
        check_pool_request({"name": "x", "type": "dir", "path": path})
    assert e.value.errcode == "KCHPOOL0010E"


def test_libvirt_accepts_what_is_built() -> None:
    conn = libvirt.open("test:///default")
    for body in ({"name": "n1", "type": "netfs", "path": "/mnt/n1",
                  "source": {"host": "nas", "path": "/e"}},
                 {"name": "l1", "type": "logical", "source": {"devices": ["/dev/sdz"]}},
                 {"name": "i1", "type": "iscsi", "source": {"host": "h", "target": "iqn.x:y"}}):
        pool = conn.storagePoolDefineXML(pool_xml(body), 0)
        assert pool.name() == body["name"]
        assert ET.fromstring(pool.XMLDesc(0)).get("type") == body["type"]
