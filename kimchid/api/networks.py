"""/networks and /interfaces (reading for all, changing for admins)."""

from __future__ import annotations

from typing import Any

from kimchid.api.routes import Call, Reply, RouteTable, matching
from kimchid.model.hosts import Host, Hosts
from kimchid.model.networks import CONNECTIONS, SUBNET_PATTERN, Networks

NAME = {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$",
        "description": "letters, digits, '.', '-' and '_'"}
_NAMES = {"type": "array", "items": {"type": "string"}}
NETWORK_SCHEMA = {
    "type": "object",
    "required": ["name", "state", "autostart", "connection", "subnet", "dhcp", "bridge",
                 "interfaces", "in_use", "used_by"],
    "properties": {
        "host": {"type": "string", "description": "the host it is on"},
        "name": {"type": "string"}, "uuid": {"type": "string"},
        "state": {"enum": ["active", "inactive"]},
        "autostart": {"type": "boolean"}, "persistent": {"type": "boolean"},
        "connection": {"type": "string", "description": "nat, isolated, bridge, macvtap "
                                                        "(or route, open: made elsewhere)"},
        "subnet": {"type": "string", "description": "e.g. 192.168.123.0/24; empty when "
                                                    "bridged"},
        "gateway": {"type": "string"},
        "dhcp": {"type": "object", "properties": {"start": {"type": "string"},
                                                  "end": {"type": "string"}}},
        "bridge": {"type": "string", "description": "the host bridge it uses or made"},
        "interfaces": {**_NAMES, "description": "host interfaces it goes through"},
        "in_use": {"type": "boolean"},
        "used_by": {"type": "object", "properties": {"templates": _NAMES, "vms": _NAMES}},
    },
}
CREATE = {
    "type": "object", "additionalProperties": False, "required": ["name", "connection"],
    "properties": {
        "name": NAME, "connection": {"enum": list(CONNECTIONS)},
        "subnet": {"type": "string", "pattern": SUBNET_PATTERN, "x-errcode": "KCHNET0009E",
                   "x-reason": "use a private IPv4 network (10.x, 172.16-31.x, 192.168.x), "
                               "/16 to /28",
                   "description": "nat, isolated: a private IPv4 network, /16 to /28; "
                                  "default: the first free 192.168.x.0/24"},
        "interface": {"type": "string", "pattern": "^[A-Za-z0-9_.:@-]{1,15}$",
                      "description": "bridge: a host bridge; macvtap: a host interface"},
    },
    "allOf": [
        {"if": {"properties": {"connection": {"enum": ["bridge", "macvtap"]}}},
         "then": {"required": ["interface"], "x-errcode": "KCHNET0004E",
                  "x-reason": "a bridge or macvtap network needs an interface"}},
        {"if": {"properties": {"connection": {"enum": ["nat", "isolated"]}}},
         "then": {"not": {"required": ["interface"]}, "x-errcode": "KCHNET0004E",
                  "x-reason": "a nat or isolated network takes no interface"}},
    ],
}
UPDATE = {"type": "object", "additionalProperties": False, "required": ["autostart"],
          "properties": {"autostart": {"type": "boolean"}}}
INTERFACE_SCHEMA = {
    "type": "object",
    "required": ["name", "host", "type", "status"],
    "properties": {
        "name": {"type": "string"},
        "host": {"type": "string", "description": "the host it is on"},
        "type": {"enum": ["nic", "bridge", "bonding", "vlan", "virtual"]},
        "status": {"enum": ["up", "down"]},
        "ipaddr": {"type": "string"}, "netmask": {"type": "string"}, "mtu": {"type": "integer"},
    },
}


