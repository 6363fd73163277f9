"""/templates: how VMs are made (from an ISO, local or remote, or for a network boot)."""

from __future__ import annotations

from typing import Any

from kimchi import isoinfo
from kimchid.api.routes import TASK_SCHEMA, Call, Reply, RouteTable, matching
from kimchid.model.cloudinit import FIELDS as CLOUD_INIT_FIELDS
from kimchid.model.template_download import TemplateDownloads
from kimchid.model.templates import TemplateService

NAME = {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,127}$"}
SOURCE_PATH = {"type": "string", "minLength": 1, "maxLength": 4096,
               "pattern": "^(/|[Hh][Tt][Tt][Pp][Ss]?://|[Ff][Tt][Pp][Ss]?://)",
               "x-errcode": "KCHTMPL0004E",
               "description": "an absolute path, or an http, https, ftp or ftps URL"}
CLOUD_INIT: dict[str, Any] = {
    "type": "object", "additionalProperties": False, "minProperties": 1,
    "description": "what each new VM is told on its first boot (a NoCloud seed, cidata); a "
                   "VM request's fields override these",
    "dependentRequired": {"password": ["user"]},
    "properties": {
        "hostname": {"type": "string", "maxLength": 253, "pattern":
                     r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                     r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$",
                     "description": "default: the VM's name"},
        "user": {"type": "string", "pattern": r"^[a-z_][a-z0-9_-]{0,31}$",
                 "description": "an account made with sudo rights"},
        "password": {"type": "string", "minLength": 1, "maxLength": 256, "writeOnly": True,
                     "description": "the user's; kept only hashed (SHA-512 crypt)"},
        "ssh_authorized_keys": {
            "type": "array", "maxItems": 64,
            "items": {"type": "string", "minLength": 16, "maxLength": 16384,
                      "pattern": r"^(ssh-|ecdsa-|sk-)[^\r\n]+$"}},
        "user_data": {"type": "string", "maxLength": 65536,
                      "description": "raw user-data (#cloud-config or a #! script), sent "
                                     "beside the fields"}}}
