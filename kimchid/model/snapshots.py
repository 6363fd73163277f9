"""VM snapshots: libvirt's internal snapshots (disks, and the memory of a running VM).

Each host has its own :class:`Snapshots` (``Host.snapshots``).  Taking one may take a
while (a running VM's memory is written out), so it is a ``vm.snapshot`` task run by
the daemon's own job runner, like ``vm.create``: a libvirt call on the connection the
daemon holds to the VM's host.  A second attempt after a crash finds the snapshot
already taken and finishes with it.  Listing, reverting and deleting are quick and
answered directly.
"""

from __future__ import annotations

import datetime
import re
import xml.etree.ElementTree as ET
from typing import Any

from twisted.internet.defer import Deferred

from kimchi.bus.context import JobContext
from kimchi.bus.text import TaskText
from kimchi.errors import InvalidOperation, InvalidRequest, KimchiError, NotFound
from kimchid.model.libvirtobjects import LibvirtObjects, lv, why

KIND = "vm.snapshot"
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def snapshot_info(snap: Any) -> dict[str, Any]:
    root = ET.fromstring(snap.getXMLDesc(0))
    created = int(root.findtext("creationTime") or 0)
    return {
        "name": snap.getName(),
        "created": datetime.datetime.fromtimestamp(created, datetime.UTC).isoformat()
        .replace("+00:00", "Z"),
        "state": root.findtext("state") or "",  # the VM's state when it was taken
        "parent": root.findtext("parent/name") or "",
        "description": root.findtext("description") or "",
        "current": bool(snap.isCurrent(0)),
    }


def snapshot_xml(name: str, description: str) -> str:
    root = ET.Element("domainsnapshot")
    ET.SubElement(root, "name").text = name
    if description:
        ET.SubElement(root, "description").text = description
    return ET.tostring(root, encoding="unicode")


class Snapshots(LibvirtObjects):
    """One host's VM snapshots."""

    def _dom(self, conn: Any, vm: str) -> Any:
        try:
            return conn.lookupByName(vm)
        except lv().libvirtError:
            raise NotFound("KCHVM0002E", name=vm) from None

    def _snap(self, conn: Any, vm: str, name: str) -> Any:
        dom = self._dom(conn, vm)
        try:
            return dom.snapshotLookupByName(name, 0)
        except lv().libvirtError:
            raise NotFound("KCHSNAP0002E", name=name, vm=vm) from None

    async def list(self, vm: str) -> list[dict[str, Any]]:
        snaps = await self._run(
            lambda c: [snapshot_info(s) for s in self._dom(c, vm).listAllSnapshots(0)])
        parent = {s["name"]: s["parent"] for s in snaps}

        def depth(name: str) -> int:  # a snapshot comes after its parent, even in one second
            n, seen = 0, set()
            while parent.get(name) and name not in seen:
                seen.add(name)
                name, n = parent[name], n + 1
            return n

        return sorted(snaps, key=lambda s: (s["created"], depth(s["name"]), s["name"]))

    async def get(self, vm: str, name: str) -> dict[str, Any]:
        return await self._run(lambda c: snapshot_info(self._snap(c, vm, name)))

    async def current(self, vm: str) -> dict[str, Any]:
        def read(c: Any) -> dict[str, Any]:
            dom = self._dom(c, vm)
            if not dom.hasCurrentSnapshot(0):
                raise NotFound("KCHSNAP0003E", vm=vm)
            return snapshot_info(dom.snapshotCurrent(0))

        return await self._run(read)

    async def new(self, vm: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
        """The parameters of the ``vm.snapshot`` job that takes the snapshot ``body`` asks
        for, once its name is known to be free."""
        name = body.get("name") or datetime.datetime.now(datetime.UTC).strftime(
            "snap-%Y%m%d-%H%M%S")
        if not NAME.fullmatch(name) or name == "current":
            raise InvalidRequest("KCHSNAP0004E", name=name)

        def free(c: Any) -> None:
            try:
                self._dom(c, vm["name"]).snapshotLookupByName(name, 0)
            except lv().libvirtError:
                return
            raise InvalidOperation("KCHSNAP0001E", name=name, vm=vm["name"])

        await self._run(free)
        return {"vm": vm["name"], "uuid": vm["uuid"], "name": name, "host": self.host,
                "description": body.get("description", "")}

    def run(self, ctx: JobContext) -> dict[str, Any]:
        """The job, on the daemon's runner thread (``ctx.params`` from :meth:`new`)."""
        p = ctx.params
        libvirt = lv()

        def take(c: Any) -> dict[str, Any]:
            try:
                dom = c.lookupByUUIDString(p["uuid"])
            except libvirt.libvirtError:
                raise KimchiError("KCHSNAP0005E", name=p["name"], vm=p["vm"],
                                  error="the VM is gone") from None
            try:  # a lost attempt may have taken it already
                return snapshot_info(dom.snapshotLookupByName(p["name"], 0))
            except libvirt.libvirtError:
                pass
            ctx.check()
            ctx.progress(10, TaskText("Taking the snapshot (with the running VM's memory)")
                         if dom.isActive() else TaskText("Taking the snapshot"))
            try:
                return snapshot_info(dom.snapshotCreateXML(
                    snapshot_xml(p["name"], p.get("description", "")), 0))
            except libvirt.libvirtError as e:
                raise KimchiError("KCHSNAP0005E", name=p["name"], vm=p["vm"],
                                  error=why(e)) from None

        out = self.libvirt.call(take)
        self.libvirt.reactor.callFromThread(lambda: Deferred.fromCoroutine(
            self._publish("snapshot.created", {**out, "vm": p["vm"]})))
        return {**out, "vm": p["vm"], "host": self.host,
                "message": TaskText("Snapshot {name} of {vm} taken", name=p["name"],
                                    vm=p["vm"])}

    async def revert(self, vm: str, name: str) -> dict[str, Any]:
        def back(c: Any) -> dict[str, Any]:
            snap = self._snap(c, vm, name)
            dom = self._dom(c, vm)
            try:
                dom.revertToSnapshot(snap, 0)
            except lv().libvirtError as e:
                raise InvalidOperation("KCHSNAP0006E", name=name, vm=vm, error=why(e)) from None
            return snapshot_info(snap)

        out = await self._run(back)
        await self._publish("snapshot.reverted", {**out, "vm": vm})
        return out

    async def delete(self, vm: str, name: str) -> None:
        def drop(c: Any) -> None:
            snap = self._snap(c, vm, name)
            try:
                snap.delete(0)  # its children stay, re-parented
            except lv().libvirtError as e:
                raise InvalidOperation("KCHSNAP0006E", name=name, vm=vm, error=why(e)) from None

        await self._run(drop)
        await self._publish("snapshot.deleted", {"name": name, "vm": vm})
