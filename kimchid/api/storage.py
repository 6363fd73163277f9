"""/storagepools and their /storagevolumes (reading for all, changing for admins)."""

from __future__ import annotations

from typing import Any

from kimchid.api.routes import Call, Reply, RouteTable, matching
from kimchid.model.hosts import Host, Hosts
from kimchid.model.storage import POOL_NEEDS, POOL_STATES, POOL_TYPES, VOLUME_FORMATS, Storage

NAME = {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$",
        "description": "letters, digits, '.', '-' and '_'"}
_INT = {"type": "integer", "minimum": 0}
POOL_SCHEMA = {
    "type": "object",
    "required": ["name", "type", "state", "autostart", "capacity", "allocated", "available",
                 "path", "source", "in_use", "used_by"],
    "properties": {
        "name": {"type": "string"}, "uuid": {"type": "string"},
        "type": {"type": "string"}, "state": {"enum": list(POOL_STATES)},
        "autostart": {"type": "boolean"}, "persistent": {"type": "boolean"},
        "capacity": {**_INT, "description": "bytes"},
        "allocated": {**_INT, "description": "bytes"},
        "available": {**_INT, "description": "bytes"},
        "nr_volumes": _INT, "path": {"type": "string"}, "source": {"type": "object"},
        "in_use": {"type": "boolean"},
        "used_by": {"type": "object", "properties": {
            "templates": {"type": "array", "items": {"type": "string"}},
            "vms": {"type": "array", "items": {"type": "string"}}}},
        "error": {"type": "string", "description": "why libvirt cannot describe it "
                                                  "(state inaccessible)"},
        "host": {"type": "string", "description": "the host it is on"},
    },
}
SOURCE = {
    "type": "object", "additionalProperties": False,
    "properties": {
        "host": {"type": "string", "pattern": "^[A-Za-z0-9.:_-]{1,253}$",
                 "description": "netfs and iscsi: the server"},
        "path": {"type": "string", "minLength": 1, "maxLength": 4096,
                 "description": "netfs: the exported folder"},
        "devices": {"type": "array", "minItems": 1, "maxItems": 64,
                    "items": {"type": "string", "pattern": "^/dev/[A-Za-z0-9/_.:-]+$"},
                    "description": "logical: the block devices of the volume group"},
        "target": {"type": "string", "pattern": "^[A-Za-z0-9.:_-]{1,223}$",
                   "description": "iscsi: the target's IQN"},
        "port": {"type": "integer", "minimum": 1, "maximum": 65535},
    },
}
CREATE_POOL = {
    "type": "object", "additionalProperties": False, "required": ["name", "type"],
    "properties": {
        "name": NAME, "type": {"enum": list(POOL_TYPES)},
        "path": {"type": "string", "minLength": 1, "maxLength": 4096, "pattern": "^/",
                 "x-errcode": "KCHPOOL0004E", "x-reason": "must be an absolute path",
                 "description": "dir: the folder (made if missing); netfs: the mount point"},
        "source": SOURCE,
    },
    # what each type needs (model.storage.check_pool_request checks the same)
    "allOf": [
        {"if": {"properties": {"type": {"const": "dir"}}},
         "then": {"required": ["path"], "x-errcode": "KCHPOOL0004E",
                  "x-reason": "a dir pool needs a path"}}, *(
        {"if": {"properties": {"type": {"const": kind}}},
         "then": {"required": ["source"], "x-errcode": "KCHPOOL0004E",
                  "x-reason": f"a {kind} pool needs source.{', source.'.join(need)}",
                  "properties": {"source": {
                      "required": list(need), "x-errcode": "KCHPOOL0004E",
                      "x-reason": f"a {kind} pool needs source.{', source.'.join(need)}"}}}}
        for kind, need in POOL_NEEDS.items() if need)],
}
UPDATE_POOL = {"type": "object", "additionalProperties": False, "required": ["autostart"],
               "properties": {"autostart": {"type": "boolean"}}}
VOLUME_SCHEMA = {
    "type": "object",
    "required": ["name", "path", "type", "capacity", "allocation", "format", "used_by"],
    "properties": {
        "name": {"type": "string"}, "path": {"type": "string"}, "type": {"type": "string"},
        "capacity": {**_INT, "description": "bytes"},
        "allocation": {**_INT, "description": "bytes on disk"},
        "host": {"type": "string", "description": "the host it is on"},
        "format": {"type": "string"},
        "used_by": {"type": "array", "items": {"type": "string"},
                    "description": "VMs with it as a disk"},
    },
}
CREATE_VOLUME = {
    "type": "object", "additionalProperties": False, "required": ["name", "capacity"],
    "properties": {
        "name": NAME,
        "capacity": {"type": "integer", "minimum": 1048576, "maximum": 2 ** 50,
                     "description": "bytes (1 MiB to 1 PiB)"},
        "format": {"enum": list(VOLUME_FORMATS), "default": "qcow2"},
    },
}
RESIZE = {"type": "object", "additionalProperties": False, "required": ["size"],
          "properties": {"size": {"type": "integer", "minimum": 1048576, "maximum": 2 ** 50,
                                  "description": "the new capacity in bytes (only larger)"}}}


