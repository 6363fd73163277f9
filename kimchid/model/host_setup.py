"""The ``default`` network and storage pool: made right on connecting, watched afterwards.

Kimchi's users most often met the app vanishing because one of these was
missing.  When kimchid connects to libvirt (at start, and after libvirtd came
back) :func:`ensure_defaults` creates each if missing and starts it if
inactive.  While kimchid runs, :func:`check_defaults` only looks: an admin who
removed or stopped one meant it, so it is reported with the way back, never
made again behind their back.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

from twisted.logger import Logger

from kimchi.errors import InvalidRequest
from kimchid.model.health import Problem
from kimchid.model.libvirtobjects import lv, why
from kimchid.model.networks import free_subnet

log = Logger()

DEFAULT_POOL_PATH = "/var/lib/libvirt/images"
NETWORK = "network-default"
POOL = "pool-default"

RESTART = "restart kimchid (systemctl restart kimchid, or ./kimchi.sh stop; ./kimchi.sh up)"
# what to do, by problem id and by what was found
FIXES = {
    (NETWORK, "missing"): f"make it again: {RESTART}, which creates a NAT network named "
                          "default, or add a NAT network named default on the Networks page; "
                          "it needs a free 192.168.x.0/24 subnet (ip -4 addr shows those "
                          "in use)",
    (NETWORK, "stopped"): "start it: virsh net-start default (or Activate on the Networks "
                          "page); if it does not start, look for a bridge or subnet it "
                          "clashes with (ip -4 addr) and install dnsmasq (apt-get install "
                          "dnsmasq-base)",
    (POOL, "missing"): f"make it again: {RESTART}, which creates a folder pool named default "
                       f"at {DEFAULT_POOL_PATH}, or by hand: virsh pool-define-as default dir "
                       f"--target {DEFAULT_POOL_PATH}; virsh pool-build default; virsh "
                       "pool-start default; virsh pool-autostart default",
    (POOL, "stopped"): "start it: virsh pool-start default (or Activate on the Storage page); "
                       "if its folder is gone, virsh pool-build default first",
}
WHAT = {NETWORK: "The default network", POOL: "The default storage pool"}


def ensure_defaults(conn: Any) -> list[Problem]:
    """Make the default network and pool exist and run; return what could not be fixed
    (blocking: a libvirt thread)."""
    libvirt = lv()
    failed: dict[str, str] = {}
    for pid, make in ((NETWORK, _make_network), (POOL, _make_pool)):
        try:
            make(conn)
        except (libvirt.libvirtError, InvalidRequest, OSError) as e:
            failed[pid] = why(e)
    return check_defaults(conn, failed)


def check_defaults(conn: Any, failed: Mapping[str, str] | None = None) -> list[Problem]:
    """What is wrong with the default network and pool, changing nothing (blocking).

    ``failed``: why making one right failed, given as the reason instead of what was found.
    """
    libvirt = lv()
    found = [
        (NETWORK, _state(lambda: conn.networkLookupByName("default"),
                         libvirt.VIR_ERR_NO_NETWORK)),
        (POOL, _state(lambda: conn.storagePoolLookupByName("default"),
                      libvirt.VIR_ERR_NO_STORAGE_POOL)),
    ]
    return [Problem(id=pid, component="libvirt", what=WHAT[pid],
                    reason=(failed or {}).get(pid) or reason, fix=FIXES[pid, state],
                    state=state)
            for pid, (state, reason) in found if state]


def _state(lookup: Callable[[], Any], not_found: int) -> tuple[str, str]:
    """``("missing" | "stopped", why)``, or ``("", "")`` when it exists and runs."""
    try:
        obj = lookup()
    except lv().libvirtError as e:
        if e.get_error_code() != not_found:
            raise  # the connection, not the object: libvirt's own problem
        return "missing", why(e)
    if not obj.isActive():
        return "stopped", "it is defined but not running"
    return "", ""


def _make_network(conn: Any) -> None:
    libvirt = lv()
    try:
        net = conn.networkLookupByName("default")
    except libvirt.libvirtError:
        subnet = free_subnet(conn)
        hosts = list(subnet.hosts())
        net = conn.networkDefineXML(
            f"<network><name>default</name><forward mode='nat'/>"
            f"<bridge stp='on' delay='0'/><ip address='{hosts[0]}' "
            f"netmask='{subnet.netmask}'><dhcp><range start='{hosts[1]}' "
            f"end='{hosts[-1]}'/></dhcp></ip></network>")
    if not net.isActive():
        net.create()
    _autostart(net, "network")


def _make_pool(conn: Any) -> None:
    libvirt = lv()
    try:
        pool = conn.storagePoolLookupByName("default")
    except libvirt.libvirtError:
        os.makedirs(DEFAULT_POOL_PATH, mode=0o711, exist_ok=True)
        pool = conn.storagePoolDefineXML(
            f"<pool type='dir'><name>default</name><target><path>{DEFAULT_POOL_PATH}"
            "</path></target></pool>", 0)
        pool.build(0)
    if not pool.isActive():
        pool.create(0)
    _autostart(pool, "storage pool")


def _autostart(obj: Any, kind: str) -> None:
    """Autostart on; when libvirt refuses, say so: nothing is broken until the host reboots."""
    try:
        if not obj.autostart():
            obj.setAutostart(1)
    except lv().libvirtError as e:
        log.warn("the default {kind} will not start with the host: {e}", kind=kind, e=why(e))
