"""/storagepools and their /storagevolumes (reading for all, changing for admins)."""

from __future__ import annotations

from typing import Any

from kimchid.api.routes import TASK_SCHEMA, Call, Reply, RouteTable, matching
from kimchid.model.hosts import Host, Hosts
from kimchid.model.storage import (
    CHUNK_LIMIT,
    POOL_NEEDS,
    POOL_STATES,
    POOL_TYPES,
    UPLOAD_FORMATS,
    Storage,
    VolumeTransfers,
    upload_headers,
)

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
    "type": "object", "additionalProperties": False, "required": ["name"],
    "properties": {
        "name": NAME,
        "capacity": {"type": "integer", "minimum": 1, "maximum": 2 ** 50,
                     "description": "bytes (1 MiB to 1 PiB); with upload, the bytes to come"},
        "format": {"enum": list(UPLOAD_FORMATS),
                   "description": "qcow2 (default) or raw; with upload also iso "
                                  "(default raw)"},
        "url": {"type": "string", "pattern": "^[Hh][Tt][Tt][Pp][Ss]?://[^\\s]+$",
                "maxLength": 4096,
                "description": "download the volume from this http(s) URL (a task)"},
        "checksum": {"type": "string", "pattern": "^sha256:[0-9a-fA-F]{64}$",
                     "description": "with url: the download must have this sha256"},
        "upload": {"const": True, "description": "make an upload target of capacity bytes: "
                                                 "PUT them to .../content"},
    },
    "allOf": [
        # a download takes its size from the server: url with no capacity, format or upload
        {"if": {"required": ["url"]},
         "then": {"not": {"anyOf": [{"required": ["capacity"]}, {"required": ["upload"]},
                                    {"required": ["format"]}]}},
         "else": {"required": ["capacity"]}},
        {"if": {"required": ["checksum"]}, "then": {"required": ["url"]}},
        # an empty volume: 1 MiB at least, qcow2 or raw
        {"if": {"not": {"anyOf": [{"required": ["upload"]}, {"required": ["url"]}]}},
         "then": {"properties": {"capacity": {"minimum": 1048576},
                                 "format": {"enum": ["qcow2", "raw"]}}}},
    ],
}
UPLOAD_SCHEMA = {
    "type": "object", "required": ["name", "pool", "path", "format", "capacity", "received",
                                   "complete"],
    "properties": {
        "name": {"type": "string"}, "pool": {"type": "string"}, "host": {"type": "string"},
        "path": {"type": "string", "description": "where the volume will be"},
        "format": {"enum": list(UPLOAD_FORMATS)},
        "capacity": {**_INT, "description": "bytes to come in all"},
        "received": {**_INT, "description": "bytes arrived: the next chunk starts there"},
        "complete": {"type": "boolean"},
    },
}
CLONE_VOLUME = {"type": "object", "additionalProperties": False, "required": ["name"],
                "properties": {"name": NAME}}
RESIZE = {"type": "object", "additionalProperties": False, "required": ["size"],
          "properties": {"size": {"type": "integer", "minimum": 1048576, "maximum": 2 ** 50,
                                  "description": "the new capacity in bytes (only larger)"}}}


