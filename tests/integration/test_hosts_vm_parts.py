"""Everything a VM has works on any host: its snapshots, disks and interfaces, its
screen, its clone; and networks are made on any host.  On a simulated cluster
(tests/cluster.py): the local host is h1, h2 is added; each check asks the host's own
libvirtd that the change was made there and nowhere else."""

from __future__ import annotations

import json
import os
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import libvirt
import websocket

from tests.cluster import Cluster, add_host, cluster3, host_worker, multi  # noqa: F401  (fixtures)
from tests.conftest import Kimchi, wait_for


def _twins(k: Kimchi, cluster: Cluster, name: str, running: bool = False) -> None:
    """A VM called ``name`` on h1 (the local host) and on h2, both listed by kimchi."""
    for h in ("h1", "h2"):
        cluster[h].define_vm(name, running=running)
    wait_for(lambda: {(v["host"], v["name"]) for v in k.get("/vms").json()}
             >= {("local", name), ("h2", name)}, what="both VMs listed")


def _dom(cluster: Cluster, host: str, name: str) -> libvirt.virDomain:
    return cluster[host].keep.lookupByName(name)


def test_a_vms_snapshots_disks_interfaces_and_screen_on_another_host(
        multi: Kimchi, cluster3: Cluster, tmp_path: Path) -> None:  # noqa: F811
    k = multi
    add_host(k, cluster3, "h2")
    _twins(k, cluster3, "twin", running=True)

    # snapshots: taken, listed, reverted and deleted on h2's VM, not the local one's
    r = k.post("/hosts/h2/vms/twin/snapshots", {"name": "s1"})
    assert r.status_code == 202, r.text
    task = r.json()
    assert task["host"] == "h2" and task["target_uri"] == "/hosts/h2/vms/twin/snapshots/s1"
    done = k.wait_task(task["id"])
    assert done["status"] == "finished", done
    assert done["result"]["host"] == "h2"
    assert [s.getName() for s in _dom(cluster3, "h2", "twin").listAllSnapshots(0)] == ["s1"]
    assert _dom(cluster3, "h1", "twin").listAllSnapshots(0) == []
    snaps = k.get("/hosts/h2/vms/twin/snapshots").json()
    assert [(s["name"], s["host"], s["current"]) for s in snaps] == [("s1", "h2", True)]
    assert k.get("/vms/twin/snapshots").json() == []  # the root address: the local VM
    assert k.get("/hosts/h2/vms/twin/snapshots/current").json()["name"] == "s1"
    assert k.post("/hosts/h2/vms/twin/snapshots/s1/revert").json()["host"] == "h2"
    r = k.get("/hosts/local/vms/twin/snapshots/s1")
    assert r.status_code == 404 and r.json()["errcode"] == "KCHSNAP0002E"
    assert k.delete("/hosts/h2/vms/twin/snapshots/s1").status_code == 204
    assert _dom(cluster3, "h2", "twin").listAllSnapshots(0) == []

    # a disk on h2 is one of h2's volumes: by pool and name, or by its path there
    pool = cluster3["h2"].keep.storagePoolLookupByName("default-pool")
    pool.createXML("<volume><name>data.img</name><capacity>1048576</capacity>"
                   "<target><format type='raw'/></target></volume>", 0)
    cluster3["h2"].define_vm("quiet")  # shut off: a disk is added to its definition
    wait_for(lambda: k.get("/hosts/h2/vms/quiet").status_code == 200, what="quiet listed")
    r = k.post("/hosts/h2/vms/quiet/storages", {"type": "disk", "pool": "default-pool",
                                                  "vol": "data.img"})
    assert r.status_code == 201, r.text
    dev = r.json()["dev"]
    assert r.headers["Location"] == f"/hosts/h2/vms/quiet/storages/{dev}"
    xml = ET.fromstring(_dom(cluster3, "h2", "quiet").XMLDesc(0))
    assert [d.get("file") for d in xml.findall("./devices/disk/source")] == \
        ["/default-pool/data.img"]
    assert k.delete(f"/hosts/h2/vms/quiet/storages/{dev}").status_code == 204
    r = k.post("/hosts/h2/vms/quiet/storages", {"type": "disk",
                                                  "path": "/default-pool/data.img"})
    assert r.status_code == 201 and r.json()["path"] == "/default-pool/data.img", r.text
    # a file of this machine is no file of h2: refused, naming the host, nothing changed
    here = tmp_path / "here.img"
    here.write_bytes(b"\0" * 4096)
    r = k.post("/hosts/h2/vms/quiet/storages", {"type": "disk", "path": str(here)})
    assert r.status_code == 400 and r.json()["errcode"] == "KCHVMSTOR0006E", r.text
    assert "h2" in r.json()["reason"]
    assert str(here) not in _dom(cluster3, "h2", "quiet").XMLDesc(0)

    # an interface added on h2's network, to h2's VM only (shut off: the test driver
    # changes definitions, it does not hot-plug)
    cluster3["h1"].define_vm("quiet")
    before = k.get("/hosts/h2/vms/quiet/ifaces").json()
    r = k.post("/hosts/h2/vms/quiet/ifaces", {"network": "default"})
    assert r.status_code == 201, r.text
    mac = r.json()["mac"]
    assert r.headers["Location"] == f"/hosts/h2/vms/quiet/ifaces/{mac}"
    assert mac in _dom(cluster3, "h2", "quiet").XMLDesc(0)
    assert mac not in _dom(cluster3, "h1", "quiet").XMLDesc(0)
    assert len(k.get("/hosts/h2/vms/quiet/ifaces").json()) == len(before) + 1
    assert k.delete(f"/hosts/h2/vms/quiet/ifaces/{mac}").status_code == 204
    assert mac not in _dom(cluster3, "h2", "quiet").XMLDesc(0)

    # the screen of h2's running VM
    r = k.get("/hosts/h2/vms/twin/screenshot")
    assert r.status_code == 200 and r.content.startswith(b"\x89PNG"), r.text
    r = k.get("/hosts/h2/vms/quiet/screenshot")
    assert r.status_code == 404 and r.json()["errcode"] == "KCHVM0012E"

    # the events say which host
    evs = k.get("/events?types=snapshot.created,vm.iface.attached").json()
    assert {(e["type"], e["data"]["host"]) for e in evs} == \
        {("snapshot.created", "h2"), ("vm.iface.attached", "h2")}


