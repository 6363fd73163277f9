"""/isos: the ISO library and the deep scan."""

from __future__ import annotations

from kimchid.api.routes import TASK_SCHEMA, Call, Reply, RouteTable, matching
from kimchid.model.isos import IsoLibrary

ISO_SCHEMA = {
    "type": "object",
    "required": ["name", "path", "size", "os_distro", "os_version", "bootable", "found_by"],
    "properties": {
        "name": {"type": "string"},
        "path": {"type": "string"},
        "size": {"type": "integer"},
        "os_distro": {"type": "string"},
        "os_version": {"type": "string"},
        "bootable": {"type": "boolean"},
        "volume_id": {"type": "string"},
        "found_by": {"enum": ["pool", "scan"]},
        "pool": {"type": "string"},
    },
}

SCAN_BODY = {
    "type": "object",
    "required": ["path"],
    "additionalProperties": False,
    "properties": {
        "path": {"type": "string", "minLength": 1, "maxLength": 4096, "pattern": "^/",
                 "x-errcode": "KCHISO0001E",
                 "description": "an absolute, existing, readable directory"},
    },
}


def register(table: RouteTable, isos: IsoLibrary) -> None:
    async def list_isos(call: Call) -> list[dict[str, object]]:
        found = await isos.list()
        return matching(found, call.query)

    async def scan(call: Call) -> Reply:
        task = await isos.scan(call.body["path"])
        return Reply(202, task, {"Location": f"/tasks/{task['id']}"})

    table.add("/isos", "GET", list_isos, "The ISO library", "isos",
              query={k: {"type": "string"} for k in ("os_distro", "os_version", "found_by",
                                                     "name", "bootable")},
              response={"type": "array", "items": ISO_SCHEMA},
              description="ISOs found by deep scans, plus those in active storage pools "
                          "(shallow scan, no task needed).")
    table.add("/isos/scan", "POST", scan, "Deep-scan a folder for ISO images", "isos",
              body=SCAN_BODY, response=TASK_SCHEMA, status=202,
              description="Walks the tree, identifies each ISO from its volume descriptor, "
                          "emits `iso.found` for each and adds them to the library.")

