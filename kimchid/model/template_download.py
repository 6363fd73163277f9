"""A template of a disk image at an http(s) URL: downloaded into a storage pool first.

``POST /templates {"source_media": {"type": "image", "path": "https://...", "pool"?,
"host"?, "checksum"?}}`` answers 202 with a ``template.image`` task (on the daemon's
runner).  It queues a ``volume.download`` job on a worker of the pool's host (resumed with
HTTP Range when that worker dies, checked against ``checksum``), follows it, passing its
bytes and % on, then makes the template from the new volume exactly as from any volume
(``source_media.path`` is the volume's path, ``url`` where it came from).  The template
owns that volume: it is deleted with the template.  If the image turns out to be no
usable base, or anything fails, the downloaded volume is deleted: nothing is left.
"""

from __future__ import annotations

import os
import re
from typing import Any
from urllib.parse import unquote, urlsplit

from twisted.internet import threads
from twisted.internet.defer import Deferred

from kimchi.bus import LOCAL_HOST
from kimchi.bus.context import JobContext, Stop
from kimchi.bus.follow import ChildGone, child_id, run_child, stop_child
from kimchi.bus.text import TaskText
from kimchi.errors import KimchiError, NotFound
from kimchid.model.hosts import Hosts
from kimchid.model.storage import VolumeTransfers
from kimchid.model.tasks import TaskService
from kimchid.model.templates import TemplateService
from kimchid.model.vm_create import refresh_pools

KIND = "template.image"
DOWNLOAD_KIND = "volume.download"
_UNSAFE = re.compile(r"[^A-Za-z0-9_.+-]")


def volume_name(url: str) -> str:
    """The volume an image's URL is downloaded as: its file name, made safe."""
    name = _UNSAFE.sub("-", unquote(os.path.basename(urlsplit(url).path))).strip(".-")
    return name[:120] or "image.qcow2"


class TemplateDownloads:
    def __init__(self, tasks: TaskService, hosts: Hosts, templates: TemplateService,
                 transfers: VolumeTransfers, reactor: Any) -> None:
        self.tasks = tasks
        self.hosts = hosts
        self.templates = templates
        self.transfers = transfers
        self.reactor = reactor

    async def start(self, body: dict[str, Any], owner: str = "") -> dict[str, Any]:
        media = body["source_media"]
        url = media["path"]
        host = self.hosts.known(media.get("host") or LOCAL_HOST)
        pool = media.get("pool") or "default"
        vol = volume_name(url)
        name = body.get("name") or await self.templates.free_name(
            re.sub(r"\.(qcow2|img|raw)$", "", vol))
        async with self.templates.making(name) as made:
            download = await self.transfers.download_params(
                host, pool, {"name": vol, "url": url, "checksum": media.get("checksum", "")})
            rest = {k: v for k, v in body.items() if k not in ("name", "source_media")}
            return made(await self.tasks.submit(
                KIND, {"template": name, "body": rest, "host": host.name, "pool": pool,
                       "url": url, "download": download},
                f"/templates/{name}", owner, host=host.name))

    # -- the job (on a runner thread of the daemon) ---------------------------------------

    def run(self, ctx: JobContext) -> dict[str, Any]:
        p = ctx.params
        name, download = p["template"], p["download"]
        path = os.path.join(download["dir"], download["name"])
        try:
            host = self.hosts.get(p["host"])
        except NotFound:
            raise KimchiError("KCHHOST0001E", name=p["host"]) from None
        sync = self.tasks.blocking()
        attempt = int(ctx.attempt)
        downloaded = False
        if attempt > 1:  # what the lost attempt got done
            made: Any = self._made
            if threads.blockingCallFromThread(self.reactor, made, name, ctx.task_id):
                return {"template": name, "path": path, "url": p["url"],
                        "message": TaskText("Made template {name} of {url}", name=name,
                                            url=p["url"])}
        try:
            for n in range(1, attempt):  # the lost attempt's download: stopped first
                child = child_id(ctx.task_id, n)
                stop_child(sync, child)
                downloaded = downloaded or (sync.task(child) or {}).get("status") == "finished"
            if not downloaded:
                try:
                    done = run_child(ctx, sync, DOWNLOAD_KIND, download, host.name, 0.95,
                                     self.tasks.redis.timeout,
                                     target_uri=f"/templates/{name}")
                except ChildGone:
                    raise KimchiError("KCHTMPL0023E", url=p["url"],
                                      error="the download job disappeared") from None
                if done["status"] != "finished":
                    raise KimchiError("KCHTMPL0023E", url=p["url"], error=done["message"])
            ctx.progress(97, TaskText("Making template {name} of {volume}", name=name,
                                      volume=download["name"]))
            ctx.flush()
            host.conn.call(lambda c: refresh_pools(c, {p["pool"]}))
            media = {"type": "image", "path": path}
            if not host.local:
                media["host"] = host.name
            make: Any = self._make
            t = threads.blockingCallFromThread(self.reactor, make, {
                **p["body"], "name": name, "source_media": media}, p["url"], ctx.task_id)
        except BaseException as e:
            if isinstance(e, Stop) and e.why in ("lost", "handback"):
                raise
            stop_child(sync, child_id(ctx.task_id, attempt))
            self._remove(host, path)
            if isinstance(e, (Stop, KimchiError)):
                raise
            raise KimchiError("KCHTMPL0023E", url=p["url"], error=str(e)) from e
        return {"template": t["name"], "path": path, "url": p["url"],
                "message": TaskText("Made template {name} of {url}", name=name, url=p["url"])}

    def _make(self, body: dict[str, Any], url: str, task_id: str) -> Deferred[dict[str, Any]]:
        return Deferred.fromCoroutine(self.templates.create(
            body, media_extra={"url": url, "owned": True}, made_by=task_id))

    def _made(self, name: str, task_id: str) -> Deferred[bool]:
        async def made() -> bool:
            try:
                return bool((await self.templates.get(name)).get("made_by") == task_id)
            except NotFound:
                return False

        return Deferred.fromCoroutine(made())

    @staticmethod
    def _remove(host: Any, path: str) -> None:
        """The downloaded volume, when the template will not be (already gone is fine)."""
        def remove(conn: Any) -> None:
            import libvirt

            try:
                conn.storageVolLookupByPath(path).delete(0)
            except libvirt.libvirtError:
                pass

        try:
            host.conn.call(remove)
        except Exception:
            pass