def test_a_network_is_made_on_the_host_named_with_that_hosts_interfaces(
        multi: Kimchi, cluster3: Cluster) -> None:  # noqa: F811
    k = multi
    add_host(k, cluster3, "h2")
    # h2's interfaces, as its libvirtd knows them (the test driver's eth1)
    ifaces = k.get("/hosts/h2/interfaces").json()
    assert [(i["name"], i["host"], i["type"], i["ipaddr"], i["netmask"]) for i in ifaces] == \
        [("eth1", "h2", "nic", "192.168.0.5", "255.255.255.0")]
    assert {i["host"] for i in k.get("/interfaces").json()} == {"local"}
    r = k.post("/hosts/h2/networks", {"name": "lab", "connection": "isolated"})
    assert r.status_code == 201, r.text
    assert r.headers["Location"] == "/hosts/h2/networks/lab"
    net = r.json()
    assert net["host"] == "h2" and net["state"] == "active"
    # a subnet h2 does not use (its network "default" has 192.168.122.0/24)
    assert net["subnet"] not in ("192.168.122.0/24", "192.168.0.0/24")
    assert cluster3["h2"].keep.networkLookupByName("lab").isActive()
    assert "lab" not in [n.name() for n in cluster3["h1"].keep.listAllNetworks(0)]
    # a subnet of one of h2's interfaces is refused, naming it
    r = k.post("/hosts/h2/networks", {"name": "clash", "connection": "isolated",
                                      "subnet": "192.168.0.0/24"})
    assert r.status_code == 400 and r.json()["errcode"] == "KCHNET0011E", r.text
    # macvtap through h2's interface
    r = k.post("/hosts/h2/networks", {"name": "out", "connection": "macvtap",
                                      "interface": "eth1"})
    assert r.status_code == 201 and r.json()["host"] == "h2", r.text
    assert cluster3["h2"].keep.networkLookupByName("out").isActive()
    r = k.post("/hosts/h2/networks", {"name": "out2", "connection": "macvtap",
                                      "interface": "nothere0"})
    assert r.status_code == 400 and r.json()["errcode"] == "KCHNET0010E"
    # at the root: the local host's, as always
    r = k.post("/networks", {"name": "lab", "connection": "isolated"})
    assert r.status_code == 201 and r.json()["host"] == "local", r.text
    assert cluster3["h1"].keep.networkLookupByName("lab").isActive()
    assert k.delete("/hosts/h2/networks/lab").status_code == 400  # still active


