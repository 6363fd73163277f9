"""kimchi vms: list, look at, create, change, act on and delete virtual machines."""

from __future__ import annotations

import sys
from typing import Any

import click

from kimchi.cli.client import path_of
from kimchi.cli.context import data_option, json_option, parse_data, session
from kimchi.cli.render import Column, size
from kimchi.cli.tasks import start_task, with_wait

STATES = ["running", "paused", "shutoff", "shutdown", "crashed", "blocked", "pmsuspended",
          "nostate"]
VM_COLUMNS: list[Column] = [
    ("NAME", lambda v: v["name"]),
    ("HOST", lambda v: v.get("host")),
    ("STATE", lambda v: v.get("state")),
    ("CPUS", lambda v: v.get("cpus")),
    ("MEMORY", lambda v: size((v.get("memory") or {}).get("current", 0) * 1024 * 1024)),
    ("TEMPLATE", lambda v: v.get("template")),
    ("NETWORKS", lambda v: v.get("networks")),
]
VM_KEYS = ["name", "host", "state", "uuid", "cpus", "maxcpus", "memory", "template", "os",
           "disks", "networks", "interfaces", "graphics", "autostart", "boot", "firmware",
           "machine", "users", "groups", "title", "description", "stats"]
# each action of the API, and what it does, for --help
ACTIONS = {
    "start": "Start a shut-off (or crashed) VM.",
    "poweroff": "Pull the plug: stop the VM at once.",
    "shutdown": "Ask the guest to shut down (ACPI).",
    "reset": "Reset a running VM (a hard reboot).",
    "suspend": "Pause a running VM.",
    "resume": "Resume a paused VM.",
}


def vm_path(name: str, host: str | None, *rest: str) -> str:
    """The VM's address: canonical with --host, else the root one (/vms/<name>)."""
    return path_of("hosts", host, "vms", name, *rest) if host else path_of("vms", name, *rest)


