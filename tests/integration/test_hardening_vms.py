"""VMs under the faults and the inputs that broke them (issue 10): a VM with snapshots is
deleted like any other, and a create that cannot clean up after itself says what it left."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path
from typing import Any

import libvirt
import pytest

from tests.conftest import Kimchi, RedisServer, wait_for
from tests.isofactory import make_iso


def _take_snapshot(k: Kimchi, vm: str, name: str) -> None:
    r = k.post(f"/vms/{vm}/snapshots", {"name": name})
    assert r.status_code == 202, r.text
    done = k.wait_task(r.json()["id"], timeout=60)
    assert done["status"] == "finished", done


def test_deleting_a_vm_with_snapshots_deletes_them_its_disk_and_the_vm(kimchi: Kimchi,
                                                                        tmp_path: Path):
    k = kimchi
    iso = make_iso(tmp_path / "fedora.iso", "Fedora-WS-Live-39-1-5")
    assert k.post("/templates", {"name": "f39", "source_media": {"type": "disk",
                                                                 "path": str(iso)}}).ok
    wait_for(lambda: k.get("/templates/f39").json()["invalid"] == {}, what="the template")
    r = k.post("/vms", {"template": "f39", "name": "snappy"})
    assert r.status_code == 202, r.text
    assert k.wait_task(r.json()["id"])["status"] == "finished"
    (disk,) = [d["path"] for d in k.get("/vms/snappy").json()["disks"] if d["device"] == "disk"]
    pool = k.get("/storagepools/default/storagevolumes").json()
    assert disk in [v["path"] for v in pool]
    _take_snapshot(k, "snappy", "first")
    _take_snapshot(k, "snappy", "second")  # a child of the first
    assert len(k.get("/vms/snappy/snapshots").json()) == 2

    r = k.delete("/vms/snappy")
    assert r.status_code == 204, r.text
    assert "snappy" not in [v["name"] for v in k.get("/vms").json()]
    assert k.get("/vms/snappy").status_code == 404
    assert disk not in [v["path"] for v in
                        k.get("/storagepools/default/storagevolumes").json()]
    # the same name is free again, for a VM without the old snapshots
    r = k.post("/vms", {"template": "f39", "name": "snappy"})
    assert k.wait_task(r.json()["id"])["status"] == "finished"
    assert k.get("/vms/snappy/snapshots").json() == []


URI = "qemu:///system"


def test_on_libvirtd_deleting_a_vm_with_an_internal_snapshot(kimchi_factory: Any,
                                                            redis_db: RedisServer,
                                                            libvirtd: Any, tmp_path: Path):
    k = kimchi_factory(redis_url=redis_db.url, workers=0, extra={"libvirt": {"uri": URI}})
    conn = libvirt.open(URI)
    tag = uuid.uuid4().hex[:8]
    pool_dir = tmp_path / "pool"
    pool_dir.mkdir()
    pool = conn.storagePoolCreateXML(
        f"<pool type='dir'><name>kimchi-test-{tag}</name><target><path>{pool_dir}</path>"
        "</target></pool>", 0)
    name = f"kimchi-test-{tag}-snapdel"
    try:
        disk = pool_dir / f"{name}.qcow2"
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(disk), "16M"],
                       check=True)
        pool.refresh(0)
        conn.defineXML(f"""<domain type='qemu'><name>{name}</name>
          <memory unit='MiB'>64</memory><vcpu>1</vcpu><os><type arch='x86_64'>hvm</type></os>
          <devices><disk type='file' device='disk'><driver name='qemu' type='qcow2'/>
          <source file='{disk}'/><target dev='vda' bus='virtio'/></disk></devices></domain>""")
        wait_for(lambda: k.get(f"/vms/{name}").status_code == 200, what="the VM listed")
        _take_snapshot(k, name, "s1")
        assert "s1" in subprocess.run(["qemu-img", "snapshot", "-l", str(disk)],
                                      capture_output=True, text=True, check=True).stdout

        r = k.delete(f"/vms/{name}")
        assert r.status_code == 204, r.text
        with pytest.raises(libvirt.libvirtError):
            conn.lookupByName(name)
        assert not disk.exists()  # the volume went, and its internal snapshot with it
        wait_for(lambda: k.get(f"/vms/{name}").status_code == 404, what="the VM to go")
    finally:
        try:
            dom = conn.lookupByName(name)
            for s in dom.listAllSnapshots(0):
                s.delete(libvirt.VIR_DOMAIN_SNAPSHOT_DELETE_METADATA_ONLY)
            dom.undefine()
        except libvirt.libvirtError:
            pass
        pool.destroy()


class FlakyLibvirt:
    """The libvirt adapter's ``call``/``run`` on an in-process test driver, whose libvirtd
    "goes away" at the first ``defineXML``: every call fails until ``back()``."""

    def __init__(self) -> None:
        self.conn = libvirt.open("test:///default")
        self.down = False
        self.connect_listeners: list[Any] = []
        outer = self

        class Conn:
            def __getattr__(self, name: str) -> Any:
                return getattr(outer.conn, name)

            def defineXML(self, xml: str) -> Any:
                outer.down = True
                raise libvirt.libvirtError("End of file while reading data: Input/output error")

        self.proxy = Conn()

    def call(self, fn: Any) -> Any:
        if self.down:
            raise libvirt.libvirtError("Failed to connect socket: Connection refused")
        return fn(self.proxy)

    async def run(self, fn: Any) -> Any:
        return self.call(fn)

    def back(self) -> None:
        self.down = False
        for listener in self.connect_listeners:
            listener()


def test_a_create_cut_off_by_a_libvirtd_outage_names_what_it_left_and_removes_it_later(
        tmp_path: Path) -> None:
    from kimchi.bus.context import JobContext
    from kimchi.errors import KimchiError
    from kimchid.model.osinfo import defaults
    from kimchid.model.vm_create import VmCreator

    lv = FlakyLibvirt()
    kept = tmp_path / "vm-create-leftovers.json"
    creator = VmCreator(None, None, None, lv, None, kept)  # type: ignore[arg-type]
    template = {**defaults("fedora", "39"),
                "source_media": {"type": "disk", "path": "/isos/f.iso"}}
    template["disks"] = [{"index": 0, "size": 1, "format": "qcow2",
                          "pool": {"name": "default-pool"}}]
    ctx = JobContext(task_id="t-outage", entry_id="1-0", attempt="1", kind="vm.create",
                     params={"name": "cut", "template": "f39", "template_data": template},
                     send_progress=lambda _c, _p: 1, send_found=lambda _c, _f: True,
                     progress_interval=0.0)
    pool = lv.conn.storagePoolLookupByName("default-pool")

    with pytest.raises(KimchiError) as failed:
        creator.run(ctx)
    reason = failed.value.reason
    assert "nothing was left behind" not in reason
    assert failed.value.errcode == "KCHVM0023E"
    assert "cut-0.qcow2" in reason and "default-pool" in reason, reason
    assert "virtual machine cut" in reason  # libvirt could not say whether it was defined
    assert "cut-0.qcow2" in pool.listVolumes()  # it is still there, as the message says
    assert [left.name for left in creator.leftovers()] == ["cut"]

    # kimchid restarts before libvirtd is back: the new one knows what is left
    lv.connect_listeners.clear()
    again = VmCreator(None, None, None, lv, None, kept)  # type: ignore[arg-type]
    assert again.leftovers() == creator.leftovers()
    lv.back()  # libvirtd answers again: the leftovers go
    assert "cut-0.qcow2" not in pool.listVolumes()
    assert again.leftovers() == []
    assert VmCreator(None, None, None, lv, None, kept).leftovers() == []  # type: ignore[arg-type]
