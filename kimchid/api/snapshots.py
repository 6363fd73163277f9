"""/vms/<name>/snapshots: listing for whoever may use the VM; taking, reverting and
deleting for admins."""

from __future__ import annotations

from typing import Any

from kimchid.api.access import Access
from kimchid.api.routes import TASK_SCHEMA, Call, Reply, RouteTable
from kimchid.model.snapshots import Snapshots

SNAPSHOT_SCHEMA = {
    "type": "object",
    "required": ["name", "created", "state", "parent", "current"],
    "properties": {
        "name": {"type": "string"},
        "created": {"type": "string", "format": "date-time"},
        "state": {"type": "string", "description": "the VM's state when it was taken"},
        "parent": {"type": "string", "description": "the snapshot it was taken after"},
        "description": {"type": "string"},
        "current": {"type": "boolean", "description": "the VM runs from this one"},
    },
}
CREATE = {
    "type": "object", "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$",
                 "not": {"const": "current"}, "x-errcode": "KCHSNAP0004E",
                 "description": "default: snap-<UTC date>-<time>; not `current`, the name of "
                                "the route to the one the VM runs from"},
        "description": {"type": "string", "maxLength": 1024},
    },
}

# /snapshots/current is a route of its own (GET only): a snapshot path never names it
SNAPSHOT_PATH = {"snap": {"type": "string", "not": {"const": "current"}}}


def register(table: RouteTable, snapshots: Snapshots, access: Access) -> None:
    def vm_of(call: Call) -> dict[str, Any]:
        return access.vm(call.who, call.args["name"])  # 404, or 403 for another's VM

    async def list_snapshots(call: Call) -> list[dict[str, Any]]:
        return await snapshots.list(vm_of(call)["name"])

    async def create(call: Call) -> Reply:
        task = await snapshots.create(vm_of(call), call.body,
                                      call.who.username if call.who else "")
        return Reply(202, task, {"Location": f"/tasks/{task['id']}"})

    async def current(call: Call) -> dict[str, Any]:
        return await snapshots.current(vm_of(call)["name"])

    async def get(call: Call) -> dict[str, Any]:
        return await snapshots.get(vm_of(call)["name"], call.args["snap"])

    async def delete(call: Call) -> Reply:
        await snapshots.delete(vm_of(call)["name"], call.args["snap"])
        return Reply(204, None)

    async def revert(call: Call) -> dict[str, Any]:
        return await snapshots.revert(vm_of(call)["name"], call.args["snap"])

    tag = "vms"
    table.add("/vms/<name>/snapshots", "GET", list_snapshots, "List a VM's snapshots", tag,
              response={"type": "array", "items": SNAPSHOT_SCHEMA},
              description="Oldest first; `current` marks the one the VM runs from.")
    table.add("/vms/<name>/snapshots", "POST", create, "Take a snapshot", tag, body=CREATE,
              response=TASK_SCHEMA, status=202,
              description="A `vm.snapshot` task: libvirt's internal snapshot of the disks, "
                          "and of the memory when the VM runs (qcow2 disks only).")
    table.add("/vms/<name>/snapshots/current", "GET", current,
              "The snapshot the VM runs from", tag, response=SNAPSHOT_SCHEMA)
    table.add("/vms/<name>/snapshots/<snap>", "GET", get, "Look at a snapshot", tag,
              response=SNAPSHOT_SCHEMA, params=SNAPSHOT_PATH)
    table.add("/vms/<name>/snapshots/<snap>", "DELETE", delete, "Delete a snapshot", tag,
              status=204, params=SNAPSHOT_PATH, description="The snapshots taken after it stay.")
    table.add("/vms/<name>/snapshots/<snap>/revert", "POST", revert,
              "Go back to a snapshot", tag, response=SNAPSHOT_SCHEMA,
              description="The VM's disks (and, for a snapshot of a running VM, its memory "
                          "and state) become what they were; what changed since is lost.")
