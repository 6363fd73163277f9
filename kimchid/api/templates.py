"""/templates: how VMs are made (from an ISO, local or remote, or for a network boot)."""

from __future__ import annotations

from typing import Any

from kimchid.api.routes import Call, Reply, RouteTable, matching
from kimchid.model.templates import TemplateService

NAME = {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,127}$"}
SOURCE_PATH = {"type": "string", "minLength": 1, "maxLength": 4096,
               "pattern": "^(/|[Hh][Tt][Tt][Pp][Ss]?://|[Ff][Tt][Pp][Ss]?://)",
               "x-errcode": "KCHTMPL0004E",
               "description": "an absolute path, or an http, https, ftp or ftps URL"}
_FIELDS: dict[str, Any] = {
    "source_media": {
        "type": "object", "additionalProperties": False, "required": ["type"],
        "properties": {"type": {"enum": ["disk", "netboot"]},
                       "path": SOURCE_PATH},
        "if": {"properties": {"type": {"const": "disk"}}},
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
    "nic_model": {"enum": ["virtio", "e1000", "rtl8139", "ne2k_pci", "pcnet"]},
    "cdrom_bus": {"enum": ["ide", "sata", "scsi"]},
    "graphics": {"type": "object", "additionalProperties": False,
                 "properties": {"type": {"enum": ["vnc", "spice"]},
                                "listen": {"type": "string", "maxLength": 64}}},
    "tablet": {"type": "boolean"},
}
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
    "error": {"type": "string", "readOnly": True, "description": "why it is not verified"}}}
TEMPLATE_SCHEMA = {"type": "object", "required": ["name", "os_distro", "os_version", "memory",
                                                 "cpu_info", "disks", "networks", "invalid"],
                   "properties": {**_FIELDS, "name": NAME, "source_media": _STORED_MEDIA,
                                  "invalid": {"type": "object",
                                              "description": "what a VM made now would miss"}}}


def register(table: RouteTable, templates: TemplateService) -> None:
    async def list_templates(call: Call) -> list[dict[str, Any]]:
        return matching(await templates.list(), call.query)

    async def create(call: Call) -> Reply:
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
