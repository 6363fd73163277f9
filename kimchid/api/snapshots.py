"""/vms/<name>/snapshots: listing for whoever may use the VM; taking, reverting and
deleting for admins."""

from __future__ import annotations

from typing import Any

from kimchid.api.access import VM_ADDRESSES, Access
from kimchid.api.routes import TASK_SCHEMA, Call, Reply, RouteTable
from kimchid.model.hosts import Host
from kimchid.model.snapshots import KIND
from kimchid.model.tasks import TaskService

SNAPSHOT_SCHEMA = {
    "type": "object",
    "required": ["name", "host", "created", "state", "parent", "current"],
    "properties": {
        "name": {"type": "string"},
        "host": {"type": "string", "description": "the host of its VM"},
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


def register(table: RouteTable, tasks: TaskService, access: Access) -> None:
    def vm_of(call: Call) -> tuple[Host, str]:
        host, vm = access.vm_at(call.who, call.args)  # 404, or 403 for another's VM
        return host, vm["name"]

    async def list_snapshots(call: Call) -> list[dict[str, Any]]:
        host, vm = vm_of(call)
        return host.snapshots.tagged(await host.snapshots.list(vm))

    async def create(call: Call) -> Reply:
        host, vm = access.vm_at(call.who, call.args)
        params = await host.snapshots.new(vm, call.body)
        where = "" if host.local else f"/hosts/{host.name}"
        task = await tasks.submit(KIND, params,
                                  f"{where}/vms/{vm['name']}/snapshots/{params['name']}",
                                  call.who.username if call.who else "", host=host.name)
        return Reply(202, task, {"Location": f"/tasks/{task['id']}"})

    async def current(call: Call) -> dict[str, Any]:
        host, vm = vm_of(call)
        return host.snapshots.tagged(await host.snapshots.current(vm))

    async def get(call: Call) -> dict[str, Any]:
        host, vm = vm_of(call)
        return host.snapshots.tagged(await host.snapshots.get(vm, call.args["snap"]))

    async def delete(call: Call) -> Reply:
        host, vm = vm_of(call)
        await host.snapshots.delete(vm, call.args["snap"])
        return Reply(204, None)

    async def revert(call: Call) -> dict[str, Any]:
        host, vm = vm_of(call)
        return host.snapshots.tagged(await host.snapshots.revert(vm, call.args["snap"]))

    tag = "vms"
    for at, where in VM_ADDRESSES:
        table.add(f"{at}/snapshots", "GET", list_snapshots, f"List a VM's snapshots{where}",
                  tag, response={"type": "array", "items": SNAPSHOT_SCHEMA},
                  description="Oldest first; `current` marks the one the VM runs from.")
        table.add(f"{at}/snapshots", "POST", create, f"Take a snapshot{where}", tag,
                  body=CREATE, response=TASK_SCHEMA, status=202,
                  description="A `vm.snapshot` task: libvirt's internal snapshot of the "
                              "disks, and of the memory when the VM runs (qcow2 disks only).")
        table.add(f"{at}/snapshots/current", "GET", current,
                  f"The snapshot the VM runs from{where}", tag, response=SNAPSHOT_SCHEMA)
        table.add(f"{at}/snapshots/<snap>", "GET", get, f"Look at a snapshot{where}", tag,
                  response=SNAPSHOT_SCHEMA, params=SNAPSHOT_PATH)
        table.add(f"{at}/snapshots/<snap>", "DELETE", delete, f"Delete a snapshot{where}",
                  tag, status=204, params=SNAPSHOT_PATH,
                  description="The snapshots taken after it stay.")
        table.add(f"{at}/snapshots/<snap>/revert", "POST", revert,
                  f"Go back to a snapshot{where}", tag, response=SNAPSHOT_SCHEMA,
                  description="The VM's disks (and, for a snapshot of a running VM, its "
                              "memory and state) become what they were; what changed since "
                              "is lost.")
