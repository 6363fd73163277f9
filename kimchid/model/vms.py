"""Virtual machines: an in-memory view of libvirt's domains, kept current by libvirt's events.

Listing never walks libvirt: the view is read once when the connection opens
(again after libvirtd restarts) and then changed domain by domain as lifecycle
events arrive — including changes made with virsh or virt-manager.  Each change
becomes a ``vm.created`` / ``vm.state`` / ``vm.deleted`` event.
"""

from __future__ import annotations

import json
import threading
import xml.etree.ElementTree as ET
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger

from kimchi.errors import (
    InvalidOperation,
    NotFound,
    OperationFailed,
    ServiceUnavailable,
)
from kimchid.adapters.libvirt import LibvirtConnection
from kimchid.model.domainxml import LIBOSINFO_NS, METADATA_NS
from kimchid.model.events import EventHub
from kimchid.model.serial import has_serial_console

log = Logger()


# what `stats` says of a VM that does not run (kimchid.model.vmstats fills it in)
ZERO_STATS = {"cpu_utilization": 0.0, "mem_utilization": 0.0, "io_read": 0.0, "io_write": 0.0,
              "io_throughput": 0.0, "net_received": 0.0, "net_sent": 0.0,
              "net_throughput": 0.0}

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
        backing = d.find("backingStore/source")  # declared in the XML (kimchi's leaves)
        disks.append({"device": d.get("device", "disk"), "type": d.get("type"),
                      "path": path, "bus": target.get("bus") if target is not None else None,
                      "backing": backing.get("file") if backing is not None else None,
                      "dev": target.get("dev") if target is not None else None,
                      "pool": src.get("pool") if src is not None else None,
                      "volume": src.get("volume") if src is not None else None})
    networks = [src.get("network", "")
                for src in root.findall("./devices/interface[@type='network']/source")]
    users: list[str] = []
    groups: list[str] = []
    ns = f"{{{METADATA_NS}}}"
    meta = root.find(f"./metadata/{ns}vm")
    access = meta.find(f"{ns}access") if meta is not None else None
    if access is None:  # the first layout kimchi wrote
        access = root.find(f"./metadata/{ns}access")
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
        "serial_console": has_serial_console(root),
        "disks": disks,
        "networks": networks,
        "users": users,
        "groups": groups,
        "template": meta.findtext(f"{ns}template") if meta is not None else None,
        "title": (root.findtext("title") or ""),
        "description": (root.findtext("description") or ""),
        "screenshot": f"/vms/{name}/screenshot" if state_name == "running" else None,
        "stats": dict(ZERO_STATS),
        **read_settings(dom, root),
    }


def _family(machine: str | None) -> str:
    """q35 or pc (i440FX): the chipset of one of libvirt's machine names."""
    return "q35" if machine and "q35" in machine else "pc"


def _attr(el: ET.Element, child: str, name: str) -> str | None:
    found = el.find(child)
    return found.get(name) if found is not None else None


