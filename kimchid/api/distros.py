"""/config/distros: remote install ISOs of common distributions, ready to make templates of."""

from __future__ import annotations

from typing import Any

from kimchid.api.routes import Call, RouteTable, matching
from kimchid.api.templates import NAME
from kimchid.model.templates import TemplateService

_TEXT = {"type": "string", "minLength": 1, "maxLength": 64}
DISTRO_SCHEMA = {
    "type": "object", "additionalProperties": False,
    "required": ["name", "os_distro", "os_version", "os_arch", "path", "origin"],
    "properties": {
        "name": {**NAME, "description": "also a good template name"},
        "os_distro": {**_TEXT, "examples": ["debian"]},
        "os_version": {**_TEXT, "examples": ["12.8"]},
        "os_arch": {**_TEXT, "examples": ["x86_64"]},
        "path": {"type": "string", "maxLength": 4096,
                 "description": "the ISO's URL: source_media.path of a template"},
        "origin": {"enum": ["kimchi", "local"],
                   "description": "shipped with kimchi, or <objects_dir>/distros/<name>.json"},
    },
}


def register(table: RouteTable, templates: TemplateService) -> None:
    async def list_distros(call: Call) -> list[dict[str, Any]]:
        return matching(await templates.distros(), call.query)

    table.add("/config/distros", "GET", list_distros, "Remote install ISOs to make templates of",
              "config", query={"os_distro": {"type": "string"}, "os_arch": {"type": "string"}},
              response={"type": "array", "items": DISTRO_SCHEMA},
              description="Each entry makes a template as it is: `POST /templates {\"name\": "
                          "name, \"source_media\": {\"type\": \"disk\", \"path\": path}, "
                          "\"os_distro\": os_distro, \"os_version\": os_version}`. An admin "
                          "adds or replaces entries with `<objects_dir>/distros/<name>.json` "
                          "files (`{\"os_distro\", \"os_version\", \"os_arch\", \"path\"}`).")
