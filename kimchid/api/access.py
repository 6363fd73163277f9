"""What a signed-in user may see: their VMs, the tasks on them, the events about them.

Admins see everything.  Others see the VMs that name them (or a group of
theirs) in ``users``/``groups``, the tasks they started or that work on such a
VM, and the events of those; everything else about VMs and tasks is hidden from
them, in lists as in the event stream.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from kimchid.auth import policy
from kimchid.auth.policy import Identity
from kimchid.model.events import Event
from kimchid.model.hosts import Host, Hosts

#: The two addresses of a VM and of everything under it (its snapshots, disks,
#: interfaces...): the canonical one, and the root one (see :meth:`Hosts.vm_host`).
VM_ADDRESSES = (("/vms/<name>", ""), ("/hosts/<host>/vms/<name>", " (one host's)"))


class Access:
    def __init__(self, hosts: Hosts) -> None:
        self.hosts = hosts

    def vm(self, who: Identity | None, name: str, host: Host | None = None) -> dict[str, Any]:
        """The VM ``name`` (of the local host, or of ``host``) if ``who`` may see it: 404
        if there is none, 403 if not theirs."""
        vm = (host or self.hosts.local).vms.get(name)
        if who is not None:
            policy.check_vm(who, vm)
        return vm

    def host_of(self, args: Mapping[str, Any]) -> Host:
        """The host a VM address names: its own (``/hosts/<host>/vms/<name>``), else the
        one a root address means (``/vms/<name>``: see :meth:`Hosts.vm_host`)."""
        if "host" in args:
            return self.hosts.get(args["host"])
        return self.hosts.vm_host(args["name"])

    def vm_at(self, who: Identity | None, args: Mapping[str, Any]) -> tuple[Host, dict[str, Any]]:
        """The host and the VM a VM address names, if ``who`` may see it."""
        host = self.host_of(args)
        return host, self.vm(who, args["name"], host)

    def can_see_vm_named(self, who: Identity, name: str) -> bool:
        for host in self.hosts:
            for vm in host.vms.vms.values():
                if vm["name"] == name and policy.can_see_vm(who, vm):
                    return True
        return False

    def can_see_task(self, who: Identity | None, task: dict[str, Any]) -> bool:
        return who is None or policy.can_see_task(
            who, task, lambda name: self.can_see_vm_named(who, name))

    def event_filter(self, who: Identity | None, own_tasks: set[str]) -> Any:
        """A check of each event for ``who``'s watcher (None: sees everything)."""
        if who is None or who.is_admin:
            return None
        return _EventAccess(self, who, own_tasks)


class _EventAccess:
    """One non-admin watcher's view of the stream."""

    def __init__(self, access: Access, who: Identity, own_tasks: set[str]) -> None:
        self.access = access
        self.who = who
        self.tasks = own_tasks  # ids of tasks this user may follow
        self.vms: set[str] = set()  # names seen allowed: their deletion is news too

    def __call__(self, ev: Event) -> bool:
        t = ev.type
        if t.startswith("task."):
            if ev.task in self.tasks:
                return True
            # created, cancelling and the endings carry the whole task: judge by it
            data = _data(ev) if t != "task.progress" else None
            if isinstance(data, dict) and "target_uri" in data and \
                    self.access.can_see_task(self.who, data):
                self.tasks.add(ev.task)
                return True
            return False
        if t.startswith(("snapshot.", "vm.storage.", "vm.iface.")):
            # about a VM's parts: seen by whoever may see the VM (data["vm"])
            data = _data(ev)
            vm = data.get("vm") if isinstance(data, dict) else None
            return isinstance(vm, str) and self.access.can_see_vm_named(self.who, vm)
        if t.startswith("vm."):
            data = _data(ev)
            name = data.get("name") if isinstance(data, dict) else None
            if not name:
                return False
            if t == "vm.deleted":
                return name in self.vms
            if policy.can_see_vm(self.who, data) or self.access.can_see_vm_named(
                    self.who, name):
                self.vms.add(name)
                return True
            return False
        if t.startswith("debugreport."):
            return False  # reports are for admins, even their names
        return True  # templates, ISOs, the host, the service: everyone may read those

    def wants_notice(self, etype: str) -> bool:
        return not etype.startswith("vm.")  # vm.stats name every VM: not for users


def _data(ev: Event) -> Any:
    try:
        return json.loads(ev.text).get("data")
    except ValueError:
        return None
