"""/vms: the virtual machines (listing and looking; lifecycle actions come next)."""

from __future__ import annotations

from typing import Any

from kimchid.api.routes import Call, RawJSON, Reply, RouteTable
from kimchid.model.vms import ACTIONS, STATES, Screenshots, VmActions, VmInventory

VM_SCHEMA = {
    "type": "object",
    "required": ["name", "uuid", "state", "cpus", "memory", "graphics", "users", "groups"],
    "properties": {
        "name": {"type": "string"},
        "uuid": {"type": "string"},
        "state": {"enum": list(STATES)},
        "persistent": {"type": "boolean"},
        "cpus": {"type": "integer"},
        "memory": {"type": "object", "properties": {"current": {"type": "integer"},
                                                     "maxmemory": {"type": "integer"}},
                   "description": "MiB"},
        "graphics": {"type": ["object", "null"]},
        "disks": {"type": "array"},
        "users": {"type": "array", "items": {"type": "string"}},
        "groups": {"type": "array", "items": {"type": "string"}},
        "screenshot": {"type": ["string", "null"]},
    },
}


def register(table: RouteTable, vms: VmInventory, actions: VmActions,
             screenshots: Screenshots) -> None:
    async def list_vms(call: Call) -> Any:
        q = call.query
        if not q:
            return RawJSON(vms.listing_json())
        return [vm for vm in vms.list()
                if all(str(vm.get(k)) == v for k, v in q.items())]

    async def get_vm(call: Call) -> dict[str, Any]:
        return vms.get(call.args["name"])

    table.add("/vms", "GET", list_vms, "List virtual machines", "vms",
              query={"state": {"enum": list(STATES)}, "name": {"type": "string"}},
              response={"type": "array", "items": VM_SCHEMA},
              description="Answered from memory, kept current by libvirt's events: "
                          "changes made with virsh show up too.")
    table.add("/vms/<name>", "GET", get_vm, "Look at one virtual machine", "vms",
              response=VM_SCHEMA)

    async def screenshot(call: Call) -> bytes:
        png = await screenshots.get(call.args["name"])
        req = call.request
        req.setHeader(b"Content-Type", b"image/png")
        req.setHeader(b"Cache-Control", b"max-age=3")
        return png

    table.add("/vms/<name>/screenshot", "GET", screenshot, "The VM's screen, as a thumbnail",
              "vms", raw=True, produces=("image/png",),
              description="A PNG at most 320x240 keeping the screen's aspect ratio, taken at "
                          "most every 3 s; 404 (KCHVM0012E) when the VM is not running.")

    async def delete_vm(call: Call) -> Reply:
        await actions.delete(call.args["name"])
        return Reply(204, None)

    table.add("/vms/<name>", "DELETE", delete_vm, "Delete a virtual machine and its disks",
              "vms", status=204,
              description="Also when running (it is powered off first). The disks' volumes "
                          "go too; CD-ROMs and iSCSI/SCSI LUNs never.")

    for action, (allowed, _method) in ACTIONS.items():
        async def act(call: Call, action: str = action) -> dict[str, Any]:
            return await actions.act(call.args["name"], action)

        table.add(f"/vms/<name>/{action}", "POST", act, f"{action.capitalize()} the VM", "vms",
                  response=VM_SCHEMA,
                  description=f"Allowed when the VM is {', '.join(sorted(allowed))}; "
                              "otherwise 400 (KCHVM0010E).")
