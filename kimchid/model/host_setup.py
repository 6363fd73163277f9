"""Start-up sanity: the ``default`` network and storage pool exist and are active.

Kimchi's users most often met the app vanishing because one of these was
missing.  Here each is created if missing and started if inactive; what cannot
be fixed is returned as a problem with a way to fix it, and kimchid carries on,
degraded, until a later check finds everything right.
"""

from __future__ import annotations

import ipaddress
import os
from typing import Any

DEFAULT_POOL_PATH = "/var/lib/libvirt/images"


def _free_subnet(conn: Any) -> ipaddress.IPv4Network:
    """192.168.122.0/24 unless a host interface or another network already uses it."""
    used: list[ipaddress.IPv4Network] = []
    try:
        import socket

        import psutil  # optional: a better guess when present

        for addrs in psutil.net_if_addrs().values():
            for a in addrs:
                if a.family == socket.AF_INET and a.netmask:
                    used.append(ipaddress.IPv4Network(f"{a.address}/{a.netmask}", strict=False))
    except Exception:
        pass
    for net in conn.listAllNetworks(0):
        xml = net.XMLDesc(0)
        if "address='" in xml:
            addr = xml.split("address='", 1)[1].split("'", 1)[0]
            try:
                used.append(ipaddress.IPv4Network(f"{addr}/24", strict=False))
            except ValueError:
                pass
    for third in range(122, 255):
        candidate = ipaddress.IPv4Network(f"192.168.{third}.0/24")
        if not any(candidate.overlaps(u) for u in used):
            return candidate
    raise RuntimeError("no free 192.168.x.0/24 subnet for the default network")


def ensure_defaults(conn: Any) -> list[dict[str, str]]:
    """Make the default network and pool exist and run; return what could not be fixed."""
    import libvirt

    problems: list[dict[str, str]] = []
    try:
        try:
            net = conn.networkLookupByName("default")
        except libvirt.libvirtError:
            subnet = _free_subnet(conn)
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
    except (libvirt.libvirtError, RuntimeError) as e:
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
