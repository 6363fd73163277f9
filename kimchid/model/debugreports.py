"""Debug reports: archives of the host's logs and configuration, made by a worker.

A report is a file, ``<state_dir>/debugreports/<name>.tar.xz`` (mode 0600 in a
0700 folder: it holds the host's secrets as much as its logs), and nothing
else: listing reads the folder, so a report copied in or removed by hand is
seen at once.  Making one is a ``debugreport.collect`` task run by a worker
(:mod:`workers.jobs.debugreport`); the name stays taken while that task runs.

A report of another host than the daemon's is a ``debugreport.fetch`` task, on the
daemon's runner: it queues that host's ``debugreport.collect`` job (for a worker serving
the host, which makes the archive there and sends it over the bus), follows it, and keeps
the archive it sent (checked: its size and sha256) in the same folder.
"""

from __future__ import annotations

import datetime
import os
from pathlib import Path
from typing import Any

from twisted.internet import threads

from kimchi import bus
from kimchi.bus.context import JobContext, Stop
from kimchi.bus.follow import ChildGone, child_id, follow, last_event, stop_child
from kimchi.bus.text import TaskText
from kimchi.errors import InvalidOperation, InvalidRequest, KimchiError, NotFound
from kimchi.reports import FETCH, KIND, NAME, SUFFIXES, report_file
from kimchid.model.capabilities import Capabilities
from kimchid.model.events import EventHub
from kimchid.model.tasks import TaskService


def check_name(name: str) -> None:
    """Letters, digits, ``-`` and ``_``, at most 64: it names a file and nothing more."""
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise InvalidRequest("KCHDR0002E", name=name)


def describe(path: Path, name: str) -> dict[str, Any]:
    st = path.stat()
    when = datetime.datetime.fromtimestamp(st.st_mtime, datetime.UTC)
    return {"name": name, "file": path.name, "size": st.st_size,
            "time": when.isoformat(timespec="seconds").replace("+00:00", "Z"),
            "uri": f"/debugreports/{name}/content"}


def scan(folder: Path) -> list[dict[str, Any]]:
    """Every finished report in ``folder``, newest first (a blocking read)."""
    out = []
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return []
    for entry in entries:
        suffix = next((s for s in SUFFIXES if entry.name.endswith(s)), None)
        if suffix is None or not entry.is_file(follow_symlinks=False):
            continue
        name = entry.name[:-len(suffix)]
        if NAME.fullmatch(name):
            try:
                out.append(describe(Path(entry.path), name))
            except FileNotFoundError:  # removed while listed
                continue
    return sorted(out, key=lambda r: (r["time"], r["name"]), reverse=True)