def register(table: RouteTable, hosts: Hosts) -> None:
    async def nets_at(call: Call) -> Networks:
        """The networks of the host the path names (see Hosts.addressed)."""
        return (await hosts.addressed(call.args, "network", "networks",
                                      lambda h, name: h.networks.get(name))).networks

    async def list_networks(call: Call) -> list[dict[str, Any]]:
        async def read(h: Host) -> list[dict[str, Any]]:
            return h.networks.tagged(await h.networks.list_networks())

        return matching(await hosts.gather(call.args, read), call.query)

    async def create(call: Call) -> Reply:
        nets = await nets_at(call)
        n = nets.tagged(await nets.create(call.body))
        where = f"/hosts/{call.args['host']}" if "host" in call.args else ""
        return Reply(201, n, {"Location": f"{where}/networks/{n['name']}"})

    async def get(call: Call) -> dict[str, Any]:
        nets = await nets_at(call)
        return nets.tagged(await nets.get(call.args["name"]))

    async def update(call: Call) -> dict[str, Any]:
        nets = await nets_at(call)
        return nets.tagged(await nets.set_autostart(call.args["name"], call.body["autostart"]))

    async def delete(call: Call) -> Reply:
        await (await nets_at(call)).delete(call.args["name"])
        return Reply(204, None)

    async def activate(call: Call) -> dict[str, Any]:
        nets = await nets_at(call)
        return nets.tagged(await nets.activate(call.args["name"]))

    async def deactivate(call: Call) -> dict[str, Any]:
        nets = await nets_at(call)
        return nets.tagged(await nets.deactivate(call.args["name"]))

    async def interfaces(call: Call) -> list[dict[str, Any]]:
        nets = await nets_at(call)
        return matching(nets.tagged(await nets.interfaces()), call.query)

    tag = "networks"
    # Every route twice: at the root (every host's networks in the list; an item path
    # names the local host's network of that name, else the one host's that has one; a
    # new one is the local host's) and at the host's own address, /hosts/<host>/networks/...
    for base, of in (("", ""), ("/hosts/<host>", " of one host")):
        table.add(f"{base}/networks", "POST", create, f"Make a virtual network{of}", tag,
                  body=CREATE, response=NETWORK_SCHEMA, status=201,
                  description="At the root: on the local host. The host's interfaces and "
                              "subnets are the ones checked (another host's as its libvirtd "
                              "knows them). NAT or isolated: a subnet nothing else uses "
                              "(KCHNET0009E), the gateway at its first address, DHCP over "
                              "its upper half. Bridge: through a host bridge; macvtap: "
                              "through a host interface. Defined, set to autostart and "
                              "started; undefined again if it cannot start.")
        table.add(f"{base}/interfaces", "GET", interfaces,
                  f"The host's network interfaces{of}", tag,
                  query={"type": {"type": "string"}, "status": {"type": "string"}},
                  response={"type": "array", "items": INTERFACE_SCHEMA},
                  description="What a bridged (`type=bridge`) or macvtap (`type=nic`) "
                              "network may use. At the root: the local host's; another "
                              "host's as its libvirtd's interface driver knows them.")
        table.add(f"{base}/networks", "GET", list_networks, f"List virtual networks{of}", tag,
                  query={"connection": {"type": "string"}, "state": {"type": "string"},
                         **({} if base else {"host": {"type": "string"}})},
                  response={"type": "array", "items": NETWORK_SCHEMA},
                  description="Read from libvirt at each call; `used_by` names the templates "
                              "and VMs that join each. At the root, every connected host's, "
                              "each with its `host`.")
        item = f"{base}/networks/<name>"
        table.add(item, "GET", get, f"Look at a network{of}", tag, response=NETWORK_SCHEMA)
        table.add(item, "PUT", update, f"Change a network's autostart{of}", tag,
                  body=UPDATE, response=NETWORK_SCHEMA)
        table.add(item, "DELETE", delete, f"Delete a network{of}", tag, status=204,
                  description="Only when inactive (KCHNET0005E) and no template or VM uses "
                              "it (KCHNET0003E).")
        table.add(f"{item}/activate", "POST", activate, f"Start a network{of}", tag,
                  response=NETWORK_SCHEMA)
        table.add(f"{item}/deactivate", "POST", deactivate, f"Stop a network{of}", tag,
                  response=NETWORK_SCHEMA,
                  description="Refused while a running VM is connected (KCHNET0007E).")