def test_a_vm_of_another_host_is_cloned_there_by_that_hosts_worker(
        kimchi_factory, redis_db, cluster3: Cluster, tmp_path: Path) -> None:  # noqa: F811
    k: Kimchi = kimchi_factory(redis_url=redis_db.url, workers=1,
                               extra={"libvirt": {"uri": cluster3["h1"].uri}})
    add_host(k, cluster3, "h2")
    disks = tmp_path / "disks"
    disks.mkdir()
    src = disks / "web-0.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(src), "64M"], check=True)
    subprocess.run(["qemu-io", "-c", "write -P 0x5a 0 1M", str(src)], check=True,
                   capture_output=True)
    cluster3["h2"].keep.defineXML(
        "<domain type='test'><name>web</name><memory>65536</memory><vcpu>1</vcpu>"
        "<os><type>hvm</type></os><devices><disk type='file' device='disk'>"
        f"<driver name='qemu' type='qcow2'/><source file='{src}'/>"
        "<target dev='vda' bus='virtio'/></disk>"
        "<interface type='network'><source network='default'/></interface>"
        "</devices></domain>")
    wait_for(lambda: k.get("/hosts/h2/vms/web").status_code == 200, what="web listed")

    # no worker serves h2 yet: the copy waits, saying so; cancelled, it leaves nothing
    task = k.post("/hosts/h2/vms/web/clone", {"name": "web2"}).json()
    assert task["host"] == "h2" and task["target_uri"] == "/hosts/h2/vms/web2"
    wait_for(lambda: "KCHTASK0008E" in (k.get(f"/tasks/{task['id']}").json()["message"]
                                        or ""), what="the clone waiting for h2's worker")
    assert k.delete(f"/tasks/{task['id']}").status_code == 202
    assert k.wait_task(task["id"])["status"] == "cancelled"

    worker = host_worker(tmp_path, redis_db.url, ["h2"], "worker-of-h2")
    try:
        wait_for(lambda: k.get("/hosts/h2").json()["workers"] == 1, what="h2's worker")
        task = k.post("/hosts/h2/vms/web/clone", {"name": "web2"}).json()
        done = k.wait_task(task["id"], timeout=60)
        assert done["status"] == "finished", done
        assert done["result"]["host"] == "h2"
        copy = disks / "web2-0.qcow2"
        assert done["result"]["disks"] == [str(copy)]
        # the copy was made by h2's worker, and holds the source's data
        copies = [t for t in k.get("/tasks?kind=vm.clone.disks").json()
                  if t["status"] == "finished"]
        assert [t["worker"] for t in copies] == ["worker-of-h2"]
        out = subprocess.run(["qemu-io", "-c", "read -P 0x5a 0 1M", str(copy)],
                             capture_output=True, text=True, check=True).stdout
        assert "read 1048576/1048576" in out
        # the clone is h2's, a VM of its own; the local host has none
        clone = _dom(cluster3, "h2", "web2")
        assert clone.UUIDString() != _dom(cluster3, "h2", "web").UUIDString()
        assert str(copy) in clone.XMLDesc(0)
        assert "web2" not in [d.name() for d in cluster3["h1"].keep.listAllDomains(0)]
        assert k.get("/hosts/h2/vms/web2").json()["host"] == "h2"

        # a clone whose copy fails (its target is taken on h2) leaves nothing of its own
        (disks / "web3-0.qcow2").write_bytes(b"someone else's")
        task = k.post("/hosts/h2/vms/web/clone", {"name": "web3"}).json()
        failed = k.wait_task(task["id"], timeout=60)
        assert failed["status"] == "failed" and "KCHVM0017E" in failed["message"], failed
        assert (disks / "web3-0.qcow2").read_bytes() == b"someone else's"
        assert not (disks / "web3-0.qcow2.part").exists()
        assert "web3" not in [d.name() for d in cluster3["h2"].keep.listAllDomains(0)]
    finally:
        worker.terminate()
        assert worker.wait(15) == 0
    assert sorted(os.listdir(disks)) == ["web-0.qcow2", "web2-0.qcow2", "web3-0.qcow2"]


def test_each_hosts_own_figures_are_sampled_and_name_their_host(
        kimchi_factory, redis_db, cluster3: Cluster) -> None:  # noqa: F811
    k: Kimchi = kimchi_factory(redis_url=redis_db.url, workers=0,
                               extra={"libvirt": {"uri": cluster3["h1"].uri},
                                      "host": {"stats_interval": 0.5, "history": 10}})
    add_host(k, cluster3, "h2")
    ws = websocket.create_connection(f"{k.ws_url}/events?types=host.stats", timeout=10,
                                     header=k.ws_headers)
    try:
        seen: set[str] = set()
        while seen != {"local", "h2"}:
            seen.add(json.loads(ws.recv())["data"]["host"])
    finally:
        ws.close()
    # h2's, from its libvirtd: its memory (the test driver's node: 3 GiB), no disk or
    # network rates, which libvirt does not tell
    now = k.get("/hosts/h2/stats").json()
    assert now["host"] == "h2"
    info = cluster3["h2"].keep.getInfo()
    assert now["memory"]["total"] == info[1] * 1024 * 1024
    assert now["disk_read_rate"] is None and now["net_sent_rate"] is None
    wait_for(lambda: len(k.get("/hosts/h2/stats/history").json()["time"]) >= 2,
             what="two samples of h2")
    hist = k.get("/hosts/h2/stats/history").json()
    assert hist["host"] == "h2" and hist["interval"] == 0.5
    assert set(hist["memory"]["total"]) == {info[1] * 1024 * 1024}
    # the local host's are this machine's, as always, and say so
    mine = k.get("/host/stats").json()
    assert mine["host"] == "local" and isinstance(mine["disk_read_rate"], int)
    assert k.get("/hosts/local/stats").json()["host"] == "local"
    r = k.get("/hosts/h9/stats")
    assert r.status_code == 404 and r.json()["errcode"] == "KCHHOST0001E"
    # a host that goes away: its figures stop, and it answers 503 only if none was kept
    cluster3["h2"].kill()
    wait_for(lambda: k.get("/hosts/h2").json()["state"] != "connected", what="h2 down")
    assert k.get("/hosts/h2/stats").json()["host"] == "h2"  # the last sample, kept


