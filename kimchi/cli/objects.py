"""kimchi hosts, templates, isos, scan, debugreport and tokens."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any

import click

from kimchi.cli.client import CliError, path_of
from kimchi.cli.context import data_option, json_option, parse_data, session
from kimchi.cli.render import Column, size, when
from kimchi.cli.tasks import start_task, wait_task, with_wait


def _complete(path: str) -> Any:
    def complete(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[Any]:
        from kimchi.cli.completion import names

        return names(ctx, path, incomplete)

    return complete


# -- hosts -----------------------------------------------------------------------------

HOST_COLUMNS: list[Column] = [
    ("NAME", lambda h: h["name"]),
    ("STATE", lambda h: h.get("state")),
    ("URI", lambda h: h.get("uri")),
    ("CPUS", lambda h: h.get("cpus")),
    ("MEMORY", lambda h: size(h.get("memory"))),
    ("VMS", lambda h: "{running}/{total} running".format(**(h.get("vms") or {
        "running": 0, "total": 0}))),
    ("WORKERS", lambda h: h.get("workers")),
    ("REASON", lambda h: h.get("reason") or ""),
]


@click.group(invoke_without_command=True)
@json_option
@click.pass_context
def hosts(ctx: click.Context) -> None:
    """The KVM hosts kimchi manages.

    Without a command: list."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(hosts_list)


@hosts.command("list")
@click.option("--state", type=click.Choice(["connected", "connecting", "unreachable"]))
@json_option
def hosts_list(state: str | None) -> None:
    """List the hosts, the local one first."""
    s = session()
    s.output.table(s.client.get("/hosts", state=state), HOST_COLUMNS)


@hosts.command("show")
@click.argument("name", shell_complete=_complete("/hosts"))
@json_option
def hosts_show(name: str) -> None:
    """Show one host."""
    s = session()
    s.output.record(s.client.get(path_of("hosts", name)))


@hosts.command("add")
@click.argument("name")
@click.argument("uri")
@json_option
def hosts_add(name: str, uri: str) -> None:
    """Add a host by its libvirt URI (qemu+ssh://root@h2/system ...); admins only."""
    s = session()
    h = s.client.post("/hosts", {"name": name, "uri": uri})
    s.output.done(f"host {h['name']}: {h.get('state')}", h)


@hosts.command("remove")
@click.argument("name", shell_complete=_complete("/hosts"))
@json_option
def hosts_remove(name: str) -> None:
    """Forget a host (its VMs keep running)."""
    s = session()
    s.client.delete(path_of("hosts", name))
    s.output.done(f"host {name}: removed", {"name": name, "removed": True})


# -- templates -------------------------------------------------------------------------

TEMPLATE_COLUMNS: list[Column] = [
    ("NAME", lambda t: t["name"]),
    ("OS", lambda t: " ".join(str(x) for x in (t.get("os_distro"), t.get("os_version")) if x)
     or "-"),
    ("CPUS", lambda t: (t.get("cpu_info") or {}).get("vcpus")),
    ("MEMORY", lambda t: size((t.get("memory") or {}).get("current", 0) * 1024 * 1024)),
    ("MEDIA", lambda t: "{type}: {path}".format(**{"type": "-", "path": "-",
                                                  **(t.get("source_media") or {})})),
    ("INVALID", lambda t: ", ".join(sorted(t.get("invalid") or {})) or ""),
]


