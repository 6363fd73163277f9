"""/vms/<name>/storages and /vms/<name>/ifaces: a VM's disks, CD-ROMs and interfaces
(reading for whoever may use the VM, changing for admins)."""

from __future__ import annotations

from typing import Any

from kimchid.api.access import VM_ADDRESSES, Access
from kimchid.api.routes import Call, Reply, RouteTable
from kimchid.model.vmdevices import MODELS, VmDevices

STORAGE_SCHEMA = {
    "type": "object",
    "required": ["dev", "type", "bus", "path", "format"],
    "properties": {
        "dev": {"type": "string", "description": "its target: vda, hdc, sdb..."},
        "type": {"enum": ["disk", "cdrom", "floppy", "lun"]},
        "bus": {"type": "string"}, "path": {"type": "string", "description": "empty: no "
                                                                              "medium"},
        "format": {"type": "string"},
    },
}
ATTACH = {
    "type": "object", "additionalProperties": False, "required": ["type"],
    "properties": {
        "type": {"enum": ["disk", "cdrom"]},
        "path": {"type": "string", "maxLength": 4096, "pattern": "^(/|$)",
                 "x-errcode": "KCHVMSTOR0002E",
                 "x-reason": "must be an absolute path",
                 "description": "an ISO, or a disk image (an absolute path); a CD-ROM may "
                                "start empty"},
        "pool": {"type": "string", "minLength": 1, "maxLength": 64,
                 "description": "a disk: with vol"},
        "vol": {"type": "string", "minLength": 1, "maxLength": 255},
        "bus": {"enum": ["virtio", "scsi", "sata", "ide"],
                "description": "default: virtio for a disk, the VM's CD-ROM bus for a CD-ROM"},
    },
    "allOf": [
        {"if": {"anyOf": [{"required": ["pool"]}, {"required": ["vol"]}]},
         "then": {"required": ["pool", "vol"], "x-errcode": "KCHVMSTOR0002E",
                  "x-reason": "a disk is a path, or a pool and a vol",
                  "properties": {
                      "type": {"const": "disk", "x-errcode": "KCHVMSTOR0002E",
                               "x-reason": "a disk is a path, or a pool and a vol"},
                      "path": {"maxLength": 0, "x-errcode": "KCHVMSTOR0002E",
                               "x-reason": "a disk is a path, or a pool and a vol"}}}},
        {"if": {"properties": {"type": {"const": "disk"}}},
         "then": {"anyOf": [{"required": ["path"], "properties": {"path": {"minLength": 1}}},
                            {"required": ["pool"]}],
                  "x-errcode": "KCHVMSTOR0002E", "x-reason": "a disk needs a path or a volume"}},
    ],
}
MEDIA = {"type": "object", "additionalProperties": False, "required": ["path"],
         "properties": {"path": {"type": "string", "maxLength": 4096, "pattern": "^(/|$)",
                                 "x-errcode": "KCHVMSTOR0002E",
                                 "x-reason": "must be an absolute path",
                                 "description": "another ISO (an absolute path); empty "
                                                "ejects"}}}
IFACE_SCHEMA = {
    "type": "object", "required": ["mac", "type", "network", "model"],
    "properties": {"mac": {"type": "string"}, "type": {"type": "string"},
                   "network": {"type": "string"}, "model": {"type": "string"}},
}
ADD_IFACE = {"type": "object", "additionalProperties": False, "required": ["network"],
             "properties": {"network": {"type": "string", "maxLength": 64},
                            "model": {"enum": list(MODELS), "default": "virtio"}}}


def register(table: RouteTable, access: Access) -> None:
    def vm_of(call: Call) -> tuple[VmDevices, str]:
        host, vm = access.vm_at(call.who, call.args)  # 404, or 403 for another's VM
        return host.devices, vm["name"]

    def base(call: Call, vm: str) -> str:
        return f"/hosts/{call.args['host']}/vms/{vm}" if "host" in call.args else f"/vms/{vm}"

    async def list_storages(call: Call) -> list[dict[str, Any]]:
        devices, vm = vm_of(call)
        return await devices.storages(vm)

    async def attach(call: Call) -> Reply:
        devices, vm = vm_of(call)
        s = await devices.attach_storage(vm, call.body)
        return Reply(201, s, {"Location": f"{base(call, vm)}/storages/{s['dev']}"})

    async def get_storage(call: Call) -> dict[str, Any]:
        devices, vm = vm_of(call)
        return await devices.storage(vm, call.args["dev"])

    async def media(call: Call) -> dict[str, Any]:
        devices, vm = vm_of(call)
        return await devices.change_media(vm, call.args["dev"], call.body["path"])

    async def detach(call: Call) -> Reply:
        devices, vm = vm_of(call)
        await devices.detach_storage(vm, call.args["dev"])
        return Reply(204, None)

    async def list_ifaces(call: Call) -> list[dict[str, Any]]:
        devices, vm = vm_of(call)
        return await devices.ifaces(vm)

    async def add_iface(call: Call) -> Reply:
        devices, vm = vm_of(call)
        i = await devices.attach_iface(vm, call.body)
        return Reply(201, i, {"Location": f"{base(call, vm)}/ifaces/{i['mac']}"})

    async def drop_iface(call: Call) -> Reply:
        devices, vm = vm_of(call)
        await devices.detach_iface(vm, call.args["mac"])
        return Reply(204, None)

    tag = "vms"
    for at, where in VM_ADDRESSES:
        table.add(f"{at}/storages", "GET", list_storages, f"A VM's disks and CD-ROMs{where}",
                  tag, response={"type": "array", "items": STORAGE_SCHEMA})
        table.add(f"{at}/storages", "POST", attach, f"Attach a disk or a CD-ROM{where}", tag,
                  body=ATTACH, response=STORAGE_SCHEMA, status=201,
                  description="A disk is an image file (`path`) or a volume (`pool`, `vol`); "
                              "while the VM runs it is hot-plugged (virtio). A CD-ROM drive "
                              "is added only while the VM is shut off (KCHVMSTOR0003E). On a "
                              "host other than the local one, a `path` must be a volume of "
                              "one of its storage pools (KCHVMSTOR0006E).")
        table.add(f"{at}/storages/<dev>", "GET", get_storage, f"One disk or CD-ROM{where}",
                  tag, response=STORAGE_SCHEMA)
        table.add(f"{at}/storages/<dev>", "PUT", media, f"Change a CD-ROM's medium{where}",
                  tag, body=MEDIA, response=STORAGE_SCHEMA,
                  description="Also while the VM runs; an empty path ejects.")
        table.add(f"{at}/storages/<dev>", "DELETE", detach,
                  f"Detach a disk or CD-ROM{where}", tag, status=204,
                  description="The disk's volume or file stays.")
        table.add(f"{at}/ifaces", "GET", list_ifaces, f"A VM's network interfaces{where}",
                  tag, response={"type": "array", "items": IFACE_SCHEMA})
        table.add(f"{at}/ifaces", "POST", add_iface, f"Add a network interface{where}", tag,
                  body=ADD_IFACE, response=IFACE_SCHEMA, status=201,
                  description="On a libvirt network of the VM's host; hot-plugged while "
                              "the VM runs.")
        table.add(f"{at}/ifaces/<mac>", "DELETE", drop_iface,
                  f"Remove a network interface{where}", tag, status=204)
