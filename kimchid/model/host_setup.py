"""Start-up sanity: the ``default`` network and storage pool exist and are active.

Kimchi's users most often met the app vanishing because one of these was
missing.  Here each is created if missing and started if inactive; what cannot
be fixed is returned as a problem with a way to fix it, and kimchid carries on,
degraded, until a later check finds everything right.
"""

from __future__ import annotations

import os
from typing import Any

from kimchid.errors import InvalidRequest
from kimchid.model.networks import free_subnet

DEFAULT_POOL_PATH = "/var/lib/libvirt/images"


def ensure_defaults(conn: Any) -> list[dict[str, str]]:
    """Make the default network and pool exist and run; return what could not be fixed."""
    import libvirt

    problems: list[dict[str, str]] = []
    try:
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
        if not net.autostart():
            net.setAutostart(1)
    except (libvirt.libvirtError, InvalidRequest) as e:
        problems.append({
            "what": "network default",
            "reason": str(e),
            "fix": "check `virsh net-start default` (a conflicting bridge or subnet, or "
                   "dnsmasq missing: apt-get install dnsmasq-base)",
        })
    try:
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
        if not pool.autostart():
            pool.setAutostart(1)
    except (libvirt.libvirtError, OSError) as e:
        problems.append({
            "what": "storage pool default",
            "reason": str(e),
            "fix": f"check `virsh pool-start default` and that {DEFAULT_POOL_PATH} exists",
        })
    return problems