class DebugReports:
    def __init__(self, folder: Path, plugins: tuple[str, ...], tasks: TaskService,
                 events: EventHub, capabilities: Capabilities, clock: Any) -> None:
        self.folder = folder
        self.plugins = plugins
        self.tasks = tasks
        self.events = events
        self.capabilities = capabilities
        self.clock = clock
        self._checking: set[str] = set()  # names between their check and their task


    def ensure_folder(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.folder, 0o700)

    async def list(self) -> list[dict[str, Any]]:
        return await threads.deferToThread(scan, self.folder)

    async def get(self, name: str) -> dict[str, Any]:
        return describe(await self.path(name), name)

    async def path(self, name: str) -> Path:
        check_name(name)
        found = await threads.deferToThread(report_file, self.folder, name)
        if found is None:
            raise NotFound("KCHDR0001E", name=name)
        return found

    async def being_made(self) -> dict[str, str]:
        """name -> task id of every report being made.

        Read from the index of running tasks of this kind: its cost is that of the reports
        being made, however many tasks are kept."""
        out: dict[str, str] = {}
        for kind in (KIND, FETCH):
            running = await self.tasks.list(status="running", kind=kind, limit=100_000)
            out.update({t["params"]["name"]: t["id"] for t in running
                        if isinstance(t.get("params"), dict) and "name" in t["params"]
                        and (kind == FETCH or not t["params"].get("upload"))})
        return out

    async def create(self, name: str | None, owner: str,
                     host: str = bus.LOCAL_HOST) -> dict[str, Any]:
        """Queue the making of a report of ``host``; returns its task."""
        here = host == bus.LOCAL_HOST
        if name is None:
            stamp = datetime.datetime.fromtimestamp(self.clock.seconds(), datetime.UTC)
            name = ("report-" if here else f"report-{host}-") + stamp.strftime("%Y%m%d-%H%M%S")
        check_name(name)
        if here and not (await self.capabilities.get()).get("system_report_tool", False):
            raise InvalidOperation("KCHDR0005E")  # another host's: its job says
        if name in self._checking:  # taken by a request being checked right now
            raise InvalidOperation("KCHDR0004E", name=name)
        self._checking.add(name)
        try:
            if await threads.deferToThread(report_file, self.folder, name) is not None:
                raise InvalidOperation("KCHDR0003E", name=name)
            if name in await self.being_made():
                raise InvalidOperation("KCHDR0004E", name=name)
            await threads.deferToThread(self.ensure_folder)
            if not here:
                return await self.tasks.submit(
                    FETCH, {"name": name, "host": host, "plugins": list(self.plugins)},
                    f"/debugreports/{name}", owner, host=host)
            return await self.tasks.submit(
                KIND, {"name": name, "dir": str(self.folder), "plugins": list(self.plugins)},
                f"/debugreports/{name}", owner)
        finally:
            self._checking.discard(name)

    # -- another host's report (a job on the daemon's runner) ----------------------------

    def fetch(self, ctx: JobContext) -> dict[str, Any]:
        """Have ``host``'s worker collect the report, follow it, and keep what it sent."""
        p = ctx.params
        name, host = p["name"], p["host"]
        sync = self.tasks.blocking()
        attempt = int(ctx.attempt)
        kept = report_file(self.folder, name)
        if kept is not None:  # a lost attempt got as far as keeping it
            return {**describe(kept, name), "host": host,
                    "message": TaskText("Debug report {name} of host {host} is ready",
                                        name=name, host=host)}
        for n in range(1, attempt):  # a lost attempt's job: stopped first
            stop_child(sync, child_id(ctx.task_id, n))
        child = child_id(ctx.task_id, attempt)
        try:
            since = last_event(sync)
            sync.submit(KIND, {"name": name, "plugins": p.get("plugins") or [],
                               "upload": True}, f"/debugreports/{name}", task_id=child,
                        host=host)
            done = follow(ctx, sync, child, since, 0.98, self.tasks.redis.timeout,
                          collect_task=child)
        except ChildGone:
            raise KimchiError("KCHDR0006E", name=name, error="its job disappeared") from None
        except Stop as e:
            if e.why not in ("lost", "handback"):
                stop_child(sync, child)
            raise
        if done["status"] != "finished":
            raise KimchiError("KCHDR0006E", name=name, error=done["message"])
        result = done["result"] or {}
        suffix = next((s for s in SUFFIXES if str(result.get("file", "")).endswith(s)), None)
        if suffix is None or not isinstance(result.get("upload"), dict):
            raise KimchiError("KCHDR0006E", name=name, error="the host sent no archive")
        ctx.progress(99, TaskText("Receiving debug report {name} from host {host}",
                                  name=name, host=host))
        self.ensure_folder()
        part = self.folder / ".work" / f"{name}.fetch.{attempt}"
        part.parent.mkdir(mode=0o700, exist_ok=True)
        try:
            sync.take_file(result["upload"], str(part))
        except (ValueError, KeyError) as e:
            raise KimchiError("KCHDR0006E", name=name, error=str(e)) from None
        final = self.folder / f"{name}{suffix}"
        os.chmod(part, 0o600)
        os.rename(part, final)
        return {**describe(final, name), "host": host,
                "message": TaskText("Debug report {name} of host {host} is ready", name=name,
                                    host=host)}

    async def rename(self, name: str, new: str) -> dict[str, Any]:
        path = await self.path(name)
        check_name(new)
        if new == name:
            return describe(path, name)
        if new in self._checking or new in await self.being_made():
            raise InvalidOperation("KCHDR0004E", name=new)
        suffix = next(s for s in SUFFIXES if path.name.endswith(s))
        target = self.folder / f"{new}{suffix}"

        def move() -> None:
            if report_file(self.folder, new) is not None:
                raise InvalidOperation("KCHDR0003E", name=new)
            os.link(path, target)  # fails if the target appeared meanwhile: never overwrites
            os.unlink(path)

        try:
            await threads.deferToThread(move)
        except FileExistsError:
            raise InvalidOperation("KCHDR0003E", name=new) from None
        out = describe(target, new)
        await self.events.publish("debugreport.updated", {**out, "previous": name})
        return out

    async def delete(self, name: str) -> None:
        path = await self.path(name)
        try:
            await threads.deferToThread(os.unlink, path)
        except FileNotFoundError:
            raise NotFound("KCHDR0001E", name=name) from None
        await self.events.publish("debugreport.deleted", {"name": name})

