"""/vms/<name>/storages and /vms/<name>/ifaces: a VM's disks, CD-ROMs and interfaces
(reading for whoever may use the VM, changing for admins)."""

from __future__ import annotations

from typing import Any

from kimchid.api.access import Access
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


def register(table: RouteTable, devices: VmDevices, access: Access) -> None:
    def vm_of(call: Call) -> str:
        return str(access.vm(call.who, call.args["name"])["name"])

    async def list_storages(call: Call) -> list[dict[str, Any]]:
        return await devices.storages(vm_of(call))

    async def attach(call: Call) -> Reply:
        vm = vm_of(call)
        s = await devices.attach_storage(vm, call.body)
        return Reply(201, s, {"Location": f"/vms/{vm}/storages/{s['dev']}"})

    async def get_storage(call: Call) -> dict[str, Any]:
        return await devices.storage(vm_of(call), call.args["dev"])

    async def media(call: Call) -> dict[str, Any]:
        return await devices.change_media(vm_of(call), call.args["dev"], call.body["path"])

    async def detach(call: Call) -> Reply:
        await devices.detach_storage(vm_of(call), call.args["dev"])
        return Reply(204, None)

    async def list_ifaces(call: Call) -> list[dict[str, Any]]:
        return await devices.ifaces(vm_of(call))

    async def add_iface(call: Call) -> Reply:
        vm = vm_of(call)
        i = await devices.attach_iface(vm, call.body)
        return Reply(201, i, {"Location": f"/vms/{vm}/ifaces/{i['mac']}"})

    async def drop_iface(call: Call) -> Reply:
        await devices.detach_iface(vm_of(call), call.args["mac"])
        return Reply(204, None)

    tag = "vms"
    table.add("/vms/<name>/storages", "GET", list_storages, "A VM's disks and CD-ROMs", tag,
              response={"type": "array", "items": STORAGE_SCHEMA})
    table.add("/vms/<name>/storages", "POST", attach, "Attach a disk or a CD-ROM", tag,
              body=ATTACH, response=STORAGE_SCHEMA, status=201,
              description="A disk is an image file (`path`) or a volume (`pool`, `vol`); "
                          "while the VM runs it is hot-plugged (virtio). A CD-ROM drive is "
                          "added only while the VM is shut off (KCHVMSTOR0003E).")
    table.add("/vms/<name>/storages/<dev>", "GET", get_storage, "One disk or CD-ROM", tag,
              response=STORAGE_SCHEMA)
    table.add("/vms/<name>/storages/<dev>", "PUT", media, "Change a CD-ROM's medium", tag,
              body=MEDIA, response=STORAGE_SCHEMA,
              description="Also while the VM runs; an empty path ejects.")
    table.add("/vms/<name>/storages/<dev>", "DELETE", detach, "Detach a disk or CD-ROM", tag,
              status=204, description="The disk's volume or file stays.")
    table.add("/vms/<name>/ifaces", "GET", list_ifaces, "A VM's network interfaces", tag,
              response={"type": "array", "items": IFACE_SCHEMA})
    table.add("/vms/<name>/ifaces", "POST", add_iface, "Add a network interface", tag,
              body=ADD_IFACE, response=IFACE_SCHEMA, status=201,
              description="On a libvirt network; hot-plugged while the VM runs.")
    table.add("/vms/<name>/ifaces/<mac>", "DELETE", drop_iface, "Remove a network interface",
              tag, status=204)