assert set(CLOUD_INIT["properties"]) == set(CLOUD_INIT_FIELDS)
#: the virtual hardware a VM of the template gets; each defaults to what its OS wants
MACHINE_FIELDS: dict[str, Any] = {
    "machine": {"type": "string", "pattern": r"^(q35|pc|pc-q35-[0-9.]+|pc-i440fx-[0-9.]+)$",
                "description": "the chipset: q35 (PCI Express, SATA; no IDE) or pc "
                               "(i440FX), or one of libvirt's versioned names"},
    "firmware": {"enum": ["bios", "uefi"],
                 "description": "uefi: OVMF, chosen by libvirt (the host needs ovmf)"},
    "secure_boot": {"type": "boolean",
                    "description": "UEFI Secure Boot with Microsoft's keys enrolled (uefi "
                                   "on q35 only)"},
    "tpm": {"type": "boolean", "description": "a TPM 2.0, emulated by swtpm"},
    "bootmenu": {"type": "boolean", "description": "the firmware offers its boot menu"},
    "cpu_topology": {
        "type": ["object", "null"], "additionalProperties": False,
        "required": ["sockets", "cores", "threads"],
        "description": "sockets x cores x threads must make cpu_info.maxvcpus; null: "
                       "libvirt's (one socket per vCPU)",
        "properties": {k: {"type": "integer", "minimum": 1, "maximum": 512}
                       for k in ("sockets", "cores", "threads")}},
}
_FIELDS: dict[str, Any] = {
    "source_media": {
        "type": "object", "additionalProperties": False, "required": ["type"],
        "properties": {"type": {"enum": ["disk", "netboot", "image"],
                                "description": "disk: install from an ISO; netboot; image: "
                                               "a qcow2 or raw disk image, each VM's disk a "
                                               "leaf over it (or a copy)"},
                       "path": SOURCE_PATH,
                       "host": {"type": "string",
                                "pattern": r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}$",
                                "description": "image: the host whose storage volume path "
                                               "is, or where a URL is downloaded to "
                                               "(default: local); its VMs are made there"},
                       "pool": {"type": "string",
                                "pattern": r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,127}$",
                                "description": "image at a URL: the folder pool it is "
                                               "downloaded into (default: default)"},
                       "checksum": {"type": "string", "pattern": "^sha256:[0-9a-fA-F]{64}$",
                                    "description": "image at a URL: what its bytes must "
                                                   "hash to"}},
        "if": {"properties": {"type": {"enum": ["disk", "image"]}}},
        "then": {"required": ["path"], "x-errcode": "KCHTMPL0013E"},
    },
    "cdrom": {**SOURCE_PATH,
              "description": "Kimchi 1.x: same as source_media {type: disk, path}"},
    "os_distro": {"type": "string", "maxLength": 64},
    "os_version": {"type": "string", "maxLength": 64},
    "memory": {"type": "object", "additionalProperties": False, "description": "MiB",
               "properties": {"current": {"type": "integer", "minimum": 64,
                                          "maximum": 4194304},
                              "maxmemory": {"type": "integer", "minimum": 64,
                                            "maximum": 4194304}}},
    "cpu_info": {"type": "object", "additionalProperties": False,
                 "properties": {"vcpus": {"type": "integer", "minimum": 1, "maximum": 512},
                                "maxvcpus": {"type": "integer", "minimum": 1, "maximum": 512}}},
    "disks": {"type": "array", "maxItems": 16, "items": {
        "type": "object", "additionalProperties": False, "required": ["size"],
        "properties": {"index": {"type": "integer", "minimum": 0, "maximum": 15},
                       "size": {"type": "number", "exclusiveMinimum": 0, "maximum": 65536,
                                "description": "GB"},
                       "format": {"enum": ["qcow2", "raw"]},
                       "bus": {"enum": ["virtio", "scsi", "sata", "ide"]},
                       "pool": {"type": "object", "additionalProperties": False,
                                "required": ["name"], "properties": {"name": NAME}}}}},
    "networks": {"type": "array", "maxItems": 16, "items": NAME},
    "nic_model": {"enum": ["virtio", "e1000e", "e1000", "rtl8139", "ne2k_pci", "pcnet"]},
    "cdrom_bus": {"enum": ["ide", "sata", "scsi"]},
    "graphics": {"type": "object", "additionalProperties": False,
                 "properties": {"type": {"enum": ["vnc", "spice"]},
                                "listen": {"type": "string", "maxLength": 64}}},
    "tablet": {"type": "boolean"},
    **MACHINE_FIELDS,
    "cloud_init": CLOUD_INIT,
}
#: what the OS's defaults would be (osinfo-db's data where it knows the OS)
OS_DEFAULTS = {"type": "object", "readOnly": True,
               "description": "what osinfo-db (source osinfo-db) or kimchi's own table "
                              "(source kimchi) gives this OS: the values a new template "
                              "of it gets",
               "properties": {"machine": {"type": "string"},
                              "firmware": {"enum": ["bios", "uefi"]},
                              "secure_boot": {"type": "boolean"}, "tpm": {"type": "boolean"},
                              "source": {"enum": ["osinfo-db", "kimchi"]}}}
_ONE_SOURCE = {"not": {"required": ["source_media", "cdrom"]}, "x-errcode": "KCHTMPL0010E"}
UPDATE_BODY = {"type": "object", "additionalProperties": False,
               "properties": {"name": NAME, **_FIELDS}, "allOf": [_ONE_SOURCE]}
