"""/vms: the virtual machines: made from templates, listed, changed, started, stopped, deleted."""

from __future__ import annotations

from typing import Any

from kimchi.errors import InvalidOperation
from kimchid.api.access import VM_ADDRESSES, Access
from kimchid.api.routes import TASK_SCHEMA, Call, RawJSON, Reply, RouteTable, matching
from kimchid.auth import policy
from kimchid.model.hosts import Hosts
from kimchid.model.vm_clone import VmCloner
from kimchid.model.vm_create import VmCreator
from kimchid.model.vm_migrate import VmMigrator
from kimchid.model.vms import ACTIONS, STATES, Screenshots

NAME = {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}$"}
PRINCIPALS = {"type": "array", "maxItems": 256,
              "items": {"type": "string", "pattern": r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$"}}
CREATE_BODY = {
    "type": "object", "additionalProperties": False, "required": ["template"],
    "properties": {
        "template": {"type": "string", "minLength": 1, "maxLength": 160,
                     "description": "a template's name, or its URI as Kimchi clients send it "
                                    "(/templates/<name>)"},
        "name": {**NAME, "description": "default: <template>-vm-N"},
        "storagepool": {"type": "string", "minLength": 1, "maxLength": 160,
                        "description": "put every disk in this pool instead of the template's "
                                       "(a name or /storagepools/<name>)"},
        "host": {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}$",
                 "description": "the host to make it on (default: local); its pools and "
                                "networks named by the template must be there"},
    },
}
UPDATE_BODY = {
    "type": "object", "additionalProperties": False, "minProperties": 1,
    "properties": {
        "name": {**NAME, "description": "rename: only when shut off; answers 303"},
        "memory": {"type": "object", "additionalProperties": False, "minProperties": 1,
                   "description": "MiB; only when shut off",
                   "properties": {"current": {"type": "integer", "minimum": 64,
                                              "maximum": 4194304},
                                  "maxmemory": {"type": "integer", "minimum": 64,
                                                "maximum": 4194304}}},
        "cpus": {"type": "integer", "minimum": 1, "maximum": 512,
                 "description": "only when shut off"},
        "maxcpus": {"type": "integer", "minimum": 1, "maximum": 512},
        "graphics": {"type": "object", "additionalProperties": False, "minProperties": 1,
                     "properties": {"type": {"enum": ["vnc", "spice"]},
                                    "listen": {"type": "string", "maxLength": 64,
                                               "pattern": r"^[0-9A-Fa-f:.]+$"}}},
        "users": {**PRINCIPALS, "description": "who may use it besides admins"},
        "groups": PRINCIPALS,
    },
}

VM_SCHEMA = {
    "type": "object",
    "required": ["name", "uuid", "host", "state", "cpus", "memory", "graphics", "users",
                 "groups"],
    "properties": {
        "name": {"type": "string"},
        "uuid": {"type": "string"},
        "host": {"type": "string", "description": "the host it runs on (GET /hosts)"},
        "state": {"enum": list(STATES)},
        "persistent": {"type": "boolean"},
        "cpus": {"type": "integer"},
        "memory": {"type": "object", "properties": {"current": {"type": "integer"},
                                                     "maxmemory": {"type": "integer"}},
                   "description": "MiB"},
        "graphics": {"type": ["object", "null"]},
        "disks": {"type": "array"},
        "networks": {"type": "array", "items": {"type": "string"},
                     "description": "the libvirt networks of its interfaces"},
        "users": {"type": "array", "items": {"type": "string"}},
        "groups": {"type": "array", "items": {"type": "string"}},
        "screenshot": {"type": ["string", "null"]},
        "template": {"type": ["string", "null"], "description": "the template it was made from"},
        "stats": {"type": "object", "description": "rates over the last sample interval "
                  "([libvirt] stats_interval); zeros when not running",
                  "properties": {k: {"type": "number"} for k in (
                      "cpu_utilization", "mem_utilization", "io_read", "io_write",
                      "io_throughput", "net_received", "net_sent", "net_throughput")}},
    },
}


MIGRATE_BODY = {
    "type": "object", "additionalProperties": False, "required": ["host"],
    "properties": {
        "host": {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}$",
                 "description": "the host to move it to (GET /hosts)"},
        "live": {"type": "boolean", "default": True,
                 "description": "a running VM keeps running while it moves (false: paused "
                                "meanwhile)"},
        "copy_storage": {"enum": ["auto", "none", "all"], "default": "auto",
                         "description": "none: the disks stay on storage both hosts see (a "
                                        "storage pool of the target holds each); all: every "
                                        "disk is copied; auto: none when the target sees "
                                        "every disk, else all"},
        "bandwidth": {"type": "integer", "minimum": 1, "maximum": 1_000_000,
                      "description": "MiB/s at most (default: no limit)"},
    },
}