def register(table: RouteTable, hosts: Hosts) -> None:
    async def pools_at(call: Call) -> Storage:
        """The storage of the host the path names (see Hosts.addressed)."""
        return (await hosts.addressed(call.args, "storage pool", "storagepools",
                                      lambda h, name: h.storage.get_pool(name))).storage

    async def list_pools(call: Call) -> list[dict[str, Any]]:
        async def read(h: Host) -> list[dict[str, Any]]:
            return h.storage.tagged(await h.storage.list_pools())

        return matching(await hosts.gather(call.args, read), call.query)

    async def create_pool(call: Call) -> Reply:
        st = await pools_at(call)
        p = st.tagged(await st.create_pool(call.body))
        return Reply(201, p, {"Location": f"{_base(call)}/storagepools/{p['name']}"})

    async def get_pool(call: Call) -> dict[str, Any]:
        st = await pools_at(call)
        return st.tagged(await st.get_pool(call.args["name"]))

    async def update_pool(call: Call) -> dict[str, Any]:
        st = await pools_at(call)
        return st.tagged(await st.set_autostart(call.args["name"], call.body["autostart"]))

    async def delete_pool(call: Call) -> Reply:
        await (await pools_at(call)).delete_pool(call.args["name"])
        return Reply(204, None)

    async def activate(call: Call) -> dict[str, Any]:
        st = await pools_at(call)
        return st.tagged(await st.activate(call.args["name"]))

    async def deactivate(call: Call) -> dict[str, Any]:
        st = await pools_at(call)
        return st.tagged(await st.deactivate(call.args["name"]))

    async def refresh(call: Call) -> dict[str, Any]:
        st = await pools_at(call)
        return st.tagged(await st.refresh(call.args["name"]))

    async def list_volumes(call: Call) -> list[dict[str, Any]]:
        st = await pools_at(call)
        return matching(st.tagged(await st.list_volumes(call.args["name"])), call.query)

    async def create_volume(call: Call) -> Reply:
        st = await pools_at(call)
        pool = call.args["name"]
        v = st.tagged(await st.create_volume(pool, call.body))
        return Reply(201, v, {"Location": f"{_base(call)}/storagepools/{pool}/storagevolumes/"
                                          f"{v['name']}"})

    async def get_volume(call: Call) -> dict[str, Any]:
        st = await pools_at(call)
        return st.tagged(await st.get_volume(call.args["name"], call.args["vol"]))

    async def delete_volume(call: Call) -> Reply:
        await (await pools_at(call)).delete_volume(call.args["name"], call.args["vol"])
        return Reply(204, None)

    async def resize(call: Call) -> dict[str, Any]:
        st = await pools_at(call)
        return st.tagged(await st.resize_volume(call.args["name"], call.args["vol"],
                                               call.body["size"]))

    tag = "storage"
    # Every route twice: at the root (every host's pools in the list; an item path names
    # the local host's pool of that name, else the one host's that has one) and at the
    # host's own address, /hosts/<host>/storagepools/...
    for base, of in (("", ""), ("/hosts/<host>", " of one host")):
        table.add(f"{base}/storagepools", "GET", list_pools, f"List storage pools{of}", tag,
                  query={"type": {"type": "string"}, "state": {"type": "string"},
                         **({} if base else {"host": {"type": "string"}})},
                  response={"type": "array", "items": POOL_SCHEMA},
                  description="Read from libvirt at each call (pools made with virsh show "
                              "too); `used_by` names the templates and VMs with disks there. "
                              "At the root, every connected host's, each with its `host`.")
        table.add(f"{base}/storagepools", "POST", create_pool, f"Make a storage pool{of}", tag,
                  body=CREATE_POOL, response=POOL_SCHEMA, status=201,
                  description="Defined, built (a dir pool's folder is made), set to autostart "
                              "and started; if a step fails, the earlier ones are undone. At "
                              "the root: on the local host.")
        item = f"{base}/storagepools/<name>"
        table.add(item, "GET", get_pool, f"Look at a storage pool{of}", tag,
                  response=POOL_SCHEMA)
        table.add(item, "PUT", update_pool, f"Change a pool's autostart{of}", tag,
                  body=UPDATE_POOL, response=POOL_SCHEMA)
        table.add(item, "DELETE", delete_pool, f"Forget a storage pool{of}", tag,
                  status=204, description="Only when inactive (KCHPOOL0005E) and no template "
                                          "names it (KCHPOOL0006E). Its files stay on disk.")
        table.add(f"{item}/activate", "POST", activate, f"Start a storage pool{of}", tag,
                  response=POOL_SCHEMA)
        table.add(f"{item}/deactivate", "POST", deactivate, f"Stop a storage pool{of}", tag,
                  response=POOL_SCHEMA,
                  description="Refused while a running VM has a disk there (KCHPOOL0007E).")
        table.add(f"{item}/refresh", "POST", refresh,
                  f"Look for volumes again (files copied in by hand){of}", tag,
                  response=POOL_SCHEMA)
        table.add(f"{item}/storagevolumes", "GET", list_volumes, f"List a pool's volumes{of}",
                  tag, query={"format": {"type": "string"}, "type": {"type": "string"}},
                  response={"type": "array", "items": VOLUME_SCHEMA})
        table.add(f"{item}/storagevolumes", "POST", create_volume, f"Make a volume{of}", tag,
                  body=CREATE_VOLUME, response=VOLUME_SCHEMA, status=201,
                  description="qcow2 (default) or raw, sparse. A raw volume larger than the "
                              "pool's free space is refused (KCHVOL0003E).")
        vol = f"{item}/storagevolumes/<vol>"
        table.add(vol, "GET", get_volume, f"Look at a volume{of}", tag,
                  response=VOLUME_SCHEMA)
        table.add(vol, "DELETE", delete_volume, f"Delete a volume and its data{of}", tag,
                  status=204, description="Refused while a VM has it as a disk (KCHVOL0005E).")
        table.add(f"{vol}/resize", "POST", resize, f"Grow a volume{of}", tag, body=RESIZE,
                  response=VOLUME_SCHEMA,
                  description="Only larger (KCHVOL0007E), and not while a running VM uses it.")



def _base(call: Call) -> str:
    return f"/hosts/{call.args['host']}" if "host" in call.args else ""