@click.group(invoke_without_command=True)
@json_option
@click.pass_context
def templates(ctx: click.Context) -> None:
    """Templates: what new VMs are made from.

    Without a command: list."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(templates_list)


@templates.command("list")
@json_option
def templates_list() -> None:
    """List templates."""
    s = session()
    s.output.table(s.client.get("/templates"), TEMPLATE_COLUMNS, empty="no templates")


@templates.command("show")
@click.argument("name", shell_complete=_complete("/templates"))
@json_option
def templates_show(name: str) -> None:
    """Show one template."""
    s = session()
    s.output.record(s.client.get(path_of("templates", name)))


@templates.command("create")
@click.argument("name")
@click.option("--iso", metavar="PATH|URL", help="Install from this ISO (a path or a URL).")
@click.option("--image", metavar="PATH|URL", help="Each VM's disk over this qcow2/raw image.")
@click.option("--netboot", is_flag=True, help="Boot new VMs from the network.")
@click.option("--memory", type=click.IntRange(64), metavar="MIB")
@click.option("--cpus", type=click.IntRange(1))
@data_option
@json_option
def templates_create(name: str, iso: str | None, image: str | None, netboot: bool,
                     memory: int | None, cpus: int | None, data: str | None) -> None:
    """Create a template from an ISO, a disk image or the network."""
    body = parse_data(data)
    chosen = [x for x in (iso, image, netboot or None) if x]
    if len(chosen) > 1:
        raise click.UsageError("give one of --iso, --image and --netboot")
    if iso:
        body["source_media"] = {"type": "disk", "path": _absolute(iso)}
    elif image:
        body["source_media"] = {"type": "image", "path": _absolute(image)}
    elif netboot:
        body["source_media"] = {"type": "netboot"}
    if memory is not None:
        body["memory"] = {**body.get("memory", {}), "current": memory}
    if cpus is not None:
        body["cpu_info"] = {**body.get("cpu_info", {}), "vcpus": cpus}
    body["name"] = name
    s = session()
    t = s.client.post("/templates", body)
    s.output.done(f"template {t['name']}: created", t)


@templates.command("delete")
@click.argument("name", shell_complete=_complete("/templates"))
@json_option
def templates_delete(name: str) -> None:
    """Delete a template (refused while VMs use its base image)."""
    s = session()
    s.client.delete(path_of("templates", name))
    s.output.done(f"template {name}: deleted", {"name": name, "deleted": True})


@templates.command("clone")
@click.argument("name", shell_complete=_complete("/templates"))
@json_option
def templates_clone(name: str) -> None:
    """Copy a template (the copy is named <name>-clone<N>)."""
    s = session()
    t = s.client.post(path_of("templates", name, "clone"))
    s.output.done(f"template {t['name']}: created", t)


def _absolute(where: str) -> str:
    """A local path made absolute (the server needs one); a URL as it is."""
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", where):
        return where
    return os.path.abspath(where)


# -- ISOs and the deep scan --------------------------------------------------------------

ISO_COLUMNS: list[Column] = [
    ("NAME", lambda i: i["name"]),
    ("HOST", lambda i: i.get("host")),
    ("OS", lambda i: " ".join(str(x) for x in (i.get("os_distro"), i.get("os_version")) if x)
     or "-"),
    ("SIZE", lambda i: size(i.get("size"))),
    ("BOOTABLE", lambda i: i.get("bootable")),
    ("FOUND BY", lambda i: i.get("found_by")),
    ("PATH", lambda i: i.get("path")),
]


@click.group(invoke_without_command=True)
@json_option
@click.pass_context
def isos(ctx: click.Context) -> None:
    """The ISO library: ISOs in storage pools and those found by scans.

    Without a command: list."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(isos_list)


@isos.command("list")
@click.option("--host", metavar="HOST", help="Only this host's.")
@json_option
def isos_list(host: str | None) -> None:
    """List ISOs."""
    s = session()
    s.output.table(s.client.get("/isos", host=host), ISO_COLUMNS, empty="no ISOs")


