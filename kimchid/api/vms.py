"""/vms: the virtual machines: made from templates, listed, changed, started, stopped, deleted."""

from __future__ import annotations

from typing import Any

from kimchi.errors import InvalidOperation
from kimchid.api.access import VM_ADDRESSES, Access
from kimchid.api.routes import TASK_SCHEMA, Call, RawJSON, Reply, RouteTable, matching
from kimchid.api.templates import CLOUD_INIT
from kimchid.auth import policy
from kimchid.model.capabilities import check_guest_needs
from kimchid.model.hosts import Hosts
from kimchid.model.vm_clone import VmCloner
from kimchid.model.vm_create import MAX_COUNT, VmCreator
from kimchid.model.vm_migrate import VmMigrator
from kimchid.model.vm_template import VmTemplater
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
                 "description": "the host to make it on (default: local; for an image "
                                "template, the host of its base); its pools and networks "
                                "named by the template must be there"},
        "count": {"type": "integer", "minimum": 1, "maximum": MAX_COUNT, "default": 1,
                  "description": "make this many VMs in one task: <name>-1, <name>-2... "
                                 "(without a name, the first free <template>-vm-N); all "
                                 "made, or none"},
        "disk_mode": {"enum": ["linked", "full"], "default": "linked",
                      "description": "image templates: each disk a qcow2 leaf over the "
                                     "template's read-only base (made at once, whatever its "
                                     "size), or a full copy of it (a worker of the host "
                                     "copies it, with progress)"},
        "cloud_init": {**CLOUD_INIT, "description": "over the template's cloud_init, field "
                                                    "by field"},
    },
}
NIC_MODEL = {"enum": ["virtio", "e1000e", "e1000", "rtl8139"]}
MAC = {"type": "string", "pattern": r"^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$"}
#: VM settings a PUT changes besides the above (kimchid.model.vms._update says how)
SETTINGS: dict[str, Any] = {
    "autostart": {"type": "boolean", "description": "started with the host (any state)"},
    "boot": {"type": "array", "minItems": 1, "maxItems": 3, "uniqueItems": True,
             "items": {"enum": ["hd", "cdrom", "network"]},
             "description": "boot order; only when shut off"},
    "bootmenu": {"type": "boolean",
                 "description": "the firmware offers its boot menu; only when shut off"},
    "cpu_topology": {
        "type": ["object", "null"], "additionalProperties": False,
        "required": ["sockets", "cores", "threads"],
        "properties": {k: {"type": "integer", "minimum": 1, "maximum": 512}
                       for k in ("sockets", "cores", "threads")},
        "description": "sockets x cores x threads must make the maximum vCPUs (maxcpus, "
                       "after this request's cpus/maxcpus; KCHVM0053E); null: libvirt's; "
                       "only when shut off"},
    "nic_model": {"anyOf": [NIC_MODEL, {
        "type": "object", "minProperties": 1, "maxProperties": 64,
        "propertyNames": MAC, "additionalProperties": NIC_MODEL}],
        "description": "the model of every network interface, or {mac: model} of some; "
                       "only when shut off"},
    "machine": {"type": "string", "pattern": r"^(q35|pc|pc-q35-[0-9.]+|pc-i440fx-[0-9.]+)$",
                "description": "another version of the same chipset (q35 stays q35; "
                               "KCHVM0055E otherwise); only when shut off"},
    "firmware": {"enum": ["bios", "uefi"],
                 "description": "only when shut off: the installed OS must boot that way"},
    "secure_boot": {"type": "boolean",
                    "description": "uefi on q35 only (KCHVM0054E); only when shut off"},
    "tpm": {"type": "boolean", "description": "a TPM 2.0 (swtpm); only when shut off"},
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
        **SETTINGS,
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
        "serial_console": {"type": "boolean",
                           "description": "it has a serial console (.../serial)"},
        "disks": {"type": "array"},
        "networks": {"type": "array", "items": {"type": "string"},
                     "description": "the libvirt networks of its interfaces"},
        "users": {"type": "array", "items": {"type": "string"}},
        "groups": {"type": "array", "items": {"type": "string"}},
        "screenshot": {"type": ["string", "null"]},
        "autostart": {"type": "boolean"},
        "boot": {"type": "array", "items": {"type": "string"}},
        "bootmenu": {"type": "boolean"},
        "maxcpus": {"type": "integer", "description": "the vCPUs it may have at most"},
        "cpu_topology": {"type": ["object", "null"],
                         "properties": {k: {"type": "integer"}
                                        for k in ("sockets", "cores", "threads")}},
        "machine": {"type": ["string", "null"], "description": "libvirt's machine type"},
        "firmware": {"enum": ["bios", "uefi"]},
        "secure_boot": {"type": "boolean"},
        "tpm": {"type": "boolean"},
        "interfaces": {"type": "array", "items": {"type": "object", "properties": {
            "mac": {"type": ["string", "null"]}, "type": {"type": ["string", "null"]},
            "network": {"type": ["string", "null"]}, "model": {"type": ["string", "null"]}}}},
        "os": {"type": ["string", "null"], "description": "libosinfo's id of its OS"},
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
             cloner: VmCloner, access: Access, migrator: VmMigrator,
             templater: VmTemplater) -> None:
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
        if host.local and any(k in call.body for k in ("firmware", "secure_boot", "tpm")):
            check_guest_needs(f"Virtual machine {name}", call.body,
                              await creator.capabilities.get())
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
                  description="Memory, vCPUs, graphics, the name, boot order and menu, CPU "
                              "topology, NIC models, machine, firmware and TPM only when shut "
                              "off (400 KCHVM0013E/KCHVM0014E otherwise); users, groups and "
                              "autostart any time. A rename answers 303 to the new URI.")
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

    async def template_vm(call: Call) -> Reply:
        host, vm = access.vm_at(call.who, call.args)
        task = await templater.make(host, vm["name"], call.body["name"],
                                    call.who.username if call.who else "")
        return Reply(202, task, {"Location": f"/tasks/{task['id']}"})

    for at, where in VM_ADDRESSES:
        table.add(f"{at}/template", "POST", template_vm,
                  f"Make a template of a shut-off virtual machine{where}", "vms", status=202,
                  response=TASK_SCHEMA,
                  body={"type": "object", "additionalProperties": False, "required": ["name"],
                        "properties": {"name": {**NAME, "description": "the new template's"}}},
                  description="202 with a `vm.template` task: a worker of the VM's host "
                              "copies each disk to a new read-only base owned by the new "
                              "template (its `vm.template.disks` job reports the progress) "
                              "and makes a qcow2 leaf over it; the VM is then redefined on "
                              "its leaves and its old files removed. New VMs of the template "
                              "are leaves over the same bases (`disk_mode`). The VM must be "
                              "shut off and stays so until the copy is made (KCHVM0019E); a "
                              "failed or cancelled task leaves it exactly as it was.")
