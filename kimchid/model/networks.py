"""Virtual networks on libvirt, and the host's interfaces they may use.

Like storage pools, networks are few and read from libvirt at each request.
A NAT or isolated network gets a subnet that neither another libvirt network
nor a host interface uses (one is picked when none is given), the gateway at
its first address and DHCP over its upper half.  A bridged or macvtap network
goes through an interface of the host.  XML is built with ElementTree; a
network that cannot start is undefined again; what a VM or template uses is
protected.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import Any

import psutil
from twisted.internet import threads

from kimchi.bus import LOCAL_HOST
from kimchi.errors import (
    InvalidOperation,
    InvalidRequest,
    NotFound,
    OperationFailed,
)
from kimchid.adapters.libvirt import LibvirtConnection
from kimchid.model.events import EventHub
from kimchid.model.libvirtobjects import LibvirtObjects, lv, why
from kimchid.model.vms import VmInventory

CONNECTIONS = ("nat", "isolated", "bridge", "macvtap")
_OCTET = "(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
#: A subnet a network may take: IPv4 in a private range (RFC 1918), /16 to /28 (host bits
#: are dropped); the schema's pattern and the server's check
SUBNET_PATTERN = (f"^(10\\.{_OCTET}|172\\.(1[6-9]|2[0-9]|3[01])|192\\.168)"
                  f"\\.{_OCTET}\\.{_OCTET}/(1[6-9]|2[0-8])$")



# -- the host's interfaces -----------------------------------------------------------------

def host_interfaces(root: str = "/sys/class/net") -> list[dict[str, Any]]:
    """Every interface of the host: ``nic`` (a device behind it), ``bridge``, ``bonding``,
    ``vlan`` or ``virtual``, with its IPv4 addresses and whether it is up (blocking)."""
    stats = psutil.net_if_stats()
    addrs = psutil.net_if_addrs()
    out = []
    for name in sorted(os.listdir(root)) if os.path.isdir(root) else []:
        base = os.path.join(root, name)
        if name == "lo":
            continue
        if os.path.isdir(os.path.join(base, "bridge")):
            kind = "bridge"
        elif os.path.isdir(os.path.join(base, "bonding")):
            kind = "bonding"
        elif os.path.exists(f"/proc/net/vlan/{name}"):
            kind = "vlan"
        elif os.path.exists(os.path.join(base, "device")):
            kind = "nic"
        else:
            kind = "virtual"
        v4 = [a for a in addrs.get(name, []) if a.family == socket.AF_INET]
        st = stats.get(name)
        out.append({"name": name, "type": kind, "status": "up" if st and st.isup else "down",
                    "ipaddr": v4[0].address if v4 else "", "netmask": v4[0].netmask if v4 else "",
                    "mtu": st.mtu if st else 0})
    return out


_LIBVIRT_KINDS = {"ethernet": "nic", "bridge": "bridge", "bond": "bonding", "vlan": "vlan"}


def libvirt_interfaces(conn: Any) -> list[dict[str, Any]]:
    """Every interface of a host elsewhere, as its libvirtd's interface driver knows it,
    in :func:`host_interfaces`' shape (blocking: libvirt thread)."""
    out = []
    for iface in conn.listAllInterfaces(0):
        root = ET.fromstring(iface.XMLDesc(0))
        name = root.get("name") or iface.name()
        if name == "lo":
            continue
        ip = root.find("./protocol[@family='ipv4']/ip")
        ipaddr, netmask = "", ""
        if ip is not None and ip.get("address"):
            ipaddr = ip.get("address", "")
            netmask = str(ipaddress.IPv4Network(
                f"0.0.0.0/{ip.get('prefix') or 32}").netmask)
        mtu = root.find("mtu")
        out.append({"name": name, "type": _LIBVIRT_KINDS.get(root.get("type", ""), "virtual"),
                    "status": "up" if iface.isActive() else "down", "ipaddr": ipaddr,
                    "netmask": netmask, "mtu": int(mtu.get("size", 0)) if mtu is not None
                    else 0})
    return sorted(out, key=lambda i: i["name"])


def used_subnets(conn: Any, here: bool = True) -> list[ipaddress.IPv4Network]:
    """The IPv4 subnets of the host's interfaces and of every libvirt network (blocking);
    ``here``: the host is this machine (its interfaces are read here, else from its
    libvirtd)."""
    used: list[ipaddress.IPv4Network] = []
    if here:
        for a_list in psutil.net_if_addrs().values():
            for a in a_list:
                if a.family == socket.AF_INET and a.netmask:
                    used.append(ipaddress.IPv4Network(f"{a.address}/{a.netmask}",
                                                      strict=False))
    else:
        for i in libvirt_interfaces(conn):
            if i["ipaddr"]:
                used.append(ipaddress.IPv4Network(f"{i['ipaddr']}/{i['netmask']}",
                                                  strict=False))
    for net in conn.listAllNetworks(0):
        sub = network_subnet(ET.fromstring(net.XMLDesc(0)))
        if sub is not None:
            used.append(sub)
    return used