def register(table: RouteTable, hosts: Hosts, transfers: VolumeTransfers | None = None
             ) -> None:
    """``transfers``: for downloads, uploads, wipes and clones of volumes (the other routes
    work without)."""

    def moving() -> VolumeTransfers:
        if transfers is None:
            raise RuntimeError("volume transfers need the task service")
        return transfers

    async def host_at(call: Call) -> Host:
        return await hosts.addressed(call.args, "storage pool", "storagepools",
                                     lambda h, name: h.storage.get_pool(name))

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
        if transfers is not None:
            transfers.watch_quietly()
        st = await pools_at(call)
        return matching(st.tagged(await st.list_volumes(call.args["name"])), call.query)

    async def create_volume(call: Call) -> Reply:
        host = await host_at(call)
        st = host.storage
        pool = call.args["name"]
        where = f"{_base(call)}/storagepools/{pool}"
        if "url" in call.body:
            task = await moving().download(host, pool, call.body, _owner(call), where)
            return Reply(202, task, {"Location": f"/tasks/{task['id']}"})
        if call.body.get("upload"):
            up = await moving().start_upload(host, pool, {"format": "raw", **call.body})
            return Reply(201, up, {"Location": f"{where}/storagevolumes/{up['name']}/content",
                                   **upload_headers(moving().upload(host, pool, up["name"]))})
        v = st.tagged(await st.create_volume(pool, {"format": "qcow2", **call.body}))
        return Reply(201, v, {"Location": f"{where}/storagevolumes/{v['name']}"})

    async def wipe(call: Call) -> Reply:
        host = await host_at(call)
        task = await moving().wipe(host, call.args["name"], call.args["vol"], _owner(call),
                                   f"{_base(call)}/storagepools/{call.args['name']}")
        return Reply(202, task, {"Location": f"/tasks/{task['id']}"})

    async def clone(call: Call) -> Reply:
        host = await host_at(call)
        task = await moving().clone(host, call.args["name"], call.args["vol"],
                                    call.body["name"], _owner(call),
                                    f"{_base(call)}/storagepools/{call.args['name']}")
        return Reply(202, task, {"Location": f"/tasks/{task['id']}"})

    async def upload_state(call: Call) -> Reply:
        host = await host_at(call)
        up = moving().upload(host, call.args["name"], call.args["vol"])
        return Reply(200, host.storage.tagged(up.view()), upload_headers(up))

    async def put_content(call: Call) -> Reply:
        host = await host_at(call)
        up = await moving().write_chunk(host, call.args["name"], call.args["vol"],
                                        call.header("Content-Range"), call.data)
        return Reply(204, None, upload_headers(up))

    async def cancel_upload(call: Call) -> Reply:
        host = await host_at(call)
        await moving().cancel_upload(host, call.args["name"], call.args["vol"])
        return Reply(204, None)

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
        table.add(f"{item}/storagevolumes", "POST", create_volume,
                  f"Make a volume: empty, downloaded or uploaded{of}", tag,
                  body=CREATE_VOLUME, response=VOLUME_SCHEMA, status=201,
                  also={202: ("with url: the volume.download task", TASK_SCHEMA),
                        201: ("with upload: the upload target (PUT the bytes to its "
                              "Location)", UPLOAD_SCHEMA)},
                  description="`{name, capacity, format}`: an empty qcow2 (default) or raw "
                              "volume, sparse; a raw volume larger than the pool's free space "
                              "is refused (KCHVOL0003E). `{name, url, checksum?}`: 202, a "
                              "volume.download task (a worker of the host streams the URL "
                              "into <name>.part, resumes it with Range after a crash). "
                              "`{name, capacity, format, upload: true}`: 201, an upload "
                              "target; PUT the bytes to `.../content`. Downloads and uploads "
                              "only in dir and netfs pools (KCHVOL0008E).")
        vol = f"{item}/storagevolumes/<vol>"
        table.add(vol, "GET", get_volume, f"Look at a volume{of}", tag,
                  response=VOLUME_SCHEMA)
        table.add(vol, "DELETE", delete_volume, f"Delete a volume and its data{of}", tag,
                  status=204, description="Refused while a VM has it as a disk (KCHVOL0005E).")
        table.add(f"{vol}/resize", "POST", resize, f"Grow a volume{of}", tag, body=RESIZE,
                  response=VOLUME_SCHEMA,
                  description="Only larger (KCHVOL0007E), and not while a running VM uses it.")
        table.add(f"{vol}/wipe", "POST", wipe, f"Overwrite a volume with zeros{of}", tag,
                  response=TASK_SCHEMA, status=202,
                  description="A volume.wipe task on a worker of the host; not while a running "
                              "VM uses it (KCHVOL0005E). A qcow2 volume is left an empty "
                              "qcow2 of the same capacity.")
        table.add(f"{vol}/clone", "POST", clone, f"Copy a volume into a new one{of}", tag,
                  body=CLONE_VOLUME, response=TASK_SCHEMA, status=202,
                  description="A volume.clone task: qemu-img convert into <name>.part, renamed "
                              "when complete; a cancel removes it.")
        content = f"{vol}/content"
        table.add(content, "GET", upload_state, f"How much of an upload has come{of}", tag,
                  response=UPLOAD_SCHEMA,
                  description="Also HEAD. Headers: Upload-Offset (the next byte to send), "
                              "Upload-Length, and Range: bytes=0-<last> once any has come. "
                              "404 (KCHVOL0014E) when the volume is not being uploaded.")
        table.add(content, "PUT", put_content, f"Send a chunk of an upload{of}", tag,
                  octets=True, max_body=CHUNK_LIMIT, status=204,
                  headers={"Content-Range": ("bytes <first>-<last>/<total>", {
                      "type": "string",
                      "pattern": r"^bytes [0-9]{1,19}-[0-9]{1,19}/[0-9]{1,19}$"})},
                  description="The raw bytes (application/octet-stream, at most 64 MiB) with "
                              "Content-Range: bytes a-b/total. A chunk must start where the "
                              "bytes so far end: else 409 (KCHVOL0013E) with Upload-Offset. "
                              "The last byte completes the volume (qcow2 and raw: read by "
                              "qemu-img info first, KCHVOL0016E when it cannot).")
        table.add(content, "DELETE", cancel_upload, f"Give up an upload{of}", tag,
                  status=204, description="What has come so far is removed.")



def _owner(call: Call) -> str:
    return call.who.username if call.who else ""


def _base(call: Call) -> str:
    return f"/hosts/{call.args['host']}" if "host" in call.args else ""