def _complete_vm(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[Any]:
    from kimchi.cli.completion import names

    return names(ctx, "/vms", incomplete)


def _vm_arg(f: Any) -> Any:
    f = click.option("--host", metavar="HOST",
                     help="The VM's host, when several hosts have a VM of that name.")(f)
    return click.argument("name", shell_complete=_complete_vm)(f)


@click.group(invoke_without_command=True)
@json_option
@click.pass_context
def vms(ctx: click.Context) -> None:
    """Virtual machines on every host.

    Without a command: list."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(vms_list)


@vms.command("list")
@click.option("--host", metavar="HOST", help="Only this host's VMs.")
@click.option("--state", type=click.Choice(STATES), help="Only VMs in this state.")
@json_option
def vms_list(host: str | None, state: str | None) -> None:
    """List virtual machines (every host's)."""
    s = session()
    s.output.table(s.client.get("/vms", host=host, state=state), VM_COLUMNS, empty="no VMs")


@vms.command("show")
@_vm_arg
@json_option
def vms_show(name: str, host: str | None) -> None:
    """Show one virtual machine."""
    s = session()
    s.output.record(s.client.get(vm_path(name, host)), VM_KEYS)


def _act(name: str, host: str | None, action: str) -> None:
    s = session()
    vm = s.client.post(vm_path(name, host, action))
    s.output.done(f"{vm['name']}: {vm.get('state')}", vm)


def _action_command(action: str, about: str) -> None:
    @_vm_arg
    @json_option
    def command(name: str, host: str | None) -> None:
        _act(name, host, action)

    vms.command(action, help=about)(command)


for _action, _about in ACTIONS.items():
    _action_command(_action, _about)


@vms.command("stop")
@_vm_arg
@click.option("--force", is_flag=True, help="Power off at once instead of asking the guest.")
@json_option
def vms_stop(name: str, host: str | None, force: bool) -> None:
    """Stop a VM: ask the guest to shut down (shutdown), or with --force poweroff."""
    _act(name, host, "poweroff" if force else "shutdown")


@vms.command("create")
@click.option("--template", "-t", required=True, help="The template to make it from.")
@click.option("--name", help="Its name (default: <template>-vm-N).")
@click.option("--host", help="The host to make it on (default: the local host).")
@click.option("--count", type=click.IntRange(1, 500), help="Make this many: <name>-1 ...")
@click.option("--storagepool", metavar="POOL", help="Put every disk in this pool.")
@click.option("--disk-mode", type=click.Choice(["linked", "full"]),
              help="Image templates: qcow2 leaves over the base, or full copies.")
@data_option
@with_wait
@json_option
def vms_create(template: str, name: str | None, host: str | None, count: int | None,
               storagepool: str | None, disk_mode: str | None, data: str | None, wait: bool,
               timeout: float | None, quiet: bool) -> None:
    """Create virtual machines from a template (a vm.create task)."""
    body = parse_data(data)
    body.update({k: v for k, v in (("template", template), ("name", name), ("host", host),
                                   ("count", count), ("storagepool", storagepool),
                                   ("disk_mode", disk_mode)) if v is not None})
    start_task(session().client.post("/vms", body), wait, timeout, quiet)


@vms.command("set")
@_vm_arg
@click.option("--memory", type=click.IntRange(64), metavar="MIB", help="Memory (shut off).")
@click.option("--cpus", type=click.IntRange(1), help="vCPUs (shut off).")
@click.option("--rename", metavar="NEW", help="A new name (shut off).")
@click.option("--autostart/--no-autostart", default=None, help="Start with the host.")
@data_option
@json_option
def vms_set(name: str, host: str | None, memory: int | None, cpus: int | None,
            rename: str | None, autostart: bool | None, data: str | None) -> None:
    """Change a virtual machine's settings (PUT)."""
    body = parse_data(data)
    if memory is not None:
        body["memory"] = {**body.get("memory", {}), "current": memory}
    body.update({k: v for k, v in (("cpus", cpus), ("name", rename),
                                   ("autostart", autostart)) if v is not None})
    if not body:
        raise click.UsageError("nothing to change: give at least one option")
    s = session()
    vm = s.client.put(vm_path(name, host), body)
    s.output.done(f"{vm['name']}: changed", vm)


@vms.command("delete")
@_vm_arg
@click.option("--yes", "-y", is_flag=True, help="Do not ask (asked only on a terminal).")
@json_option
def vms_delete(name: str, host: str | None, yes: bool) -> None:
    """Delete a virtual machine and its disks (powered off first if running)."""
    s = session()
    if not yes and sys.stdin.isatty() and not s.output.json:
        click.confirm(f"Delete VM {name} and its disks?", abort=True, err=True)
    s.client.delete(vm_path(name, host))
    s.output.done(f"{name}: deleted", {"name": name, "deleted": True})


@vms.command("clone")
@_vm_arg
@click.option("--name", "new", metavar="NEW", help="The clone's name (default: <name>-clone-N).")
@with_wait
@json_option
def vms_clone(name: str, host: str | None, new: str | None, wait: bool,
              timeout: float | None, quiet: bool) -> None:
    """Clone a shut-off VM (a vm.clone task)."""
    body = {"name": new} if new else {}
    start_task(session().client.post(vm_path(name, host, "clone"), body), wait, timeout, quiet)


@vms.command("migrate")
@_vm_arg
@click.option("--to", "target", required=True, metavar="HOST", help="The host to move it to.")
@click.option("--offline", is_flag=True, help="Not live: move a shut-off VM's definition.")
@click.option("--copy-storage", type=click.Choice(["auto", "none", "all"]))
@with_wait
@json_option
def vms_migrate(name: str, host: str | None, target: str, offline: bool,
                copy_storage: str | None, wait: bool, timeout: float | None,
                quiet: bool) -> None:
    """Move a VM to another host (a vm.migrate task)."""
    body: dict[str, Any] = {"host": target}
    if offline:
        body["live"] = False
    if copy_storage:
        body["copy_storage"] = copy_storage
    start_task(session().client.post(vm_path(name, host, "migrate"), body), wait, timeout,
               quiet)


@vms.command("template")
@_vm_arg
@click.option("--name", "template", required=True, metavar="TEMPLATE",
              help="The new template's name.")
@with_wait
@json_option
def vms_template(name: str, host: str | None, template: str, wait: bool,
                 timeout: float | None, quiet: bool) -> None:
    """Make a template of a shut-off VM (a vm.template task)."""
    start_task(session().client.post(vm_path(name, host, "template"), {"name": template}),
               wait, timeout, quiet)
