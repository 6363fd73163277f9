"""/isos: the ISO library and the deep scan."""

from __future__ import annotations

from kimchid.api.routes import TASK_SCHEMA, Call, Reply, RouteTable, matching
from kimchid.model.hosts import LOCAL, Hosts
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
        "host": {"type": "string", "description": "the host whose disk holds it"},
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
        "host": {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}$",
                 "description": "the host whose folder it is (default: local): the scan "
                                "runs on a worker serving that host, and checks the folder "
                                "there"},
    },
}


def register(table: RouteTable, isos: IsoLibrary, hosts: Hosts) -> None:
    async def list_isos(call: Call) -> list[dict[str, object]]:
        found = await isos.list()
        return matching(found, call.query)

    async def scan(call: Call) -> Reply:
        host = call.body.get("host", LOCAL)
        hosts.known(host)
        task = await isos.scan(call.body["path"], host)
        return Reply(202, task, {"Location": f"/tasks/{task['id']}"})

    table.add("/isos", "GET", list_isos, "The ISO library", "isos",
              query={k: {"type": "string"} for k in ("os_distro", "os_version", "found_by",
                                                     "name", "bootable", "host")},
              response={"type": "array", "items": ISO_SCHEMA},
              description="ISOs found by deep scans, plus those in active storage pools "
                          "(shallow scan, no task needed).")
    table.add("/isos/scan", "POST", scan, "Deep-scan a folder for ISO images", "isos",
              body=SCAN_BODY, response=TASK_SCHEMA, status=202,
              description="Walks the tree, identifies each ISO from its volume descriptor, "
                          "emits `iso.found` for each and adds them to the library. Runs on a "
                          "worker serving `host`: while none does, the task says so, and "
                          "fails after `[workers] host_wait_seconds` (KCHTASK0009E).")

