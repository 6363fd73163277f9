"""/hosts: the KVM hosts kimchi manages (their VMs' canonical addresses are in vms.py)."""

from __future__ import annotations

from typing import Any

from kimchid.api.routes import Call, Reply, RouteTable, matching
from kimchid.model.hosts import Hosts
from kimchid.model.tasks import TaskService

NAME = {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}$"}
URI = {"type": "string", "minLength": 3, "maxLength": 1024,
       "pattern": r"^[a-z][a-z0-9]*(\+[a-z0-9]+)?://[^\s\x00]*$",
       "description": "a libvirt URI: qemu+ssh://root@h2/system, qemu+tls://h2/system, "
                      "qemu+tcp://h2/system, test+unix:///default?socket=..."}
ADD_BODY = {"type": "object", "additionalProperties": False, "required": ["name", "uri"],
            "properties": {"name": NAME, "uri": URI}}
HOST_SCHEMA = {
    "type": "object",
    "required": ["name", "uri", "local", "state", "reason", "cpus", "memory", "vms", "workers"],
    "properties": {
        "name": {"type": "string"}, "uri": {"type": "string"}, "local": {"type": "boolean"},
        "state": {"enum": ["connected", "connecting", "unreachable"]},
        "reason": {"type": "string", "description": "libvirt's reason, while not connected"},
        "cpus": {"type": "integer"}, "memory": {"type": "integer", "description": "bytes"},
        "vms": {"type": "object", "properties": {"running": {"type": "integer"},
                                                 "total": {"type": "integer"}}},
        "workers": {"type": "integer", "description": "live workers serving this host"},
    },
}


def register(table: RouteTable, hosts: Hosts, tasks: TaskService) -> None:
    async def workers(host: Any) -> int:
        return await tasks.live_workers(host.name)

    async def list_hosts(call: Call) -> list[dict[str, Any]]:
        return matching([h.view(await workers(h)) for h in hosts], call.query)

    async def get_host(call: Call) -> dict[str, Any]:
        h = hosts.get(call.args["host"])
        return h.view(await workers(h))

    async def add_host(call: Call) -> Reply:
        h = await hosts.add(call.body["name"], call.body["uri"])
        return Reply(201, h.view(await workers(h)), {"Location": f"/hosts/{h.name}"})

    async def remove_host(call: Call) -> Reply:
        await hosts.remove(call.args["host"])
        return Reply(204, None)

    table.add("/hosts", "GET", list_hosts, "List the hosts kimchi manages", "hosts",
              query={"state": {"enum": ["connected", "connecting", "unreachable"]}},
              response={"type": "array", "items": HOST_SCHEMA},
              description="The local host (`[libvirt] uri`, named `local`) first, then the "
                          "others by name, each with its connection state and, while it is "
                          "not connected, libvirt's reason.")
    table.add("/hosts", "POST", add_host, "Add a host", "hosts", body=ADD_BODY, status=201,
              response=HOST_SCHEMA,
              description="Answers once kimchi is connected to it (at most 20 s); a host it "
                          "cannot reach is refused with libvirt's reason (400 KCHHOST0004E) "
                          "and nothing is kept. Kept as `hosts/<name>.json` in `objects_dir`.")
    table.add("/hosts/<host>", "GET", get_host, "Look at one host", "hosts",
              response=HOST_SCHEMA)
    table.add("/hosts/<host>", "DELETE", remove_host, "Forget a host", "hosts", status=204,
              description="Its VMs keep running; kimchi only stops managing it. The local "
                          "host cannot be removed (400 KCHHOST0005E).")
