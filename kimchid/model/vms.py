"""Virtual machines: an in-memory view of libvirt's domains, kept current by libvirt's events.

Listing never walks libvirt: the view is read once when the connection opens
(again after libvirtd restarts) and then changed domain by domain as lifecycle
events arrive — including changes made with virsh or virt-manager.  Each change
becomes a ``vm.created`` / ``vm.state`` / ``vm.deleted`` event.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger

from kimchid.adapters.libvirt import LibvirtConnection
from kimchid.errors import NotFound, ServiceUnavailable
from kimchid.model.events import EventHub

log = Logger()

#: kimchi's own data about a VM lives in the domain XML, under this namespace.
METADATA_NS = "urn:kimchi:vm:1"

# virDomainState numbers, named as Kimchi's API names them
STATES = ("nostate", "running", "blocked", "paused", "shutdown", "shutoff", "crashed",
          "pmsuspended")

# the state a lifecycle event leaves a domain in
EVENT_STATES = {"started": "running", "suspended": "paused", "resumed": "running",
                "stopped": "shutoff", "crashed": "crashed", "pmsuspended": "pmsuspended"}


def read_domain(dom: Any) -> dict[str, Any]:
    """A VM's representation from its libvirt domain (blocking: the libvirt thread)."""
    state, max_kib, mem_kib, vcpus, _cpu_time = dom.info()
    root = ET.fromstring(dom.XMLDesc(0))
    graphics = None
    g = root.find("./devices/graphics")
    if g is not None:
        port = g.get("port")
        graphics = {"type": g.get("type"), "listen": g.get("listen") or "127.0.0.1",
                    "port": int(port) if port and port.lstrip("-").isdigit() and int(port) > 0
                    else None}
    disks = []
    for d in root.findall("./devices/disk"):
        src = d.find("source")
        path = None
        if src is not None:
            path = src.get("file") or src.get("dev") or src.get("name")
        target = d.find("target")
        disks.append({"device": d.get("device", "disk"), "type": d.get("type"),
                      "path": path, "bus": target.get("bus") if target is not None else None,
                      "dev": target.get("dev") if target is not None else None,
                      "pool": src.get("pool") if src is not None else None,
                      "volume": src.get("volume") if src is not None else None})
    users: list[str] = []
    groups: list[str] = []
    access = root.find(f"./metadata/{{{METADATA_NS}}}access")
    if access is not None:
        users = [u.text or "" for u in access.findall(f"{{{METADATA_NS}}}user")]
        groups = [u.text or "" for u in access.findall(f"{{{METADATA_NS}}}group")]
    name = dom.name()
    state_name = STATES[state] if 0 <= state < len(STATES) else "nostate"
    return {
        "name": name,
        "uuid": dom.UUIDString(),
        "state": state_name,
        "persistent": bool(dom.isPersistent()),
        "cpus": vcpus,
        "memory": {"current": mem_kib // 1024, "maxmemory": max_kib // 1024},
        "graphics": graphics,
        "disks": disks,
        "users": users,
        "groups": groups,
        "title": (root.findtext("title") or ""),
        "description": (root.findtext("description") or ""),
        "screenshot": f"/vms/{name}/screenshot" if state_name == "running" else None,
    }


def _read_all(conn: Any) -> dict[str, dict[str, Any]]:
    out = {}
    for dom in conn.listAllDomains(0):
        try:
            vm = read_domain(dom)
        except Exception as e:  # gone between list and read, or odd XML: skip it, say so
            log.warn("cannot read domain {name}: {error}", name=dom.name(), error=str(e))
            continue
        out[vm["uuid"]] = vm
    return out


def _read_one(conn: Any, uuid: str) -> dict[str, Any] | None:
    import libvirt

    try:
        return read_domain(conn.lookupByUUIDString(uuid))
    except libvirt.libvirtError as e:
        if e.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
            return None
        raise


class VmInventory:
    """The VMs as the daemon knows them, by UUID."""

    def __init__(self, libvirt: LibvirtConnection, events: EventHub) -> None:
        self.libvirt = libvirt
        self.events = events
        self.vms: dict[str, dict[str, Any]] = {}
        self.loaded = False
        self._refreshing: dict[str, defer.Deferred[None]] = {}
        libvirt.connect_listeners.append(self._connected)
        libvirt.domain_listeners.append(self._domain_event)

    # -- reading ------------------------------------------------------------------

    def list(self) -> list[dict[str, Any]]:
        self._check()
        return sorted(self.vms.values(), key=lambda v: v["name"])

    def get(self, name: str) -> dict[str, Any]:
        self._check()
        for vm in self.vms.values():
            if vm["name"] == name:
                return vm
        raise NotFound("KCHVM0002E", name=name)

    def _check(self) -> None:
        if not self.loaded:
            raise ServiceUnavailable("KCHSVC0002E", error=self.libvirt.error)

    # -- keeping it current -----------------------------------------------------------

    def _connected(self) -> None:
        d = defer.Deferred.fromCoroutine(self.resync())
        d.addErrback(lambda f: log.warn("reading the VMs failed: {e}", e=f.getErrorMessage()))

    async def resync(self) -> None:
        """Read every domain again; report what changed while we were not listening."""
        fresh = await self.libvirt.run(_read_all)
        if self.loaded:
            for uuid in self.vms.keys() - fresh.keys():
                await self._emit("vm.deleted", {"name": self.vms[uuid]["name"], "uuid": uuid})
            for uuid, vm in fresh.items():
                old = self.vms.get(uuid)
                if old is None:
                    await self._emit("vm.created", vm)
                elif old["state"] != vm["state"]:
                    await self._emit("vm.state", self._state_data(vm, old["state"]))
        self.vms = fresh
        self.loaded = True
        log.info("{n} virtual machines known", n=len(fresh))

    def _domain_event(self, uuid: str, name: str, event: str) -> None:
        # Events of one domain are applied in order: chain each refresh after the last.
        prev = self._refreshing.get(uuid)
        d = defer.Deferred.fromCoroutine(self._refresh(uuid, name, event, prev))
        self._refreshing[uuid] = d

        def done(result: object) -> object:
            if self._refreshing.get(uuid) is d:
                del self._refreshing[uuid]
            return result

        d.addBoth(done)
        d.addErrback(lambda f: log.warn("VM {name}: {e}", name=name, e=f.getErrorMessage()))

    async def _refresh(self, uuid: str, name: str, event: str,
                       prev: defer.Deferred[None] | None) -> None:
        if prev is not None:
            try:
                await prev
            except Exception:
                pass
        if not self.loaded:
            return  # the first full read will see it
        vm = await self.libvirt.run(lambda conn: _read_one(conn, uuid))
        old = self.vms.get(uuid)
        if vm is None:
            if old is not None:
                # Gone before we could read it (destroyed then undefined at once): still
                # tell what the event said before saying it is gone.
                said = EVENT_STATES.get(event)
                if said and said != old["state"]:
                    await self._emit("vm.state", self._state_data({**old, "state": said},
                                                                  old["state"]))
                del self.vms[uuid]
                await self._emit("vm.deleted", {"name": old["name"], "uuid": uuid})
            return
        self.vms[uuid] = vm
        if old is None:
            await self._emit("vm.created", vm)
        elif old["state"] != vm["state"]:
            await self._emit("vm.state", self._state_data(vm, old["state"]))

    @staticmethod
    def _state_data(vm: dict[str, Any], previous: str) -> dict[str, Any]:
        return {"name": vm["name"], "uuid": vm["uuid"], "state": vm["state"],
                "previous": previous}

    async def _emit(self, etype: str, data: dict[str, Any]) -> None:
        try:
            await self.events.emit(etype, data)
        except Exception as e:  # Redis away: the view stays right, the event is lost
            log.warn("cannot publish {type}: {e}", type=etype, e=str(e))
