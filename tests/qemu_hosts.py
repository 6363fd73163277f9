"""Simulated KVM hosts that run real QEMU guests: each a libvirtd of its own in its own
network, mount and UTS namespaces, so that two of them on this one machine can migrate a
running guest between them as two machines would.

Each host gets:

* a network namespace (``ip netns``) joined by a veth pair to a bridge of the tests in the
  root namespace (``10.231.0.1/24``), the host at ``10.231.0.<2 + n>``: hosts reach each
  other over the bridge, and the tests (and kimchid) reach them too;
* a mount namespace (``unshare --mount``) where libvirt's run, lib, log, cache and config
  folders are bind mounts of folders of the test's own, so nothing of the machine's
  libvirtd is seen or touched; its own hostname (``unshare --uts``) and ``host_uuid``;
* ``virtlogd`` and ``libvirtd --listen`` (TCP, no authentication: the bridge is private to
  the machine) with their pid files under the bound ``/run/libvirt``.

Guests' disks go in a folder both hosts see (the tests' ``/tmp``), as shared storage.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

BRIDGE = "kimchibr0"
NET = "10.231.0"
_BOUND = {"run": "/run/libvirt", "lib": "/var/lib/libvirt", "log": "/var/log/libvirt",
          "cache": "/var/cache/libvirt", "etc": "/etc/libvirt"}


def virsh(uri: str, *args: str, stdin: str | None = None) -> str:
    """``virsh -c uri args...`` in a process of its own: the tests hold no libvirt
    connection to these hosts (one still open when a host goes away can hang the test
    process at exit, closing itself towards a namespace that is gone)."""
    r = subprocess.run(["virsh", "-q", "-c", uri, *args], input=stdin, text=True,
                       capture_output=True, timeout=300)
    if r.returncode:
        raise RuntimeError(f"virsh {' '.join(args)}: {r.stderr.strip()}")
    return r.stdout


def _ip(*args: str, check: bool = True) -> None:
    subprocess.run(["ip", *args], check=check, capture_output=True, timeout=30)


class QemuHost:
    def __init__(self, root: Path, n: int) -> None:
        self.name = f"kimchi-qh{n}"
        self.address = f"{NET}.{2 + n}"
        self.uri = f"qemu+tcp://{self.address}/system"
        self.dir = root / self.name
        self.netns = self.name
        self.veth = f"kqh{n}"

    def start(self) -> None:
        for sub in _BOUND:
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        shutil.copytree("/etc/libvirt", self.dir / "etc", dirs_exist_ok=True)
        with (self.dir / "etc" / "libvirtd.conf").open("a") as f:
            f.write(f'\nlisten_tls = 0\nlisten_tcp = 1\nauth_tcp = "none"\n'
                    f'listen_addr = "{self.address}"\nhost_uuid = "{uuid.uuid4()}"\n')
        _ip("netns", "add", self.netns)
        _ip("link", "add", f"{self.veth}a", "type", "veth", "peer", "name", f"{self.veth}b")
        _ip("link", "set", f"{self.veth}b", "netns", self.netns)
        _ip("link", "set", f"{self.veth}a", "master", BRIDGE)
        _ip("link", "set", f"{self.veth}a", "up")
        inside = ["ip", "netns", "exec", self.netns]
        for cmd in (["ip", "addr", "add", f"{self.address}/24", "dev", f"{self.veth}b"],
                    ["ip", "link", "set", f"{self.veth}b", "up"],
                    ["ip", "link", "set", "lo", "up"]):
            subprocess.run([*inside, *cmd], check=True, capture_output=True, timeout=30)
        binds = "; ".join(f"mount --bind {self.dir / sub} {target}"
                          for sub, target in _BOUND.items())
        script = (f"{binds}; hostname {self.name}; "
                  "virtlogd -d -p /run/libvirt/virtlogd.pid && "
                  "libvirtd --listen -d -p /run/libvirt/libvirtd.pid")
        subprocess.run([*inside, "unshare", "--mount", "--uts", "--propagation", "private",
                        "sh", "-c", script], check=True, capture_output=True, timeout=60)
        deadline = time.monotonic() + 30
        while True:
            try:
                virsh(self.uri, "version")
                return
            except RuntimeError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def stop(self) -> None:
        """Every process of the host (libvirtd, virtlogd, its guests' QEMUs: all in its
        network namespace) killed, then the namespace and its link removed."""
        pids = subprocess.run(["ip", "netns", "pids", self.netns], capture_output=True,
                              text=True, timeout=30).stdout.split()
        for pid in pids:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
        _ip("netns", "del", self.netns, check=False)
        _ip("link", "del", f"{self.veth}a", check=False)


class QemuHosts:
    def __init__(self, root: Path, n: int) -> None:
        self.hosts = [QemuHost(root, i) for i in range(n)]

    def start(self) -> None:
        _ip("link", "add", BRIDGE, "type", "bridge", check=False)
        _ip("addr", "replace", f"{NET}.1/24", "dev", BRIDGE)
        _ip("link", "set", BRIDGE, "up")
        for h in self.hosts:
            h.start()

    def stop(self) -> None:
        for h in self.hosts:
            h.stop()
        _ip("link", "del", BRIDGE, check=False)


@pytest.fixture(scope="module")
def qemu_hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[QemuHosts]:
    """Two namespaced hosts with real QEMU (started once per module: they are slow)."""
    hosts = QemuHosts(tmp_path_factory.mktemp("qemu-hosts"), 2)
    try:
        hosts.start()
        yield hosts
    finally:
        hosts.stop()