CREATE_BODY = {**UPDATE_BODY, "allOf": [
    {"anyOf": [{"required": ["source_media"]}, {"required": ["cdrom"]}],
     "x-errcode": "KCHTMPL0013E"},
    _ONE_SOURCE,
]}
# What kimchid adds to source_media when the ISO is a URL
_STORED_MEDIA = {**_FIELDS["source_media"], "properties": {
    **_FIELDS["source_media"]["properties"],
    "remote": {"type": "boolean", "readOnly": True, "description": "path is a URL"},
    "verified": {"type": "boolean", "readOnly": True,
                 "description": "false: the URL could not be read when the template was "
                                "made; os_distro and os_version are the user's"},
    "size": {"type": "integer", "readOnly": True, "description": "bytes, when the server "
                                                                "said"},
    "error": {"type": "string", "readOnly": True, "description": "why it is not verified"},
    "format": {"enum": ["qcow2", "raw"], "readOnly": True, "description": "image: its format"},
    "virtual_size": {"type": "integer", "readOnly": True, "description": "image: bytes"},
    "owned": {"type": "boolean", "readOnly": True,
              "description": "image: the template made its base (from a VM) and deletes it "
                             "with itself"}}}
TEMPLATE_SCHEMA = {"type": "object", "required": ["name", "os_distro", "os_version", "memory",
                                                 "cpu_info", "disks", "networks", "invalid"],
                   "properties": {**_FIELDS, "name": NAME, "source_media": _STORED_MEDIA,
                                  "os_defaults": OS_DEFAULTS,
                                  "invalid": {"type": "object",
                                              "description": "what a VM made now would miss"},
                                  "vms": {"type": "array", "items": {"type": "string"},
                                          "description": "image templates: the VMs whose "
                                                         "disks are leaves over its base"}}}


def register(table: RouteTable, templates: TemplateService,
             downloads: TemplateDownloads) -> None:
    async def list_templates(call: Call) -> list[dict[str, Any]]:
        return matching(await templates.list(), call.query)

    async def create(call: Call) -> Reply:
        media = call.body.get("source_media") or {}
        if media.get("type") == "image" and isoinfo.is_remote(media.get("path", "")):
            task = await downloads.start(call.body, call.who.username if call.who else "")
            return Reply(202, task, {"Location": f"/tasks/{task['id']}"})
        t = await templates.create(call.body)
        return Reply(201, t, {"Location": f"/templates/{t['name']}"})

    async def get(call: Call) -> dict[str, Any]:
        return await templates.get(call.args["name"])

    async def update(call: Call) -> Reply:
        t = await templates.update(call.args["name"], call.body)
        if t["name"] != call.args["name"]:
            return Reply(303, t, {"Location": f"/templates/{t['name']}"})
        return Reply(200, t)

    async def delete(call: Call) -> Reply:
        await templates.delete(call.args["name"])
        return Reply(204, None)

    async def clone(call: Call) -> Reply:
        t = await templates.clone(call.args["name"])
        return Reply(201, t, {"Location": f"/templates/{t['name']}"})

    table.add("/templates", "GET", list_templates, "List templates", "templates",
              query={"os_distro": {"type": "string"}, "os_version": {"type": "string"}},
              response={"type": "array", "items": TEMPLATE_SCHEMA})
    table.add("/templates", "POST", create, "Make a template from an ISO or for netboot",
              "templates", body=CREATE_BODY, response=TEMPLATE_SCHEMA, status=201,
              also={202: ("a disk image at an http(s) URL: the template.image task that "
                          "downloads it into a pool (volume.download) and makes the template",
                          TASK_SCHEMA)},
              description="The distribution and version are read from the ISO (of a URL, "
                          "a few sectors through Range requests), the OS's defaults filled "
                          "in, then your fields (partial objects merge).")
    table.add("/templates/<name>", "GET", get, "Look at a template", "templates",
              response=TEMPLATE_SCHEMA)
    table.add("/templates/<name>", "PUT", update, "Change a template (a new name renames it)",
              "templates", body=UPDATE_BODY, response=TEMPLATE_SCHEMA,
              description="200 with the template; 303 to the new URI when renamed.")
    table.add("/templates/<name>", "DELETE", delete, "Delete a template", "templates",
              status=204)
    table.add("/templates/<name>/clone", "POST", clone, "Copy a template as <name>-cloneN",
              "templates", response=TEMPLATE_SCHEMA, status=201)