def free_subnet(conn: Any, here: bool = True, first: int = 122) -> ipaddress.IPv4Network:
    """The first 192.168.x.0/24 (x from ``first``) that nothing uses yet."""
    used = used_subnets(conn, here)
    for third in range(first, 255):
        candidate = ipaddress.IPv4Network(f"192.168.{third}.0/24")
        if not any(candidate.overlaps(u) for u in used):
            return candidate
    raise InvalidOperation("KCHNET0011E", subnet="192.168.x.0/24",
                           reason="every one from 192.168.122.0/24 up is in use")


def network_subnet(root: ET.Element) -> ipaddress.IPv4Network | None:
    ip = root.find("ip")
    if ip is None or ip.get("family", "ipv4") != "ipv4" or not ip.get("address"):
        return None
    mask = ip.get("netmask") or ip.get("prefix") or "24"
    try:
        return ipaddress.IPv4Network(f"{ip.get('address')}/{mask}", strict=False)
    except ValueError:
        return None


# -- XML ---------------------------------------------------------------------------------

def network_xml(name: str, connection: str, subnet: ipaddress.IPv4Network | None,
                interface: str | None) -> str:
    root = ET.Element("network")
    ET.SubElement(root, "name").text = name
    if connection in ("nat", "isolated"):
        assert subnet is not None
        if connection == "nat":
            ET.SubElement(root, "forward", mode="nat")
        ET.SubElement(root, "bridge", stp="on", delay="0")
        hosts = list(subnet.hosts())
        ip = ET.SubElement(root, "ip", address=str(hosts[0]), netmask=str(subnet.netmask))
        dhcp = ET.SubElement(ip, "dhcp")
        ET.SubElement(dhcp, "range", start=str(hosts[len(hosts) // 2]), end=str(hosts[-1]))
    elif connection == "bridge":
        ET.SubElement(root, "forward", mode="bridge")
        ET.SubElement(root, "bridge", name=str(interface))
    else:  # macvtap: guests share the host NIC
        fwd = ET.SubElement(root, "forward", mode="bridge")
        ET.SubElement(fwd, "interface", dev=str(interface))
    return ET.tostring(root, encoding="unicode")


def network_info(net: Any) -> dict[str, Any]:
    """A network as the API shows it (blocking: a libvirt thread)."""
    root = ET.fromstring(net.XMLDesc(0))
    fwd = root.find("forward")
    mode = fwd.get("mode", "nat") if fwd is not None else "isolated"
    bridge = root.find("bridge")
    devs = [i.get("dev", "") for i in fwd.findall("interface")] if fwd is not None else []
    if mode == "bridge":
        connection = "macvtap" if devs else "bridge"
    else:
        connection = mode
    subnet = network_subnet(root)
    ip = root.find("ip")
    rng = root.find("ip/dhcp/range")
    return {
        "name": net.name(), "uuid": net.UUIDString(),
        "state": "active" if net.isActive() else "inactive",
        "autostart": bool(net.autostart()), "persistent": bool(net.isPersistent()),
        "connection": connection,
        "subnet": str(subnet) if subnet else "",
        "gateway": ip.get("address", "") if ip is not None else "",
        "dhcp": {"start": rng.get("start", ""), "end": rng.get("end", "")} if rng is not None
        else {},
        "bridge": bridge.get("name", "") if bridge is not None else "",
        "interfaces": devs or ([bridge.get("name", "")] if connection == "bridge"
                               and bridge is not None else []),
    }


# -- the service -------------------------------------------------------------------------

class Networks(LibvirtObjects):
    def __init__(self, libvirt: LibvirtConnection, events: EventHub, vms: VmInventory,
                 template_networks: Callable[[], dict[str, list[str]]],
                 host: str = LOCAL_HOST, local: bool = True) -> None:
        """``local``: the host is this machine (its interfaces are read here; another
        host's from its libvirtd)."""
        super().__init__(libvirt, events, host)
        self.local = local
        self.vms = vms
        self.template_networks = template_networks  # network -> templates (blocking)

    @staticmethod
    def _net(conn: Any, name: str) -> Any:
        try:
            return conn.networkLookupByName(name)
        except lv().libvirtError:
            raise NotFound("KCHNET0002E", name=name) from None

    async def _with_usage(self, nets: list[dict[str, Any]]) -> list[dict[str, Any]]:
        named = await threads.deferToThread(self.template_networks)
        vms = self.vms.list()  # once, not once per network
        for n in nets:
            users = sorted({vm["name"] for vm in vms if n["name"] in vm.get("networks", [])})
            n["used_by"] = {"templates": sorted(named.get(n["name"], [])), "vms": users}
            n["in_use"] = bool(n["used_by"]["templates"] or users)
        return nets

    async def list_networks(self) -> list[dict[str, Any]]:
        nets = await self._run(lambda c: [network_info(n) for n in c.listAllNetworks(0)])
        return sorted(await self._with_usage(nets), key=lambda n: n["name"])

    async def get(self, name: str) -> dict[str, Any]:
        return (await self._with_usage([await self._run(
            lambda c: network_info(self._net(c, name)))]))[0]

    async def interfaces(self) -> list[dict[str, Any]]:
        if self.local:
            return await threads.deferToThread(host_interfaces)
        return await self._run(libvirt_interfaces)

    async def create(self, body: dict[str, Any]) -> dict[str, Any]:
        name, connection = body["name"], body["connection"]
        interface = body.get("interface")
        if connection in ("bridge", "macvtap"):
            if not interface:
                raise InvalidRequest("KCHNET0004E", name=name,
                                     reason=f"a {connection} network needs an interface")
            found = {i["name"]: i for i in await self.interfaces()}
            if interface not in found:
                raise InvalidOperation("KCHNET0010E", name=name, interface=interface,
                                       reason="the host has no such interface")
            if connection == "bridge" and found[interface]["type"] != "bridge":
                raise InvalidOperation("KCHNET0010E", name=name, interface=interface,
                                       reason="it is not a bridge (use macvtap for a plain "
                                              "interface)")
        elif interface:
            raise InvalidRequest("KCHNET0004E", name=name,
                                 reason=f"a {connection} network takes no interface")
        wanted = body.get("subnet")

        def make(c: Any) -> dict[str, Any]:
            libvirt = lv()
            try:
                c.networkLookupByName(name)
                raise InvalidOperation("KCHNET0001E", name=name)
            except libvirt.libvirtError:
                pass
            subnet = None
            if connection in ("nat", "isolated"):
                subnet = (_check_subnet(c, wanted, self.local) if wanted
                          else free_subnet(c, self.local))
            try:
                net = c.networkDefineXML(network_xml(name, connection, subnet, interface))
            except libvirt.libvirtError as e:
                raise InvalidOperation("KCHNET0008E", name=name, error=why(e)) from None
            try:
                net.setAutostart(1)
                net.create()
            except libvirt.libvirtError as e:  # undo: no network that cannot start stays
                try:
                    net.undefine()
                except libvirt.libvirtError:
                    pass
                raise OperationFailed("KCHNET0008E", name=name, error=why(e)) from None
            return network_info(net)

        out = (await self._with_usage([await self._run(make)]))[0]
        await self._publish("network.created", out)
        return out

    async def set_autostart(self, name: str, autostart: bool) -> dict[str, Any]:
        def change(c: Any) -> dict[str, Any]:
            n = self._net(c, name)
            n.setAutostart(1 if autostart else 0)
            return network_info(n)

        out = (await self._with_usage([await self._run(change)]))[0]
        await self._publish("network.updated", out)
        return out

    async def activate(self, name: str) -> dict[str, Any]:
        def start(c: Any) -> dict[str, Any]:
            n = self._net(c, name)
            if n.isActive():
                raise InvalidOperation("KCHNET0006E", name=name, state="active")
            try:
                n.create()
            except lv().libvirtError as e:
                raise OperationFailed("KCHNET0008E", name=name, error=why(e)) from None
            return network_info(n)

        out = (await self._with_usage([await self._run(start)]))[0]
        await self._publish("network.updated", out)
        return out

    async def deactivate(self, name: str) -> dict[str, Any]:
        running = sorted(vm["name"] for vm in self.vms.list()
                         if vm["state"] != "shutoff" and name in vm.get("networks", []))
        if running:
            raise InvalidOperation("KCHNET0007E", name=name, vms=", ".join(running))

        def stop(c: Any) -> dict[str, Any]:
            n = self._net(c, name)
            if not n.isActive():
                raise InvalidOperation("KCHNET0006E", name=name, state="inactive")
            n.destroy()
            return network_info(n)

        out = (await self._with_usage([await self._run(stop)]))[0]
        await self._publish("network.updated", out)
        return out

    async def delete(self, name: str) -> None:
        net = await self.get(name)
        if net["state"] == "active":
            raise InvalidOperation("KCHNET0005E", name=name)
        users = net["used_by"]["templates"] + net["used_by"]["vms"]
        if users:
            raise InvalidOperation("KCHNET0003E", name=name, users=", ".join(users))
        await self._run(lambda c: self._net(c, name).undefine())
        await self._publish("network.deleted", {"name": name})


def _check_subnet(conn: Any, text: str, here: bool) -> ipaddress.IPv4Network:
    if not re.fullmatch(SUBNET_PATTERN, text):
        raise InvalidRequest("KCHNET0009E", subnet=text,
                             reason="use a private IPv4 network (10.x, 172.16-31.x, "
                                    "192.168.x), /16 to /28")
    subnet = ipaddress.IPv4Network(text, strict=False)
    clash = [str(u) for u in used_subnets(conn, here) if subnet.overlaps(u)]
    if clash:
        raise InvalidOperation("KCHNET0011E", subnet=text,
                               reason=f"it overlaps {', '.join(sorted(set(clash)))}")
    return subnet

