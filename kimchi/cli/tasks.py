"""kimchi tasks and kimchi events, and waiting for a task with a progress bar."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import click
from rich.markup import escape
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from kimchi import i18n
from kimchi.cli.client import (
    TASK_ENDED,
    TASK_FAILED,
    TIMED_OUT,
    Client,
    CliError,
    event_key,
    follow,
    path_of,
)
from kimchi.cli.context import json_option, session
from kimchi.cli.render import Column, Output, when

TASK_COLUMNS: list[Column] = [
    ("ID", lambda t: t["id"]),
    ("KIND", lambda t: t.get("kind")),
    ("STATUS", lambda t: t.get("status")),
    ("PROGRESS", lambda t: "-" if t.get("progress") is None else f"{t['progress']:.0f}%"),
    ("TARGET", lambda t: t.get("target_uri")),
    ("UPDATED", lambda t: when(t.get("updated"))),
    ("MESSAGE", lambda t: t.get("message")),
]
TASK_KEYS = ["id", "kind", "status", "progress", "message", "target_uri", "host", "owner",
             "created", "updated", "result"]


def wait_task(client: Client, output: Output, task_id: str, timeout: float | None = None,
              quiet: bool = False) -> dict[str, Any]:
    """Follow task_id until it ends, drawing its progress; returns the ended task.

    Watches the task's events (after the newest event before its state was read, so no
    change is missed), resuming across dropped connections; timeout seconds raise
    :class:`CliError` (exit 7)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    since = client.cursor()
    task: dict[str, Any] = client.get(path_of("tasks", task_id))
    if task["status"] in TASK_ENDED:
        return task
    show = not quiet and output.stderr.is_terminal
    bar = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                   TextColumn("{task.percentage:>3.0f}%"), TimeElapsedColumn(),
                   console=output.stderr, transient=False, disable=not show)

    def lost(reason: str, last: str | None) -> None:
        if show:
            bar.console.print(f"[dim]connection lost ({reason}); resuming[/dim]")

    with bar:
        row = bar.add_task(_label(task), total=100,
                           completed=task.get("progress") or 0)
        try:
            for ev in follow(client, since, types="task.*", task=task_id, on_lost=lost,
                             deadline=deadline):
                kind, data = ev.data.get("type"), ev.data.get("data") or {}
                if kind == "reset":  # events were trimmed: read the state again
                    task = client.get(path_of("tasks", task_id))
                elif kind == "task.progress":
                    task = {**task, "progress": data.get("progress"),
                            "message": i18n.task_message(data, client.language)
                            if "message" in data else task.get("message")}
                elif isinstance(kind, str) and kind.startswith("task.") and data.get("id"):
                    task = {**task, **data}
                    if "message" in data:  # events are in English: the reader's language
                        task["message"] = i18n.task_message(data, client.language)
                bar.update(row, description=_label(task),
                           completed=task.get("progress") or 0)
                if task.get("status") in TASK_ENDED:
                    break
        except TimeoutError:
            raise CliError(f"task {task_id} still {task.get('status')} after {timeout:g} s",
                           TIMED_OUT) from None
        if task.get("status") == "finished":
            bar.update(row, completed=100)
    final: dict[str, Any] = client.get(path_of("tasks", task_id))
    return final


def _label(task: dict[str, Any]) -> str:
    message = task.get("message") or task.get("status") or ""
    return escape(f"{task.get('kind', 'task')}: {message}"[:70])


def report_task(output: Output, task: dict[str, Any], wait: bool) -> None:
    """Print a task just made (or waited for); a failed or cancelled one exits 5."""
    if output.json:
        output.data(task)
    elif not wait:
        output.stdout.print(f"task {task['id']} ({task.get('kind')}) {task.get('status')}: "
                            f"{task.get('message') or ''}".rstrip(": "), markup=False)
        output.note(f"follow it with: kimchi tasks wait {task['id']}")
    else:
        output.stdout.print(f"task {task['id']} ({task.get('kind')}) {task['status']}"
                            + (f": {task['message']}" if task.get("message") else ""),
                            markup=False)
    if wait and task["status"] != "finished":
        raise CliError(f"task {task['id']} {task['status']}: {task.get('message') or ''}",
                       TASK_FAILED, task)


def start_task(task: dict[str, Any], wait: bool, timeout: float | None = None,
               quiet: bool = False) -> dict[str, Any]:
    """A task a command just made: waited for when asked, then reported."""
    s = session()
    if wait:
        task = wait_task(s.client, s.output, task["id"], timeout, quiet)
    report_task(s.output, task, wait)
    return task


wait_options = [
    click.option("--wait/--no-wait", default=False, show_default=True,
                 help="Wait for the task to end, with a progress bar; exit 5 if it fails."),
    click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=None,
                 metavar="SECONDS", help="With --wait: give up after this long (exit 7)."),
    click.option("--quiet", "-q", is_flag=True, help="No progress bar."),
]


def with_wait(f: Any) -> Any:
    for option in reversed(wait_options):
        f = option(f)
    return f