def read_settings(dom: Any, root: ET.Element) -> dict[str, Any]:
    """What ``PUT /vms/<name>`` changes besides memory, vCPUs and graphics, from the
    domain's XML (and its autostart flag, which libvirt keeps apart)."""
    os_el = root.find("os")
    os_type = root.find("os/type")
    loader = root.find("os/loader")
    uefi = os_el is not None and os_el.get("firmware") == "efi" or loader is not None and (
        loader.get("type") == "pflash" or "OVMF" in (loader.text or "")
        or "edk2" in (loader.text or ""))
    secure = root.find("os/firmware/feature[@name='secure-boot']")
    top = root.find("cpu/topology")
    topology = None
    if top is not None:
        topology = {k: int(top.get(k, "1")) for k in ("sockets", "cores", "threads")}
        topology["sockets"] *= int(top.get("dies", "1"))  # dies: kimchi writes 1
    osinfo = root.find(f"metadata/{{{LIBOSINFO_NS}}}libosinfo/{{{LIBOSINFO_NS}}}os")
    return {
        "autostart": bool(dom.autostart()),
        "boot": [b.get("dev", "") for b in root.findall("os/boot")],
        "bootmenu": root.find("os/bootmenu[@enable='yes']") is not None,
        "maxcpus": int(root.findtext("vcpu") or 1),
        "cpu_topology": topology,
        "machine": os_type.get("machine") if os_type is not None else None,
        "firmware": "uefi" if uefi else "bios",
        "secure_boot": bool(uefi) and (
            (secure is not None and secure.get("enabled") == "yes")
            or (loader is not None and loader.get("secure") == "yes")),
        "tpm": root.find("devices/tpm") is not None,
        "interfaces": [{"mac": _attr(i, "mac", "address"), "type": i.get("type"),
                        "network": _attr(i, "source", "network"),
                        "model": _attr(i, "model", "type")}
                       for i in root.findall("devices/interface")],
        "os": osinfo.get("id") if osinfo is not None else None,
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

    def __init__(self, libvirt: LibvirtConnection, events: EventHub,
                 host: str = "local") -> None:
        self.libvirt = libvirt
        self.events = events
        self.host = host  # the name of the host they run on, in every VM and event
        self._vms: dict[str, dict[str, Any]] = {}
        self._listing: bytes | None = None  # GET /vms, serialised once per change
        self._changes = threading.Condition()  # wakes wait_listed (a job's thread)
        self.loaded = False
        self._refreshing: dict[str, defer.Deferred[None]] = {}
        # events that came while every domain was being read: applied after that read,
        # which may have listed the domains before them
        self._reading = False
        self._during_read: list[tuple[str, str, str]] = []
        # (uuid, event) -> who waits to see that lifecycle event taken in (see expect)
        self._expected: dict[tuple[str, str], list[defer.Deferred[None]]] = {}
        # Reads of libvirt are numbered as they begin; each VM's view remembers the number
        # it comes from, and an answer older than that (a read that began before an action
        # and ended after it) is not taken in.
        self._reads = 0
        self._as_of: dict[str, int] = {}
        # libvirt away: anything may change meanwhile (a restart forgets the test driver's
        # VMs), so the view is not shown again until it has been read again
        self._outages = 0
        self._read_after = 0  # the outages the view was read after
        libvirt.connect_listeners.append(self._connected)
        libvirt.down_listeners.append(self._disconnected)
        libvirt.domain_listeners.append(self._domain_event)

    # -- reading ------------------------------------------------------------------

    @property
    def vms(self) -> dict[str, dict[str, Any]]:
        return self._vms

    @vms.setter
    def vms(self, value: dict[str, dict[str, Any]]) -> None:
        self._vms = value
        self.changed()

    def changed(self) -> None:
        self._listing = None
        with self._changes:
            self._changes.notify_all()

    def list(self) -> list[dict[str, Any]]:
        self._check()
        return sorted(self._vms.values(), key=lambda v: v["name"])

    def listing_json(self) -> bytes:
        """The whole list as JSON, made again only after a change (1,000 VMs: ~10 ms)."""
        self._check()
        if self._listing is None:
            self._listing = json.dumps(self.list(), separators=(",", ":")).encode()
        return self._listing

    def get(self, name: str) -> dict[str, Any]:
        self._check()
        for vm in self.vms.values():
            if vm["name"] == name:
                return vm
        raise NotFound("KCHVM0002E", name=name)

    def has(self, name: str) -> bool:
        """Whether a VM of that name is known (False while the view is not current)."""
        if not self.loaded or not self.libvirt.up:
            return False
        return any(vm["name"] == name for vm in self._vms.values())

    def wait_listed(self, uuid: str, timeout: float = 5.0, state: str | None = None) -> None:
        """Block (a job's thread, never the reactor) until libvirt's event has put the VM
        in the view (in ``state``, if given), so whoever follows the task can GET it as it
        is when the task ends."""
        with self._changes:
            self._changes.wait_for(lambda: uuid in self._vms and (
                state is None or self._vms[uuid]["state"] == state), timeout)

    def reading(self) -> int:
        """Number a read of libvirt about to begin (reactor thread), for :meth:`apply`."""
        self._reads += 1
        return self._reads

    def _current(self, uuid: str, read: int) -> bool:
        """Whether the read numbered ``read`` is no older than what the view holds of
        ``uuid``; if so, the view now holds it."""
        if read < self._as_of.get(uuid, 0):
            return False
        self._as_of[uuid] = read
        return True

    def _check(self) -> None:
        if not self.loaded or self._read_after < self._outages or not self.libvirt.up:
            raise ServiceUnavailable("KCHSVC0002E", error=self.libvirt.error)

    # -- keeping it current -----------------------------------------------------------

    def _disconnected(self, error: str) -> None:
        self._outages += 1

    def _connected(self) -> None:
        d = defer.Deferred.fromCoroutine(self.resync())
        d.addErrback(lambda f: log.warn("reading the VMs failed: {e}", e=f.getErrorMessage()))

    async def resync(self) -> None:
        """Read every domain again; report what changed while we were not listening."""
        self._reading = True
        outages = self._outages
        read = self.reading()
        try:
            fresh = await self.libvirt.run(_read_all)
            for vm in fresh.values():
                vm["host"] = self.host
            for uuid in self.vms.keys() | fresh.keys():
                if not self._current(uuid, read):  # an action's answer came meanwhile
                    if uuid in self.vms:
                        fresh[uuid] = self.vms[uuid]
                    else:
                        fresh.pop(uuid, None)
            if self.loaded:
                for uuid in self.vms.keys() - fresh.keys():
                    await self.events.publish("vm.deleted", {"name": self.vms[uuid]["name"],
                                                             "uuid": uuid, "host": self.host})
                for uuid, vm in fresh.items():
                    old = self.vms.get(uuid)
                    if old is None:
                        await self.events.publish("vm.created", vm)
                    elif old["state"] != vm["state"]:
                        await self.events.publish("vm.state", self._state_data(vm, old["state"]))
            self.vms = fresh
            self.loaded = True
            self._read_after = outages
        finally:
            self._reading = False
        log.info("{n} virtual machines known", n=len(fresh))
        missed, self._during_read = self._during_read, []
        for uuid, name, event in missed:
            self._domain_event(uuid, name, event)

    def expect(self, uuid: str, event: str) -> defer.Deferred[None]:
        """Fires once libvirt's lifecycle ``event`` of that domain has been taken in.

        An action waits for the event it causes before it answers: libvirt may deliver
        that event after the call's reply, and taken in later it would say a state
        older than the action's (a "stopped" arriving after the next "start").
        """
        key = (uuid, event)

        def cancel(d: defer.Deferred[None]) -> None:
            waiting = self._expected.get(key, [])
            if d in waiting:
                waiting.remove(d)
            if not waiting:
                self._expected.pop(key, None)

        d: defer.Deferred[None] = defer.Deferred(cancel)
        self._expected.setdefault(key, []).append(d)
        return d

    def _domain_event(self, uuid: str, name: str, event: str) -> None:
        # Events of one domain are applied in order: chain each refresh after the last.
        prev = self._refreshing.get(uuid)
        if prev is None:
            prev = self._say_state(uuid, event)
        d = defer.Deferred.fromCoroutine(self._refresh(uuid, name, event, prev))
        self._refreshing[uuid] = d

        def done(result: object) -> object:
            if self._refreshing.get(uuid) is d:
                del self._refreshing[uuid]
            return result

        d.addBoth(done)
        d.addErrback(lambda f: log.warn("VM {name}: {e}", name=name, e=f.getErrorMessage()))
        for waiter in self._expected.pop((uuid, event), []):
            waiter.callback(None)

    def _say_state(self, uuid: str, event: str) -> defer.Deferred[None] | None:
        """A known VM's new state, said at once from the event itself (started, stopped,
        ...) when nothing about it is in flight: the read that follows fills in the rest,
        and says it again only if libvirt's answer differs."""
        old = self._vms.get(uuid)
        said = EVENT_STATES.get(event)
        if old is None or not said or said == old["state"] or not self.loaded or self._reading:
            return None
        self._vms[uuid] = {**old, "state": said}
        self.changed()
        return defer.Deferred.fromCoroutine(
            self.events.publish("vm.state", self._state_data(self._vms[uuid], old["state"])))

    async def _refresh(self, uuid: str, name: str, event: str,
                       prev: defer.Deferred[None] | None) -> None:
        if prev is not None:
            try:
                await prev
            except Exception:
                pass
        if not self.loaded or self._reading:
            self._during_read.append((uuid, name, event))  # applied once the read is in
            return
        read = self.reading()
        vm = await self.libvirt.run(lambda conn: _read_one(conn, uuid))
        if vm is not None:
            await self.apply(vm, read)
            return
        if self._current(uuid, read):
            old = self.vms.get(uuid)
            if old is not None:
                # Gone before we could read it (destroyed then undefined at once): still
                # tell what the event said before saying it is gone.
                said = EVENT_STATES.get(event)
                if said and said != old["state"]:
                    await self.events.publish("vm.state", self._state_data({**old, "state": said},
                                                                  old["state"]))
                del self.vms[uuid]
                self.changed()
                await self.events.publish("vm.deleted", {"name": old["name"], "uuid": uuid,
                                                         "host": self.host})

    async def apply(self, vm: dict[str, Any], read: int) -> None:
        """Take a VM read by the read numbered ``read`` (:meth:`reading`) into the view,
        unless the view holds a newer read of it; say what changed (once, whoever reads it)."""
        vm["host"] = self.host  # in the caller's answer too
        if not self._current(vm["uuid"], read):
            return
        old = self.vms.get(vm["uuid"])
        if old is not None and vm["state"] == "running":
            vm["stats"] = old.get("stats", vm["stats"])  # until the next sample
        self.vms[vm["uuid"]] = vm
        self.changed()
        if old is None:
            await self.events.publish("vm.created", vm)
            return
        if old["state"] != vm["state"]:
            await self.events.publish("vm.state", self._state_data(vm, old["state"]))
        if any(old.get(k) != vm.get(k) for k in _DESCRIPTIVE):
            data = {**vm, "previous": old["name"]} if old["name"] != vm["name"] else vm
            await self.events.publish("vm.updated", data)

    async def forget(self, uuid: str) -> None:
        """A VM is gone (deleted here): drop it and say so, once."""
        self._as_of[uuid] = self.reading()  # a read begun before brings it back no more
        old = self.vms.pop(uuid, None)
        self.changed()
        if old is not None:
            await self.events.publish("vm.deleted", {"name": old["name"], "uuid": uuid,
                                                     "host": self.host})

    def _state_data(self, vm: dict[str, Any], previous: str) -> dict[str, Any]:
        return {"name": vm["name"], "uuid": vm["uuid"], "state": vm["state"],
                "previous": previous, "host": self.host}



# what a vm.updated event is about (state changes are vm.state)
_DESCRIPTIVE = ("name", "cpus", "memory", "graphics", "users", "groups", "disks", "networks",
                "title", "description", "autostart", "boot", "bootmenu", "maxcpus",
                "cpu_topology", "machine", "firmware", "secure_boot", "tpm", "interfaces")

# what PUT /vms/<name> changes in the persistent definition, only when the VM is shut off
_SHUT_OFF_ONLY = ("memory", "cpus", "graphics", "boot", "bootmenu", "cpu_topology",
                  "nic_model", "machine", "firmware", "secure_boot", "tpm")

# the lifecycle event each of those calls causes (reset causes none, and a guest's
# shutdown comes whenever the guest is done), and how long an action waits for it
ACTION_EVENTS = {"create": "started", "destroy": "stopped", "suspend": "suspended",
                 "resume": "resumed"}
EVENT_WAIT = 5.0

# action -> (states it is allowed in, what it does to the domain)
ACTIONS: dict[str, tuple[frozenset[str], str]] = {
    "start": (frozenset({"shutoff", "crashed"}), "create"),
    "poweroff": (frozenset({"running", "paused", "blocked", "pmsuspended", "shutdown",
                            "crashed"}), "destroy"),
    "shutdown": (frozenset({"running"}), "shutdown"),
    "reset": (frozenset({"running"}), "reset"),
    "suspend": (frozenset({"running"}), "suspend"),
    "resume": (frozenset({"paused"}), "resume"),
}


def _act(conn: Any, uuid: str, method: str) -> dict[str, Any]:
    dom = conn.lookupByUUIDString(uuid)
    if method == "reset":
        dom.reset(0)
    else:
        getattr(dom, method)()
    return read_domain(dom)


def _undefine(dom: Any) -> None:
    """Undefine a shut-off domain with its snapshots, managed save and NVRAM.

    The snapshots' metadata goes with the domain; their data lives in the disks
    (qcow2 internal snapshots), deleted next.  Drivers refuse flags they do not
    know (the test driver: NVRAM), so fewer are tried, and without any the
    snapshots are dropped one by one first: a plain undefine refuses a domain
    that has snapshots.
    """
    import libvirt

    refused = (libvirt.VIR_ERR_INVALID_ARG, libvirt.VIR_ERR_NO_SUPPORT)
    snapshots = libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
    managed_save = libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
    for flags in (managed_save | snapshots | libvirt.VIR_DOMAIN_UNDEFINE_NVRAM,
                  managed_save | snapshots, snapshots):
        try:
            dom.undefineFlags(flags)
            return
        except libvirt.libvirtError as e:
            if e.get_error_code() not in refused:
                raise
    for snap in dom.listAllSnapshots(0):
        try:
            snap.delete(libvirt.VIR_DOMAIN_SNAPSHOT_DELETE_METADATA_ONLY)
        except libvirt.libvirtError:
            snap.delete(0)
    dom.undefine()


def _delete(conn: Any, uuid: str) -> list[str]:
    """Stop (if needed) and undefine a domain, then delete its disks' volumes.

    Only disks (never CD-ROMs), and never the LUNs of iSCSI/SCSI pools, which belong
    to the storage, not the VM.  Returns the paths deleted.
    """
    import libvirt

    dom = conn.lookupByUUIDString(uuid)
    vm = read_domain(dom)
    ns = f"{{{METADATA_NS}}}"
    cidata = ET.fromstring(dom.XMLDesc(0)).findtext(f"./metadata/{ns}vm/{ns}cidata")
    if dom.isActive():
        dom.destroy()
    _undefine(dom)
    deleted = []
    paths = [d["path"] for d in vm["disks"] if d["device"] == "disk" and d["path"]]
    for path in paths + ([cidata] if cidata else []):  # its cloud-init seed goes too
        try:
            vol = conn.storageVolLookupByPath(path)
            pool_type = ET.fromstring(vol.storagePoolLookupByVolume().XMLDesc(0)).get("type")
            if pool_type in ("iscsi", "scsi", "iscsi-direct"):
                continue
            vol.delete(0)
            deleted.append(path)
        except libvirt.libvirtError as e:
            log.warn("VM {name}: disk {path} not deleted: {e}", name=vm["name"],
                     path=path, e=str(e))
    return deleted


class VmActions:
    """Lifecycle actions and deletion, one at a time per VM."""

    def __init__(self, inventory: VmInventory) -> None:
        self.inventory = inventory
        self._locks: dict[str, defer.DeferredLock] = {}

    def _lock(self, uuid: str) -> defer.DeferredLock:
        return self._locks.setdefault(uuid, defer.DeferredLock())

    async def act(self, name: str, action: str) -> dict[str, Any]:
        vm = self.inventory.get(name)
        allowed, method = ACTIONS[action]
        lock = self._lock(vm["uuid"])
        await lock.acquire()
        try:
            vm = self.inventory.get(name)
            if vm["state"] not in allowed:
                raise InvalidOperation("KCHVM0010E", action=action, name=name, state=vm["state"])
            caused = ACTION_EVENTS.get(method)
            seen = (self.inventory.expect(vm["uuid"], caused)
                    if caused and self.inventory.libvirt.lifecycle_events else None)
            read = self.inventory.reading()
            try:
                fresh = await self._call(vm, action, method)
            except BaseException:
                if seen is not None:
                    seen.addErrback(lambda f: f.trap(defer.CancelledError))
                    seen.cancel()
                raise
            if seen is not None:
                seen.addTimeout(EVENT_WAIT, self.inventory.libvirt.reactor)
                try:
                    await seen
                except defer.TimeoutError:
                    log.warn("VM {name}: no {event} event from libvirt {s} s after {action}",
                             name=name, event=caused, s=EVENT_WAIT, action=action)
            await self.inventory.apply(fresh, read)
            return fresh
        finally:
            lock.release()

    async def _call(self, vm: dict[str, Any], action: str, method: str) -> dict[str, Any]:
        """Do ``method`` to the domain; libvirt's refusals as the API's errors."""
        import libvirt

        name = vm["name"]
        try:
            return await self.inventory.libvirt.run(lambda c: _act(c, vm["uuid"], method))
        except libvirt.libvirtError as e:
            if e.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:  # gone, not yet re-read
                await self.inventory.forget(vm["uuid"])
                raise NotFound("KCHVM0002E", name=name) from None
            if e.get_error_code() == libvirt.VIR_ERR_OPERATION_INVALID:
                # its state changed meanwhile (another client, libvirtd restarted): the
                # state libvirt has now, and a refusal that names it
                read = self.inventory.reading()
                fresh = await self.inventory.libvirt.run(
                    lambda c: read_domain(c.lookupByUUIDString(vm["uuid"])))
                await self.inventory.apply(fresh, read)
                raise InvalidOperation("KCHVM0010E", action=action, name=name,
                                       state=fresh["state"]) from None
            raise OperationFailed("KCHVM0011E", action=action, name=name,
                                  error=e.get_error_message()) from None

    async def update(self, name: str, changes: dict[str, Any]) -> dict[str, Any]:
        """Rename (shut off only), memory, cpus, graphics (shut off), users and groups."""
        import libvirt

        vm = self.inventory.get(name)
        lock = self._lock(vm["uuid"])
        await lock.acquire()
        try:
            read = self.inventory.reading()
            try:
                fresh = await self.inventory.libvirt.run(
                    lambda c: _update(c, vm["uuid"], changes))
            except libvirt.libvirtError as e:
                raise OperationFailed("KCHVM0011E", action="change", name=name,
                                      error=e.get_error_message()) from None
            await self.inventory.apply(fresh, read)
            return fresh
        finally:
            lock.release()

    async def delete(self, name: str) -> list[str]:
        import libvirt

        vm = self.inventory.get(name)
        lock = self._lock(vm["uuid"])
        await lock.acquire()
        try:
            try:
                deleted = await self.inventory.libvirt.run(lambda c: _delete(c, vm["uuid"]))
                await self.inventory.forget(vm["uuid"])
                return deleted
            except libvirt.libvirtError as e:
                raise OperationFailed("KCHVM0011E", action="delete", name=name,
                                      error=e.get_error_message()) from None
        finally:
            lock.release()
            self._locks.pop(vm["uuid"], None)


def _update(conn: Any, uuid: str, changes: dict[str, Any]) -> dict[str, Any]:
    """Apply a PUT to the domain's persistent definition (blocking: libvirt thread)."""
    import libvirt

    dom = conn.lookupByUUIDString(uuid)
    state = STATES[dom.info()[0]]
    name = dom.name()
    shut = state == "shutoff"
    for field in _SHUT_OFF_ONLY:
        if field in changes and not shut:
            raise InvalidOperation("KCHVM0014E", field=field, name=name, state=state)
    new = changes.get("name")
    if new and new != name and not shut:
        raise InvalidOperation("KCHVM0013E", name=name, state=state)
    if new and new != name:
        try:
            conn.lookupByName(new)
            raise InvalidOperation("KCHVM0001E", name=new)
        except libvirt.libvirtError:
            pass
    if any(f in changes for f in _SHUT_OFF_ONLY):
        root = ET.fromstring(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
        _edit_definition(root, changes)
        _edit_settings(root, changes, name)
        conn.defineXML(ET.tostring(root, encoding="unicode"))
    if "users" in changes or "groups" in changes:
        _edit_access(dom, changes)
    if new and new != name:
        dom.rename(new, 0)
    if "autostart" in changes:  # kept by libvirt beside the definition: any state
        conn.lookupByUUIDString(uuid).setAutostart(int(bool(changes["autostart"])))
    return read_domain(conn.lookupByUUIDString(uuid))


def _edit_definition(root: ET.Element, changes: dict[str, Any]) -> None:
    mem = changes.get("memory")
    if mem:
        max_el, cur_el = root.find("memory"), root.find("currentMemory")
        assert max_el is not None
        kib = {"KiB": 1, "k": 1, "MiB": 1024, "M": 1024, "GiB": 1 << 20, "G": 1 << 20}
        old_max = int(max_el.text or 0) * kib.get(max_el.get("unit", "KiB"), 1) // 1024
        current = int(mem.get("current", 0)) or None
        maximum = int(mem.get("maxmemory", 0)) or max(old_max, current or 0)
        current = current or min(maximum, old_max)
        if current > maximum:
            raise InvalidOperation("KCHVM0015E", field="memory", value=current, maximum=maximum)
        max_el.text, max_el.attrib = str(maximum), {"unit": "MiB"}
        if cur_el is None:
            cur_el = ET.SubElement(root, "currentMemory")
        cur_el.text, cur_el.attrib = str(current), {"unit": "MiB"}
    if "cpus" in changes:
        vcpu = root.find("vcpu")
        if vcpu is None:
            vcpu = ET.SubElement(root, "vcpu")
        cpus = int(changes["cpus"])
        maxcpus = int(changes.get("maxcpus") or max(int(vcpu.text or 1), cpus))
        if cpus > maxcpus:
            raise InvalidOperation("KCHVM0015E", field="cpus", value=cpus, maximum=maxcpus)
        vcpu.text = str(maxcpus)
        vcpu.set("current", str(cpus))
    g = changes.get("graphics")
    if g:
        devices = root.find("devices")
        assert devices is not None
        el = devices.find("graphics")
        if el is None:
            el = ET.SubElement(devices, "graphics", autoport="yes")
        if "type" in g:
            el.set("type", g["type"])
        if "listen" in g:
            el.set("listen", g["listen"])
            for sub in el.findall("listen"):
                el.remove(sub)
            ET.SubElement(el, "listen", type="address", address=g["listen"])


def _edit_settings(root: ET.Element, changes: dict[str, Any], name: str) -> None:
    """Boot order and menu, CPU topology, NIC models, machine, firmware and TPM, in the
    domain's XML (after :func:`_edit_definition`: the topology is checked against the
    maximum vCPUs this request leaves)."""
    os_el = root.find("os")
    devices = root.find("devices")
    assert os_el is not None and devices is not None
    _edit_topology(root, changes)
    if "boot" in changes:
        for el in os_el.findall("boot"):
            os_el.remove(el)
        for dev in devices:  # per-device <boot order>: libvirt refuses both kinds at once
            for el in dev.findall("boot"):
                dev.remove(el)
        for dev_name in changes["boot"]:
            ET.SubElement(os_el, "boot", dev=dev_name)
    if "bootmenu" in changes:
        for el in os_el.findall("bootmenu"):
            os_el.remove(el)
        ET.SubElement(os_el, "bootmenu", enable="yes" if changes["bootmenu"] else "no")
    if "nic_model" in changes:
        _edit_nic_models(devices, changes["nic_model"], name)
    os_type = os_el.find("type")
    machine = os_type.get("machine") if os_type is not None else None
    if changes.get("machine") and os_type is not None:
        if _family(machine) != _family(changes["machine"]) and machine:
            raise InvalidOperation("KCHVM0055E", name=name, old=_family(machine),
                                   new=_family(changes["machine"]))
        os_type.set("machine", changes["machine"])
        machine = changes["machine"]
    if "firmware" in changes or "secure_boot" in changes:
        _edit_firmware(root, os_el, changes, name, machine)
    if "tpm" in changes:
        for el in devices.findall("tpm"):
            devices.remove(el)
        if changes["tpm"]:
            tpm = ET.SubElement(devices, "tpm", model="tpm-crb")
            ET.SubElement(tpm, "backend", type="emulator", version="2.0")


def _edit_topology(root: ET.Element, changes: dict[str, Any]) -> None:
    """The topology asked for (null: libvirt's), which with the one kept must make the
    maximum vCPUs."""
    touched = "cpu_topology" in changes or "cpus" in changes or "maxcpus" in changes
    if not touched:
        return
    cpu = root.find("cpu")
    top = cpu.find("topology") if cpu is not None else None
    if "cpu_topology" in changes:
        if top is not None and cpu is not None:
            cpu.remove(top)
            top = None
        if cpu is not None and not len(cpu) and not cpu.attrib:
            root.remove(cpu)  # nothing else said: as if never there
            cpu = None
        want = changes["cpu_topology"]
        if want:
            if cpu is None:
                cpu = ET.SubElement(root, "cpu")
            top = ET.SubElement(cpu, "topology", sockets=str(want["sockets"]), dies="1",
                                cores=str(want["cores"]), threads=str(want["threads"]))
    if top is None:
        return
    maxcpus = int(root.findtext("vcpu") or 1)
    parts = {k: int(top.get(k, "1")) for k in ("sockets", "dies", "cores", "threads")}
    product = parts["sockets"] * parts["dies"] * parts["cores"] * parts["threads"]
    if product != maxcpus:
        raise InvalidOperation("KCHVM0053E", sockets=parts["sockets"] * parts["dies"],
                               cores=parts["cores"], threads=parts["threads"],
                               product=product, maxcpus=maxcpus)


def _edit_nic_models(devices: ET.Element, want: str | dict[str, str], name: str) -> None:
    ifaces = devices.findall("interface")
    by_mac = {}
    for iface in ifaces:
        mac_el = iface.find("mac")
        if mac_el is not None:
            by_mac[mac_el.get("address", "").lower()] = iface
    if isinstance(want, str):
        chosen = [(iface, want) for iface in ifaces]
    else:
        chosen = []
        for mac, model in want.items():
            if mac.lower() not in by_mac:
                raise NotFound("KCHVMIFACE0001E", mac=mac, name=name)
            chosen.append((by_mac[mac.lower()], model))
    for iface, model in chosen:
        el = iface.find("model")
        if el is None:
            el = ET.SubElement(iface, "model")
        if el.get("type") == model:
            continue
        el.set("type", model)
        # another model may need another kind of slot (rtl8139 is PCI, not PCI Express):
        # libvirt gives it one
        for addr in iface.findall("address"):
            iface.remove(addr)


def _edit_firmware(root: ET.Element, os_el: ET.Element, changes: dict[str, Any], name: str,
                   machine: str | None) -> None:
    """BIOS, or UEFI through libvirt's firmware auto-selection (as a new VM gets it: see
    domainxml._firmware); the loader and NVRAM libvirt picked before are dropped, so that
    it picks again for what is asked."""
    current = read_settings(_NoAutostart(), root)
    firmware = changes.get("firmware", current["firmware"])
    secure = bool(changes.get("secure_boot", current["secure_boot"])) and firmware == "uefi"
    if changes.get("secure_boot") and (firmware != "uefi" or _family(machine) != "q35"):
        raise InvalidOperation("KCHVM0054E", name=name, firmware=firmware,
                               machine=machine or "pc")
    for tag in ("firmware", "loader", "nvram"):
        for el in os_el.findall(tag):
            os_el.remove(el)
    os_el.attrib.pop("firmware", None)
    if firmware == "uefi":
        os_el.set("firmware", "efi")
        flag = "yes" if secure else "no"
        fw = ET.Element("firmware")
        ET.SubElement(fw, "feature", enabled=flag, name="enrolled-keys")
        ET.SubElement(fw, "feature", enabled=flag, name="secure-boot")
        os_el.insert(1, fw)
        if secure:  # libvirt refuses <loader secure='no'> beside auto-selection
            os_el.insert(2, ET.Element("loader", secure="yes"))
    if secure:
        feats = root.find("features")
        if feats is None:
            feats = ET.SubElement(root, "features")
        smm = feats.find("smm")
        if smm is None:
            smm = ET.SubElement(feats, "smm")
        smm.set("state", "on")


class _NoAutostart:
    """A stand-in domain for reading settings from XML alone."""

    @staticmethod
    def autostart() -> int:
        return 0


def _edit_access(dom: Any, changes: dict[str, Any]) -> None:
    """Who may use the VM (issue 5): kept in kimchi's metadata element of the domain."""
    import libvirt

    ns = f"{{{METADATA_NS}}}"
    # read from the domain XML: virDomainGetMetadata drops the namespace of the children
    root = ET.fromstring(dom.XMLDesc(0))
    meta = root.find(f"./metadata/{ns}vm")
    if meta is None:
        meta = ET.Element(f"{ns}vm")
        first = root.find(f"./metadata/{ns}access")  # the first layout: <access> alone
        if first is not None:
            meta.append(first)
    access = meta.find(f"{ns}access")
    if access is None:
        access = ET.SubElement(meta, f"{ns}access")
    for field, tag in (("users", "user"), ("groups", "group")):
        if field in changes:
            for el in access.findall(f"{ns}{tag}"):
                access.remove(el)
            for value in changes[field]:
                ET.SubElement(access, f"{ns}{tag}").text = value
    flags = libvirt.VIR_DOMAIN_AFFECT_CONFIG
    if dom.isActive():
        flags |= libvirt.VIR_DOMAIN_AFFECT_LIVE
    # libvirt puts the element in the namespace itself: give it in the default namespace
    text = ET.tostring(meta, encoding="unicode", default_namespace=METADATA_NS)
    dom.setMetadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, text, "kimchi", METADATA_NS, flags)


THUMBNAIL = (320, 240)


def _screenshot(conn: Any, uuid: str) -> bytes:
    """The VM's screen as a PNG thumbnail, its aspect ratio kept (blocking: libvirt thread)."""
    import io

    from PIL import Image

    dom = conn.lookupByUUIDString(uuid)
    stream = conn.newStream(0)
    try:
        dom.screenshot(stream, 0, 0)  # PPM from QEMU, PNG from the test driver
        chunks = []
        while True:
            chunk = stream.recv(1 << 18)
            if not chunk:
                break
            chunks.append(chunk)
        stream.finish()
    except Exception:
        stream.abort()
        raise
    img = Image.open(io.BytesIO(b"".join(chunks)))
    img.thumbnail(THUMBNAIL)
    out = io.BytesIO()
    img.convert("RGB").save(out, "PNG")
    return out.getvalue()


class Screenshots:
    """Thumbnails of running VMs, each taken at most every few seconds whoever asks."""

    def __init__(self, clock: Any, max_age: float = 3.0) -> None:
        self.clock = clock
        self.max_age = max_age
        self._cache: dict[str, tuple[float, bytes]] = {}
        self._locks: dict[str, defer.DeferredLock] = {}

    async def get(self, inventory: VmInventory, name: str) -> bytes:
        """A thumbnail of the VM ``name`` of ``inventory`` (a host's VMs)."""
        import libvirt

        vm = inventory.get(name)
        if vm["state"] != "running":
            raise NotFound("KCHVM0012E", name=name)
        uuid = vm["uuid"]
        lock = self._locks.setdefault(uuid, defer.DeferredLock())
        await lock.acquire()  # one screenshot at a time per VM; the others get that one
        try:
            hit = self._cache.get(uuid)
            if hit and self.clock.seconds() - hit[0] < self.max_age:
                return hit[1]
            try:
                png = await inventory.libvirt.run(lambda c: _screenshot(c, uuid))
            except libvirt.libvirtError as e:
                if e.get_error_code() in (libvirt.VIR_ERR_NO_DOMAIN,
                                          libvirt.VIR_ERR_OPERATION_INVALID):
                    # stopped, or gone to another host, since it was listed as running
                    raise NotFound("KCHVM0012E", name=name) from None
                raise OperationFailed("KCHVM0011E", action="take a screenshot of", name=name,
                                      error=e.get_error_message()) from None
            self._cache[uuid] = (self.clock.seconds(), png)
            return png
        finally:
            lock.release()