@click.command()
@click.argument("path")
@click.option("--host", metavar="HOST", help="Scan on this host (default: the local host).")
@with_wait
@json_option
def scan(path: str, host: str | None, wait: bool, timeout: float | None, quiet: bool) -> None:
    """Deep-scan a folder of the host for ISO images (an iso.scan task).

    PATH is a folder on the server's host, not on this machine."""
    body: dict[str, Any] = {"path": path}
    if host:
        body["host"] = host
    s = session()
    task = start_task(s.client.post("/isos/scan", body), wait, timeout, quiet)
    if wait and not s.output.json:
        found = [i for i in s.client.get("/isos", host=host)
                 if str(i.get("path", "")).startswith(path.rstrip("/") + "/")]
        s.output.table(found, ISO_COLUMNS, empty="no ISO found")
    del task


# -- debug reports -------------------------------------------------------------------

REPORT_COLUMNS: list[Column] = [
    ("NAME", lambda r: r["name"]),
    ("SIZE", lambda r: size(r.get("size"))),
    ("TIME", lambda r: when(r.get("time"))),
    ("FILE", lambda r: r.get("file")),
]


@click.group(invoke_without_command=True)
@click.option("--download", "-d", "download_to", is_flag=False, flag_value=".",
              default=None, metavar="[PATH]",
              help="Make a report, wait, and download it (into PATH, a file or a folder; "
                   "default: the current folder). Same as `debugreport create --download`.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@click.pass_context
def debugreport(ctx: click.Context, download_to: str | None, quiet: bool) -> None:
    """Debug reports (sos report archives of a host); admins only.

    Without a command: make one (create)."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(debugreport_create, name=None, host=None, download_to=download_to,
                   wait=download_to is not None, timeout=None, quiet=quiet)


@debugreport.command("create")
@click.option("--name", help="Its name (default: report-<UTC time>).")
@click.option("--host", metavar="HOST", help="The host to report on (default: local).")
@click.option("--download", "-d", "download_to", is_flag=False, flag_value=".",
              default=None, metavar="[PATH]",
              help="Wait for it, then download it into PATH (a file or a folder; "
                   "default: the current folder).")
@with_wait
@json_option
def debugreport_create(name: str | None, host: str | None, download_to: str | None,
                       wait: bool, timeout: float | None, quiet: bool) -> None:
    """Make a debug report (a debugreport.collect task)."""
    body = {k: v for k, v in (("name", name), ("host", host)) if v}
    s = session()
    task = s.client.post("/debugreports", body)
    if download_to is None:
        start_task(task, wait, timeout, quiet)
        return
    task = wait_task(s.client, s.output, task["id"], timeout, quiet)
    if task["status"] != "finished":
        from kimchi.cli.tasks import report_task

        report_task(s.output, task, wait=True)
    report = str(task.get("target_uri", "")).rsplit("/", 1)[-1]
    _download(report, download_to)


@debugreport.command("list")
@json_option
def debugreport_list() -> None:
    """List finished debug reports, newest first."""
    s = session()
    s.output.table(s.client.get("/debugreports"), REPORT_COLUMNS, empty="no reports")


@debugreport.command("download")
@click.argument("name", shell_complete=_complete("/debugreports"))
@click.option("--output", "-o", "download_to", default=".", show_default=True,
              metavar="PATH", help="A file, a folder, or - for standard output.")
@json_option
def debugreport_download(name: str, download_to: str) -> None:
    """Download a debug report's archive."""
    _download(name, download_to)


@debugreport.command("delete")
@click.argument("name", shell_complete=_complete("/debugreports"))
@json_option
def debugreport_delete(name: str) -> None:
    """Delete a debug report."""
    s = session()
    s.client.delete(path_of("debugreports", name))
    s.output.done(f"debug report {name}: deleted", {"name": name, "deleted": True})


def _download(name: str, where: str) -> None:
    s = session()
    report = s.client.get(path_of("debugreports", name))
    content = path_of("debugreports", name, "content")
    if where == "-":
        s.client.download(content, sys.stdout.buffer)
        return
    target = Path(where)
    if target.is_dir():
        target = target / Path(str(report.get("file") or name)).name
    part = target.with_name(f".{target.name}.part")
    try:
        with open(part, "wb") as f:
            os.chmod(part, 0o600)  # a report holds the host's configuration and logs
            s.client.download(content, f)
        os.replace(part, target)
    except OSError as e:
        part.unlink(missing_ok=True)
        raise CliError(f"cannot write {target}: {e.strerror}") from None
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    got = target.stat().st_size
    s.output.done(f"{target} ({size(got)})", {**report, "path": str(target.resolve()),
                                                "bytes": got})


# -- API tokens ----------------------------------------------------------------------

TOKEN_COLUMNS: list[Column] = [
    ("ID", lambda t: t["id"]),
    ("NAME", lambda t: t.get("name")),
    ("USER", lambda t: t.get("username")),
    ("CREATED BY", lambda t: t.get("created_by")),
    ("CREATED", lambda t: when(t.get("created"))),
    ("EXPIRES", lambda t: when(t.get("expires")) if t.get("expires") else "never"),
]


@click.group(invoke_without_command=True)
@json_option
@click.pass_context
def tokens(ctx: click.Context) -> None:
    """API tokens for scripts (KIMCHI_TOKEN); admins only.

    Without a command: list."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(tokens_list)


@tokens.command("list")
@json_option
def tokens_list() -> None:
    """List API tokens (never their secrets)."""
    s = session()
    s.output.table(s.client.get("/tokens"), TOKEN_COLUMNS, empty="no tokens")


@tokens.command("create")
@click.argument("name")
@click.option("--for", "username", metavar="USER", help="The user it acts as (default: you).")
@click.option("--expires-in", type=click.FloatRange(min=0, min_open=True), metavar="SECONDS")
@json_option
def tokens_create(name: str, username: str | None, expires_in: float | None) -> None:
    """Issue a token; its secret is printed this once."""
    body: dict[str, Any] = {"name": name}
    if username:
        body["username"] = username
    if expires_in is not None:
        body["expires_in"] = expires_in
    s = session()
    t = s.client.post("/tokens", body)
    if s.output.json:
        s.output.data(t)
    else:
        s.output.stdout.print(t["token"], highlight=False, markup=False)
        s.output.note(f"token {t['id']} ({t['name']}) acts as {t['username']}: keep the "
                      "secret above, it is not shown again")


@tokens.command("revoke")
@click.argument("token_id", metavar="ID")
@json_option
def tokens_revoke(token_id: str) -> None:
    """Revoke a token."""
    s = session()
    s.client.delete(path_of("tokens", token_id))
    s.output.done(f"token {token_id}: revoked", {"id": token_id, "revoked": True})


# -- the audit log -------------------------------------------------------------------

AUDIT_COLUMNS: list[Column] = [
    ("TIME", lambda e: when(e.get("time"))),
    ("USER", lambda e: e.get("user")),
    ("FROM", lambda e: e.get("address")),
    ("METHOD", lambda e: e.get("method") if e.get("kind") != "task.end" else "(task)"),
    ("PATH", lambda e: e.get("path")),
    ("STATUS", lambda e: e.get("task_status") if e.get("kind") == "task.end"
     else e.get("status")),
    ("ERRCODE", lambda e: e.get("errcode") or ""),
    ("TASK", lambda e: e.get("task") or ""),
]


@click.command()
@click.option("--user", metavar="USER", help="Only this user's changes (-: not signed in).")
@click.option("--since", metavar="TIME", help="From this time: ISO 8601 or epoch seconds.")
@click.option("--until", metavar="TIME", help="Up to this time (same forms).")
@click.option("--limit", type=click.IntRange(1, 1000), default=100, show_default=True)
@json_option
def audit(user: str | None, since: str | None, until: str | None, limit: int) -> None:
    """Who changed what, from where, with what result (newest first); admins only."""
    s = session()
    found = s.client.get("/auditlog", user=user, since=since, until=until, limit=limit)
    s.output.table(found, AUDIT_COLUMNS, empty="no entries")