def _complete_task(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[Any]:
    from kimchi.cli.completion import names

    return names(ctx, "/tasks", incomplete, key="id", status="running")


@click.group(invoke_without_command=True)
@json_option
@click.pass_context
def tasks(ctx: click.Context) -> None:
    """Tasks: the work kimchi's workers do (creating, cloning, scanning ...).

    Without a command: list."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(tasks_list)


@tasks.command("list")
@click.option("--status", type=click.Choice(["running", "finished", "failed", "cancelled"]))
@click.option("--kind", help="Only this kind (vm.create, iso.scan ...).")
@click.option("--target", "target_uri", metavar="REGEX",
              help="Only tasks whose target URI matches (a Python regular expression).")
@click.option("--limit", type=click.IntRange(1, 10000), default=50, show_default=True)
@json_option
def tasks_list(status: str | None, kind: str | None, target_uri: str | None,
               limit: int) -> None:
    """List tasks, newest first."""
    s = session()
    found = s.client.get("/tasks", status=status, kind=kind, target_uri=target_uri,
                         limit=limit)
    s.output.table(found, TASK_COLUMNS, empty="no tasks")


@tasks.command("show")
@click.argument("task_id", metavar="ID", shell_complete=_complete_task)
@json_option
def tasks_show(task_id: str) -> None:
    """Show one task."""
    s = session()
    s.output.record(s.client.get(path_of("tasks", task_id)), TASK_KEYS)


@tasks.command("cancel")
@click.argument("task_id", metavar="ID", shell_complete=_complete_task)
@with_wait
@json_option
def tasks_cancel(task_id: str, wait: bool, timeout: float | None, quiet: bool) -> None:
    """Ask a running task to stop (it ends cancelled once cleaned up).

    With --wait, waits for it to end and exits 0 when it ended cancelled."""
    s = session()
    task = s.client.delete(path_of("tasks", task_id))
    if not wait:
        s.output.done(f"task {task_id}: cancel requested", task)
        return
    task = wait_task(s.client, s.output, task_id, timeout, quiet)
    s.output.done(f"task {task_id} {task['status']}", task)
    if task["status"] == "failed":
        raise CliError(f"task {task_id} failed: {task.get('message') or ''}", TASK_FAILED, task)


@tasks.command("wait")
@click.argument("task_id", metavar="ID", shell_complete=_complete_task)
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=None,
              metavar="SECONDS", help="Give up after this long (exit 7).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@json_option
def tasks_wait(task_id: str, timeout: float | None, quiet: bool) -> None:
    """Wait for a task to end, showing its progress.

    Exits 0 when it finished, 5 when it failed or was cancelled, 7 on --timeout."""
    s = session()
    task = wait_task(s.client, s.output, task_id, timeout, quiet)
    report_task(s.output, task, wait=True)


# -- events ----------------------------------------------------------------------------


def _event_line(output: Output, ev: dict[str, Any], language: str) -> None:
    data = ev.get("data") or {}
    if str(ev.get("type", "")).startswith("task.") and "message" in data:
        data = {**data, "message": i18n.task_message(data, language)}
    bits = []
    for key in ("host", "name", "id", "status", "state", "progress", "message"):
        if key in data and data[key] not in (None, ""):
            value = data[key]
            bits.append(f"{key}={value:g}" if isinstance(value, float) else f"{key}={value}")
    output.stdout.print(f"{ev.get('id') or '-'}  {when(ev.get('time'))}  "
                        f"[bold]{escape(str(ev.get('type')))}[/bold]  {escape(' '.join(bits))}",
                        markup=True, highlight=False, soft_wrap=True)


@click.command()
@click.option("--follow", "-f", "keep_following", is_flag=True,
              help="Keep watching: print events as they happen, resuming after a dropped "
                   "connection or a daemon restart with no gap and no duplicate.")
@click.option("--types", metavar="PATTERNS",
              help="Comma-separated event types, * wildcards: task.*,vm.state")
@click.option("--since", metavar="EVENT_ID",
              help="Start after this event id (0: every event still kept). Default: "
                   "with --follow, from now; without, every event kept.")
@click.option("--task", "task_id", metavar="ID", help="Only the events of this task.")
@click.option("--limit", type=click.IntRange(min=1), default=None,
              help="Stop after this many events.")
@json_option
def events(keep_following: bool, types: str | None, since: str | None, task_id: str | None,
           limit: int | None) -> None:
    """Print kimchi's events: changes of tasks, VMs, templates, storage ...

    With --json, one JSON object per line (the API's event shape). Live figures that
    are not kept (vm.stats, host.stats) are shown only when --types asks for them."""
    s = session()
    out = s.output
    if since is not None:
        try:
            event_key(since)
        except ValueError:
            raise click.BadParameter("an event id is <ms>-<seq>, or 0",
                                     param_hint="--since") from None
    count = 0

    def show(ev: dict[str, Any]) -> bool:
        nonlocal count
        if not ev.get("id") and ev.get("type") != "reset" and types is None:
            return False  # live figures (vm.stats, host.stats): only when asked for
        if out.json:
            out.line(ev)
        elif ev.get("type") == "reset":
            out.warn("events were lost (older than what the server keeps): list again")
        else:
            _event_line(out, ev, s.client.language)
        count += 1
        return limit is not None and count >= limit

    client = s.client
    if not keep_following:
        page_since = since or "0"
        while True:
            r = client.request("GET", "/events", params={
                "since": page_since, "types": types, "task": task_id})
            page = r.json()
            for ev in page:
                if show(ev):
                    return
            nxt = r.links.get("next", {}).get("url")
            if not nxt or not page:
                return
            page_since = parse_qs(urlsplit(nxt).query).get("since", [page[-1]["id"]])[0]

    start = since if since is not None else client.cursor()

    def lost(reason: str, last: str | None) -> None:
        out.stderr.print(f"[dim]kimchi: connection lost ({reason}); resuming after "
                         f"{last or start}[/dim]")

    try:
        for ev in follow(client, start, types=types, task=task_id, on_lost=lost):
            if show(ev.data):
                return
    except KeyboardInterrupt:
        return

