"""libvirt, on threads this adapter owns: one connection per URI, never the reactor thread.

libvirt-python is blocking, so every call runs on a small named thread pool
(one connection, reused; re-opened after libvirtd went away).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar

from twisted.application.service import Service
from twisted.internet import threads
from twisted.internet.interfaces import IReactorThreads
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool

from kimchid import isoinfo

log = Logger()
T = TypeVar("T")


class LibvirtConnection(Service):
    name = "libvirt"  # type: ignore[assignment]

    def __init__(self, uri: str, reactor: IReactorThreads, pool_size: int = 2) -> None:
        self.uri = uri
        self.reactor = reactor
        self.pool = ThreadPool(1, pool_size, name=f"libvirt-{uri}")
        self._conn: Any = None
        self.up = False
        self.error = "not connected yet"
        self._probes: dict[tuple[str, int, int], isoinfo.IsoInfo | None] = {}

    def startService(self) -> None:
        super().startService()
        self.pool.start()

    def stopService(self) -> None:
        super().stopService()
        self.pool.stop()
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:
                pass

    async def run(self, fn: Callable[[Any], T]) -> T:
        """Run ``fn(connection)`` on the libvirt threads."""
        return await threads.deferToThreadPool(self.reactor, self.pool, self._call, fn)

    def _call(self, fn: Callable[[Any], T]) -> T:
        import libvirt

        for retry in (True, False):
            conn = self._connection()
            try:
                return fn(conn)
            except libvirt.libvirtError as e:
                broken = e.get_error_code() in (libvirt.VIR_ERR_SYSTEM_ERROR,
                                                libvirt.VIR_ERR_INTERNAL_ERROR,
                                                libvirt.VIR_ERR_RPC) or not conn.isAlive()
                if broken and retry:
                    self._conn = None
                    continue
                raise
        raise AssertionError("unreachable")

    def _connection(self) -> Any:
        import libvirt

        if self._conn is not None:
            return self._conn
        try:
            self._conn = libvirt.open(self.uri)
        except libvirt.libvirtError as e:
            if self.up:
                log.warn("libvirt {uri} unreachable: {error}", uri=self.uri, error=str(e))
            self.up, self.error = False, str(e)
            raise
        if not self.up:
            log.info("libvirt {uri} connected", uri=self.uri)
        self.up, self.error = True, ""
        return self._conn

    # -- storage ----------------------------------------------------------------

    def _pool_isos(self, conn: Any) -> list[dict[str, Any]]:
        import libvirt

        out = []
        for pool in conn.listAllStoragePools(libvirt.VIR_CONNECT_LIST_STORAGE_POOLS_ACTIVE):
            try:
                vols = pool.listAllVolumes()
            except libvirt.libvirtError:
                continue
            for vol in vols:
                path = vol.path()
                if not path.lower().endswith(".iso"):
                    continue
                info = self._probe(path)
                if info is None:
                    continue
                out.append({
                    "name": vol.name(), "path": path, "size": vol.info()[1],
                    "os_distro": info.os_distro, "os_version": info.os_version,
                    "bootable": info.bootable, "volume_id": info.volume_id,
                    "found_by": "pool", "pool": pool.name(),
                })
        return out

    def _probe(self, path: str) -> isoinfo.IsoInfo | None:
        """Identify an ISO, remembering the answer while the file is unchanged."""
        try:
            st = os.stat(path)
        except OSError:
            return None
        key = (path, st.st_size, st.st_mtime_ns)
        if key not in self._probes:
            try:
                self._probes[key] = isoinfo.probe_file(path)
            except (isoinfo.NotAnIso, OSError):
                self._probes[key] = None
        return self._probes[key]

    async def pool_isos(self) -> list[dict[str, Any]]:
        """ISOs in active storage pools: the shallow scan."""
        return await self.run(self._pool_isos)
