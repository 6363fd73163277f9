"""The ISO library: images found by deep scans plus those in active storage pools."""

from __future__ import annotations

import json
import os
from typing import Any

from twisted.logger import Logger

from kimchi import bus
from kimchi.bus.twisted import RedisClient
from kimchi.errors import InvalidOperation, InvalidRequest
from kimchid.adapters.libvirt import LibvirtConnection
from kimchid.model.tasks import TaskService

log = Logger()

FORBIDDEN_ROOTS = ("/proc", "/sys", "/dev")


class IsoLibrary:
    def __init__(self, redis: RedisClient, keys: bus.Keys, tasks: TaskService,
                 libvirt: LibvirtConnection | None) -> None:
        self.redis = redis
        self.keys = keys
        self.tasks = tasks
        self.libvirt = libvirt

    async def list(self) -> list[dict[str, Any]]:
        """Every known ISO, by path; pool ISOs win over scan results for the same file."""
        flat = await self.redis.call("HGETALL", self.keys.library(bus.ISOS))
        by_path: dict[str, dict[str, Any]] = {}
        for path, raw in zip(flat[::2], flat[1::2], strict=True):
            try:
                by_path[path] = json.loads(raw)
            except ValueError:
                log.warn("ISO library entry {path} is not JSON; ignored", path=path)
        if self.libvirt is not None:
            try:
                for iso in await self.libvirt.pool_isos():
                    by_path[iso["path"]] = iso
            except Exception as e:  # libvirt away: the scan results still answer
                log.warn("shallow ISO scan failed: {error}", error=str(e))
        return sorted(by_path.values(), key=lambda i: (i["name"], i["path"]))

    async def scan(self, path: str) -> dict[str, Any]:
        """Validate ``path`` and queue a deep scan of it; returns the task."""
        check_scan_path(path)
        return await self.tasks.submit("iso.scan", {"path": os.path.normpath(path)}, "/isos")


def check_scan_path(path: str) -> None:
    """An absolute, existing, readable directory outside the pseudo file systems."""
    if not os.path.isabs(path) or "\x00" in path:
        raise InvalidRequest("KCHISO0001E", path=path)
    norm = os.path.normpath(path)
    real = os.path.realpath(norm)
    for root in FORBIDDEN_ROOTS:
        if real == root or real.startswith(root + "/"):
            raise InvalidOperation("KCHISO0004E", path=path, reason=f"{root} is not a disk")
    if not os.path.isdir(norm):
        raise InvalidOperation("KCHISO0002E", path=path)
    if not os.access(norm, os.R_OK | os.X_OK):
        raise InvalidOperation("KCHISO0003E", path=path)
