"""A simulated cluster: N hosts, each a libvirtd of its own serving libvirt's test driver.

Each host is a :class:`PrivateLibvirtd` (its own sockets, no hypervisor drivers, so it
never touches the machine's guests, networks or pools) with its own ``host_uuid``.  The
test driver drops its state when its last client goes, so each host keeps one
connection open for as long as it lives: VMs made on it stay until it is killed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import libvirt
import pytest

from tests.libvirtd_private import PrivateLibvirtd


class SimulatedHost(PrivateLibvirtd):
    def __init__(self, workdir: Path, name: str) -> None:
        self.name = name
        self.host_uuid = str(uuid.uuid4())
        super().__init__(workdir)
        with self.conf.open("a") as f:
            f.write(f'host_uuid = "{self.host_uuid}"\n')
        self.keep: Any = None  # the connection that keeps the test driver's state alive

    def start(self) -> None:
        super().start()
        self.keep = libvirt.open(self.uri)

    def kill(self) -> None:
        super().kill()
        self.keep = None

    def define_vm(self, name: str, running: bool = False) -> None:
        """A VM of this host, as virsh would define it (the test driver's own kind)."""
        xml = (f"<domain type='test'><name>{name}</name><memory>65536</memory>"
               "<vcpu>1</vcpu><os><type>hvm</type></os></domain>")
        dom = self.keep.defineXML(xml)
        if running:
            dom.create()


class Cluster:
    def __init__(self, root: Path, n: int) -> None:
        self.hosts = [SimulatedHost(root / f"h{i + 1}", f"h{i + 1}") for i in range(n)]

    def __getitem__(self, name: str) -> SimulatedHost:
        for h in self.hosts:
            if h.name == name:
                return h
        raise KeyError(name)

    def start(self) -> None:
        for h in self.hosts:
            h.start()

    def stop(self) -> None:
        for h in self.hosts:
            h.kill()


def add_host(k: Any, cluster: Cluster, name: str) -> None:
    """Add the cluster's host ``name`` to kimchid ``k`` (POST /hosts)."""
    r = k.post("/hosts", {"name": name, "uri": cluster[name].uri}, timeout=30)
    assert r.status_code == 201, r.text


def host_worker(tmp_path: Path, redis_url: str, hosts: list[str],
                name: str) -> subprocess.Popen:
    """A worker process on its own, serving ``hosts`` (as kimchi-worker@.service on them)."""
    cfg = tmp_path / f"{name}.toml"
    cfg.write_text(f'[redis]\nurl = "{redis_url}"\n[workers]\nhosts = {json.dumps(hosts)}\n'
                   'lease_seconds = 2.0\n')
    env = {key: v for key, v in os.environ.items() if not key.startswith("KIMCHI_")}
    return subprocess.Popen([sys.executable, "-m", "workers.main", "--config", str(cfg),
                             "--name", name], env=env)


@pytest.fixture
def multi(kimchi_factory: Any, redis_db: Any, cluster3: Cluster) -> Any:
    """kimchid (no workers) whose local host is the cluster's h1."""
    from tests.conftest import wait_for

    k = kimchi_factory(redis_url=redis_db.url, workers=0,
                       extra={"libvirt": {"uri": cluster3["h1"].uri}})
    wait_for(lambda: k.get("/vms").status_code == 200, what="the VM list")
    return k


@pytest.fixture
def cluster3(tmp_path: Path) -> Iterator[Cluster]:
    """Three simulated hosts, h1..h3, each with the test driver's default objects."""
    c = Cluster(tmp_path / "cluster", 3)
    c.start()
    yield c
    c.stop()
