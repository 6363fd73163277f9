"""/debugreports: the host's logs and configuration as archives (admins only)."""

from __future__ import annotations

from typing import Any

from twisted.web.static import File

from kimchi.bus import LOCAL_HOST
from kimchid.api.routes import TASK_SCHEMA, Call, Reply, RouteTable, matching
from kimchid.model.debugreports import DebugReports
from kimchid.model.hosts import Hosts

NAME = {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$",
        "description": "letters, digits, - and _; it names the file"}
REPORT_SCHEMA = {
    "type": "object",
    "required": ["name", "file", "size", "time", "uri"],
    "properties": {
        "name": NAME,
        "file": {"type": "string", "description": "the archive's file name"},
        "size": {"type": "integer", "description": "bytes"},
        "time": {"type": "string", "format": "date-time", "description": "when it was made"},
        "uri": {"type": "string", "description": "where to download it"},
    },
}
CREATE_BODY = {"type": "object", "additionalProperties": False,
               "properties": {
                   "name": {**NAME, "description": "default: report-<UTC time> (another "
                                                   "host's: report-<host>-<UTC time>)"},
                   "host": {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}$",
                            "description": "the host to report on (default: local)"}}}
UPDATE_BODY = {"type": "object", "additionalProperties": False, "required": ["name"],
               "properties": {"name": NAME}}
_TYPES = {".tar.xz": "application/x-xz", ".tar.gz": "application/gzip",
          ".tar.bz2": "application/x-bzip2", ".tar": "application/x-tar"}


def register(table: RouteTable, reports: DebugReports, hosts: Hosts) -> None:
    async def list_reports(call: Call) -> list[dict[str, Any]]:
        return matching(await reports.list(), call.query)

    async def create(call: Call) -> Reply:
        host = hosts.known(call.body.get("host", LOCAL_HOST)).name
        task = await reports.create(call.body.get("name"),
                                    call.who.username if call.who else "", host)
        return Reply(202, task, {"Location": f"/tasks/{task['id']}"})

    async def get(call: Call) -> dict[str, Any]:
        return await reports.get(call.args["name"])

    async def update(call: Call) -> Reply:
        r = await reports.rename(call.args["name"], call.body["name"])
        if r["name"] != call.args["name"]:
            return Reply(303, r, {"Location": f"/debugreports/{r['name']}"})
        return Reply(200, r)

    async def delete(call: Call) -> Reply:
        await reports.delete(call.args["name"])
        return Reply(204, None)

    async def content(call: Call) -> File:
        path = await reports.path(call.args["name"])
        kind = next((t for s, t in _TYPES.items() if path.name.endswith(s)),
                    "application/octet-stream")
        call.request.setHeader(b"Content-Disposition",
                               f'attachment; filename="{path.name}"'.encode())
        served = File(str(path), defaultType=kind)
        served.type = kind  # type: ignore[assignment]
        served.encoding = None  # the archive as it is, not to be unpacked by the browser
        served.isLeaf = True
        return served

    table.add("/debugreports", "GET", list_reports, "List debug reports", "debugreports",
              query={"name": {"type": "string"}}, response={"type": "array",
                                                           "items": REPORT_SCHEMA},
              description="Finished reports, newest first. Reports being made are tasks "
                          "(`?kind=debugreport.collect`).")
    table.add("/debugreports", "POST", create, "Make a debug report (sos report)",
              "debugreports", body=CREATE_BODY, response=TASK_SCHEMA, status=202,
              description="A `debugreport.collect` task: a worker runs `sos report` (its "
                          "plugins' progress passed on), checks the archive and keeps it as "
                          "`<name>.tar.xz`. 400 KCHDR0005E when the host has no report "
                          "tool; a cancel stops the tool and leaves no file. Another host's "
                          "(`host`): a `debugreport.fetch` task, whose `debugreport.collect` "
                          "job runs on a worker serving that host and sends the archive "
                          "over the bus to be kept here with the others (no report tool "
                          "there: the task fails with KCHDR0005E); 400 KCHHOST0008E for a "
                          "host kimchi does not manage.")
    named = {"name": NAME}  # a name outside the rule names no report: 404
    table.add("/debugreports/<name>", "GET", get, "Look at a debug report", "debugreports",
              response=REPORT_SCHEMA, params=named)
    table.add("/debugreports/<name>", "PUT", update, "Rename a debug report", "debugreports",
              body=UPDATE_BODY, response=REPORT_SCHEMA, params=named,
              description="303 to the new URI when renamed; 400 KCHDR0003E if that name is "
                          "taken.")
    table.add("/debugreports/<name>", "DELETE", delete, "Delete a debug report",
              "debugreports", status=204, params=named)
    table.add("/debugreports/<name>/content", "GET", content, "Download a debug report",
              "debugreports", raw=True, params=named,
              produces=("application/octet-stream", "application/x-xz", "application/gzip",
                        "application/x-bzip2", "application/x-tar"),
              description="The archive, as an attachment (Range requests work).")
