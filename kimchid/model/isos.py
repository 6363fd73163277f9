"""The ISO library: images found by deep scans plus those in active storage pools."""

from __future__ import annotations

import json
import os
from typing import Any

from twisted.logger import Logger

from kimchi import bus
from kimchi.bus import LOCAL_HOST, split_field
from kimchi.bus.twisted import RedisClient
from kimchi.scanpaths import check_scan_path
from kimchid.adapters.libvirt import LibvirtConnection
from kimchid.model.tasks import TaskService

log = Logger()

class IsoLibrary:
    def __init__(self, redis: RedisClient, keys: bus.Keys, tasks: TaskService,
                 libvirt: LibvirtConnection | None) -> None:
        self.redis = redis
        self.keys = keys
        self.tasks = tasks
        self.libvirt = libvirt

    async def list(self) -> list[dict[str, Any]]:
        """Every known ISO of every host, each with its ``host``; the local host's pool ISOs
        win over scan results for the same file."""
        flat = await self.redis.call("HGETALL", self.keys.library(bus.ISOS))
        by_path: dict[tuple[str, str], dict[str, Any]] = {}
        for field, raw in zip(flat[::2], flat[1::2], strict=True):
            host, path = split_field(field)
            try:
                by_path[host, path] = {**json.loads(raw), "host": host}
            except ValueError:
                log.warn("ISO library entry {path} is not JSON; ignored", path=field)
        if self.libvirt is not None:
            try:
                for iso in await self.libvirt.pool_isos():
                    by_path[LOCAL_HOST, iso["path"]] = {**iso, "host": LOCAL_HOST}
            except Exception as e:  # libvirt away: the scan results still answer
                log.warn("shallow ISO scan failed: {error}", error=str(e))
        return sorted(by_path.values(), key=lambda i: (i["name"], i["path"], i["host"]))

    async def scan(self, path: str, host: str = LOCAL_HOST) -> dict[str, Any]:
        """Queue a deep scan of ``path`` on ``host``; returns the task.  The daemon checks a
        folder of its own host at once (a 400); another host's is checked by the job, there
        (its task fails with the same error)."""
        if host == LOCAL_HOST:
            check_scan_path(path)
        params = {"path": os.path.normpath(path)}
        if host != LOCAL_HOST:
            params["host"] = host
        return await self.tasks.submit("iso.scan", params, "/isos", host=host)