def register(table: RouteTable, hosts: Hosts, screenshots: Screenshots, creator: VmCreator,
             cloner: VmCloner, access: Access, migrator: VmMigrator) -> None:
    async def list_vms(call: Call) -> Any:
        q, who = call.query, call.who
        if not q and (who is None or who.is_admin):
            return RawJSON(hosts.listing_json())
        every = hosts.vm_list()
        found = every if who is None else policy.visible_vms(who, every)
        return matching(found, q)

    async def host_vms(call: Call) -> list[dict[str, Any]]:
        found = hosts.get(call.args["host"]).vms.list()
        if call.who is not None:
            found = policy.visible_vms(call.who, found)
        return matching(found, call.query)

    async def get_vm(call: Call) -> dict[str, Any]:
        return access.vm_at(call.who, call.args)[1]

    async def create_vm(call: Call) -> Reply:
        task = await creator.create(call.body, call.who.username if call.who else "")
        return Reply(202, task, {"Location": f"/tasks/{task['id']}"})

    async def update_vm(call: Call) -> Reply:
        host, vm = access.vm_at(call.who, call.args)
        name = vm["name"]
        new = call.body.get("name")
        if new and new != name and host.local and creator.being_made(new):
            raise InvalidOperation("KCHVM0009E", name=new)
        vm = await host.actions.update(name, call.body)
        if vm["name"] != name:
            where = f"/hosts/{host.name}/vms" if "host" in call.args else "/vms"
            return Reply(303, vm, {"Location": f"{where}/{vm['name']}"})
        return Reply(200, vm)

    async def migrate_vm(call: Call) -> Reply:
        host, vm = access.vm_at(call.who, call.args)
        task = await migrator.migrate(host, vm["name"], call.body,
                                      call.who.username if call.who else "")
        return Reply(202, task, {"Location": f"/tasks/{task['id']}"})

    async def delete_vm(call: Call) -> Reply:
        host, vm = access.vm_at(call.who, call.args)
        await host.actions.delete(vm["name"])
        return Reply(204, None)

    table.add("/vms", "GET", list_vms, "List virtual machines", "vms",
              query={"state": {"enum": list(STATES)}, "name": {"type": "string"},
                     "host": {"type": "string", "description": "one host's only"}},
              response={"type": "array", "items": VM_SCHEMA},
              description="Every host's (the local host's first, then by host and name), "
                          "answered from memory, kept current by libvirt's events: changes "
                          "made with virsh show up too. A host that is not connected is "
                          "left out (`GET /hosts` says why); 503 when none is connected.")
    table.add("/hosts/<host>/vms", "GET", host_vms, "List one host's virtual machines", "vms",
              query={"state": {"enum": list(STATES)}, "name": {"type": "string"}},
              response={"type": "array", "items": VM_SCHEMA},
              description="503 (KCHSVC0002E) while that host is not connected.")
    table.add("/vms", "POST", create_vm, "Create a virtual machine from a template", "vms",
              body=CREATE_BODY, status=202, response=TASK_SCHEMA,
              description="Answers 202 with a `vm.create` task once the template, the name, "
                          "the storage pools and (for a remote ISO) streaming are checked; the "
                          "task creates the disk volumes and defines the domain. A failed or "
                          "cancelled creation leaves nothing behind.")

    # Each VM has two addresses: its canonical one, /hosts/<host>/vms/<name>, and the root
    # one, /vms/<name>, which names the local host's VM of that name, else the one host's
    # that has one (409 KCHHOST0007E, with the canonical addresses, when several do).
    for at, where in VM_ADDRESSES:
        table.add(at, "GET", get_vm, f"Look at a virtual machine{where}", "vms",
                  response=VM_SCHEMA)
        table.add(at, "PUT", update_vm, f"Change a virtual machine{where}", "vms",
                  body=UPDATE_BODY, response=VM_SCHEMA,
                  description="Memory, vCPUs, graphics and the name only when shut off (400 "
                              "KCHVM0013E/KCHVM0014E otherwise); users and groups any time. A "
                              "rename answers 303 to the new URI.")
        table.add(at, "DELETE", delete_vm, f"Delete a virtual machine{where} and its disks",
                  "vms", status=204,
                  description="Also when running (it is powered off first). The disks' "
                              "volumes go too; CD-ROMs and iSCSI/SCSI LUNs never.")
        table.add(f"{at}/migrate", "POST", migrate_vm, f"Move a virtual machine{where} to "
                  "another host", "vms", body=MIGRATE_BODY, status=202, response=TASK_SCHEMA,
                  description="202 with a `vm.migrate` task (libvirt's peer-to-peer "
                              "migration): progress in bytes and %, cancellable (the VM stays "
                              "on its source, as it was). A running VM moves live, a shut-off "
                              "one's definition moves; kimchi's metadata goes with it. Refused "
                              "(KCHVM0030E) with the reason: the same host, a host not "
                              "connected, a name taken there, disks the target cannot see "
                              "with copy_storage none.")
        for action, (allowed, _method) in ACTIONS.items():
            async def act(call: Call, action: str = action) -> dict[str, Any]:
                host, vm = access.vm_at(call.who, call.args)
                if action == "start" and await cloner.cloning(vm["uuid"]):
                    raise InvalidOperation("KCHVM0019E", name=vm["name"])
                return await host.actions.act(vm["name"], action)

            table.add(f"{at}/{action}", "POST", act, f"{action.capitalize()} the VM{where}",
                      "vms", response=VM_SCHEMA,
                      description=f"Allowed when the VM is {', '.join(sorted(allowed))}; "
                                  "otherwise 400 (KCHVM0010E).")

    async def screenshot(call: Call) -> bytes:
        host, vm = access.vm_at(call.who, call.args)
        png = await screenshots.get(host.vms, vm["name"])
        req = call.request
        req.setHeader(b"Content-Type", b"image/png")
        req.setHeader(b"Cache-Control", b"max-age=3")
        return png

    for at, where in VM_ADDRESSES:
        table.add(f"{at}/screenshot", "GET", screenshot,
                  f"The VM's screen, as a thumbnail{where}", "vms", raw=True,
                  produces=("image/png",),
                  description="A PNG at most 320x240 keeping the screen's aspect ratio, "
                              "taken at most every 3 s; 404 (KCHVM0012E) when the VM is not "
                              "running.")

    async def clone_vm(call: Call) -> Reply:
        host, vm = access.vm_at(call.who, call.args)
        task = await cloner.clone(host, vm["name"], call.body.get("name"),
                                  call.who.username if call.who else "")
        return Reply(202, task, {"Location": f"/tasks/{task['id']}"})

    for at, where in VM_ADDRESSES:
        table.add(f"{at}/clone", "POST", clone_vm, f"Clone a shut-off virtual machine{where}",
                  "vms", status=202, response=TASK_SCHEMA,
                  body={"type": "object", "additionalProperties": False,
                        "properties": {"name": {**NAME,
                                                "description": "default: <name>-clone-N"}}},
                  description="202 with a `vm.clone` task: a worker of the VM's host copies "
                              "each disk with `qemu-img convert` (its `vm.clone.disks` job "
                              "reports the progress, passed on to the clone task), then the "
                              "new domain is defined on the same host with a new UUID and "
                              "new MAC addresses. The VM must be shut off (KCHVM0016E) and "
                              "stays so until the copy is made (KCHVM0019E). A failed or "
                              "cancelled clone removes its copies.")