def test_a_vm_of_another_host_is_made_a_template_there_by_that_hosts_worker(
        kimchi_factory, redis_db, cluster3: Cluster, tmp_path: Path) -> None:  # noqa: F811
    k: Kimchi = kimchi_factory(redis_url=redis_db.url, workers=1,
                               extra={"libvirt": {"uri": cluster3["h1"].uri}})
    add_host(k, cluster3, "h2")
    disks = tmp_path / "gold-disks"
    disks.mkdir()
    h2 = cluster3["h2"].keep
    pool = h2.storagePoolDefineXML(
        f"<pool type='dir'><name>golden</name><target><path>{disks}</path></target></pool>")
    pool.create(0)
    # the test driver keeps volumes in memory: the file behind this one is made here
    pool.createXML("<volume><name>gold-0.qcow2</name><capacity unit='M'>64</capacity>"
                   "<target><format type='qcow2'/></target></volume>", 0)
    src = disks / "gold-0.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(src), "64M"], check=True)
    subprocess.run(["qemu-io", "-c", "write -P 0x5a 0 1M", str(src)], check=True,
                   capture_output=True)
    h2.defineXML(
        "<domain type='test'><name>gold</name><memory>65536</memory><vcpu>1</vcpu>"
        "<os><type>hvm</type></os><devices><disk type='file' device='disk'>"
        f"<driver name='qemu' type='qcow2'/><source file='{src}'/>"
        "<target dev='vda' bus='virtio'/></disk></devices></domain>")
    wait_for(lambda: k.get("/hosts/h2/vms/gold").status_code == 200, what="gold listed")
    worker = host_worker(tmp_path, redis_db.url, ["h2"], "worker-of-h2")
    try:
        wait_for(lambda: k.get("/hosts/h2").json()["workers"] == 1, what="h2's worker")
        task = k.post("/hosts/h2/vms/gold/template", {"name": "gold-t"}).json()
        assert task["host"] == "h2"
        done = k.wait_task(task["id"], timeout=60)
        assert done["status"] == "finished", done
        base, leaf = disks / "gold-t-base-0.qcow2", disks / "gold-0-gold-t.qcow2"
        assert done["result"]["bases"] == [str(base)] and done["result"]["host"] == "h2"
        # the copy and the removal were jobs of h2's worker, not of the local one
        for kind in ("vm.template.disks", "disks.remove"):
            jobs = [t for t in k.get(f"/tasks?kind={kind}").json() if t["status"] == "finished"]
            assert [t["worker"] for t in jobs] == ["worker-of-h2"], (kind, jobs)
        # h2's VM now runs on a leaf over the read-only base, which holds its data
        assert str(leaf) in h2.lookupByName("gold").XMLDesc(0)
        assert json.loads(subprocess.run(
            ["qemu-img", "info", "-U", "--output=json", str(leaf)], check=True,
            capture_output=True, text=True).stdout)["backing-filename"] == str(base)
        assert oct(base.stat().st_mode & 0o777) == "0o444"
        out = subprocess.run(["qemu-io", "-r", "-c", "read -P 0x5a 0 1M", str(base)],
                             capture_output=True, text=True, check=True).stdout
        assert "read 1048576/1048576" in out
        assert not src.exists()  # the old disk was removed by h2's worker
        template = k.get("/templates/gold-t").json()
        assert template["source_media"]["host"] == "h2"
        assert template["disks"][0]["base"]["path"] == str(base)
    finally:
        worker.terminate()
        assert worker.wait(15) == 0
    assert sorted(os.listdir(disks)) == ["gold-0-gold-t.qcow2", "gold-t-base-0.qcow2"]
