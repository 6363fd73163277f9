"""A libvirtd of the test's own, for the tests that kill and restart libvirtd.

Never the machine's: its own sockets, no hypervisor drivers, only libvirt's test
driver.  ``kill -9`` and a new start lose the test driver's state, as a real
restart loses VMs that were made while it ran.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import libvirt
import pytest

from tests.conftest import wait_for


class PrivateLibvirtd:
    """A libvirtd of the test's own: sockets in a temporary folder, no driver modules
    (``LIBVIRT_DRIVER_DIR`` empty), so only the test driver answers; killed at the end."""

    def __init__(self, workdir: Path) -> None:
        self.dir = workdir
        (self.dir / "sock").mkdir(parents=True, exist_ok=True)
        (self.dir / "no-drivers").mkdir(exist_ok=True)
        self.conf = self.dir / "libvirtd.conf"
        self.conf.write_text(
            f'unix_sock_dir = "{self.dir / "sock"}"\n'
            'unix_sock_rw_perms = "0700"\nauth_unix_rw = "none"\nauth_unix_ro = "none"\n'
            f'log_outputs = "3:file:{self.dir / "libvirtd.log"}"\n')
        self.uri = f"test+unix:///default?socket={self.dir / 'sock' / 'libvirt-sock'}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {**os.environ, "LIBVIRT_DRIVER_DIR": str(self.dir / "no-drivers")}
        # Under another name: the session's libvirtd fixture takes a process called
        # "libvirtd" for the machine's (and, if it started that one, stops it at the end).
        binary = self.dir / "kimchi-lvd"
        if not binary.exists():
            binary.symlink_to("/usr/sbin/libvirtd")
        self.proc = subprocess.Popen(
            [str(binary), "-f", str(self.conf), "-p", str(self.dir / "libvirtd.pid")],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: libvirt.open(self.uri).getLibVersion(), timeout=20,
                 what=f"the test's libvirtd (log {self.dir / 'libvirtd.log'})")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)


@pytest.fixture
def own_libvirtd(tmp_path: Path) -> Iterator[PrivateLibvirtd]:
    d = PrivateLibvirtd(tmp_path / "libvirtd")
    d.start()
    yield d
    d.kill()
