"""The host: what it is (``GET /host``) and how busy it is (``GET /host/stats``).

Figures are sampled every ``[host] stats_interval`` seconds with psutil (reading
``/proc``: a fraction of a millisecond), kept for the last ``history`` samples
and sent to live watchers as ``host.stats`` notices (not kept in the event
stream, like ``vm.stats``).  Rates are per second between two samples; disk
I/O counts whole disks (psutil leaves partitions out), the network counts the
host's physical interfaces (those with a device behind them), so the traffic
of bridges and VM taps is not counted twice.

Another host's figures (``GET /hosts/<host>/stats``) come from its libvirtd, which
tells its CPU times and memory (``virNodeGetCPUStats``, ``virNodeGetMemoryStats``) but
not its disk or network traffic: those rates are null.  Every sample names its host.
"""

from __future__ import annotations

import os
import platform
import socket
import time
from collections import deque
from pathlib import Path
from typing import Any

import psutil
from twisted.internet import task, threads
from twisted.logger import Logger

from kimchi.bus import LOCAL_HOST
from kimchi.errors import ServiceUnavailable
from kimchid.adapters.libvirt import LibvirtConnection
from kimchid.model.events import EventHub

log = Logger()

FIGURES = ("cpu_utilization", "memory", "disk_read_rate", "disk_write_rate",
           "net_recv_rate", "net_sent_rate")


def os_release(path: str = "/etc/os-release") -> dict[str, str]:
    out: dict[str, str] = {}
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return out
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip():
            out[key.strip()] = value.strip().strip("'\"")
    return out


def cpu_info(path: str = "/proc/cpuinfo") -> tuple[str, int, int]:
    """The processor's model, its sockets (distinct physical ids; 1 when none are given,
    as in many VMs) and its clock in MHz (0 when not given)."""
    model, ids, mhz = "", set(), 0.0
    try:
        with open(path, errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                key, value = key.strip(), value.strip()
                if not model and key in ("model name", "cpu model", "Processor", "cpu"):
                    model = value
                elif key == "physical id":
                    ids.add(value)
                elif key == "cpu MHz" and not mhz:
                    try:
                        mhz = float(value)
                    except ValueError:
                        pass
    except OSError:
        pass
    return model or platform.processor() or platform.machine(), max(1, len(ids)), round(mhz)


def physical_nics(root: str = "/sys/class/net") -> set[str]:
    """Interfaces with a device behind them: not lo, bridges, bonds' slaves' taps, VLANs."""
    try:
        names = os.listdir(root)
    except OSError:
        return set()
    return {n for n in names if os.path.exists(os.path.join(root, n, "device"))}


def describe() -> dict[str, Any]:
    """What ``GET /host`` says (blocking: a thread)."""
    rel = os_release()
    online = psutil.cpu_count(logical=True) or 0
    cores = psutil.cpu_count(logical=False) or online
    model, sockets, mhz = cpu_info()
    return {
        "hostname": socket.gethostname(),
        "os_distro": rel.get("NAME", platform.system()),
        "os_version": rel.get("VERSION_ID", ""),
        "os_codename": rel.get("VERSION_CODENAME", ""),
        "kernel": platform.release(),
        "architecture": platform.machine(),
        "cpu_model": model,
        "cpu_mhz": mhz,
        "cpus": {"online": online, "sockets": sockets,
                 "cores": cores,  # physical cores, all sockets
                 "threads_per_core": max(1, online // cores) if cores else 1},
        "memory": psutil.virtual_memory().total,
        "uptime": int(time.time() - psutil.boot_time()),
        "libvirt_version": "",
    }


class Counters:
    """The raw counters of one sample (blocking reads of /proc and /sys)."""

    def __init__(self, nics: set[str] | None = None) -> None:
        self.at = time.monotonic()
        disk = psutil.disk_io_counters(perdisk=False)
        self.disk_read = disk.read_bytes if disk else 0
        self.disk_write = disk.write_bytes if disk else 0
        per_nic = psutil.net_io_counters(pernic=True)
        wanted = nics if nics is not None else physical_nics()
        chosen = [c for n, c in per_nic.items() if n in wanted] or [
            c for n, c in per_nic.items() if n != "lo"]
        self.net_recv = sum(c.bytes_recv for c in chosen)
        self.net_sent = sum(c.bytes_sent for c in chosen)
        self.cpu = psutil.cpu_percent(interval=None)  # since the previous call
        vm = psutil.virtual_memory()
        self.memory = {"total": vm.total, "free": vm.free, "avail": vm.available,
                       "cached": getattr(vm, "cached", 0), "buffers": getattr(vm, "buffers", 0)}


class LibvirtCounters:
    """The counters of one sample of a host elsewhere, from its libvirtd (blocking: a
    libvirt thread): CPU times in ns and memory in bytes, where the driver tells them."""

    def __init__(self, conn: Any) -> None:
        import libvirt

        self.at = time.monotonic()
        try:
            self.cpu_times: dict[str, int] | None = {
                k: int(v) for k, v in conn.getCPUStats(-1, 0).items()}
        except libvirt.libvirtError:
            self.cpu_times = None
        kib: dict[str, int] = {}
        try:
            kib = {k: int(v) for k, v in conn.getMemoryStats(-1, 0).items()}
        except libvirt.libvirtError:  # the total at least, from the node's info
            kib = {"total": int(conn.getInfo()[1]) * 1024}
            try:
                kib["free"] = int(conn.getFreeMemory()) // 1024
            except libvirt.libvirtError:
                pass
        free = kib.get("free", 0)
        self.memory = {"total": kib.get("total", 0) * 1024, "free": free * 1024,
                       "avail": (free + kib.get("buffers", 0) + kib.get("cached", 0)) * 1024,
                       "cached": kib.get("cached", 0) * 1024,
                       "buffers": kib.get("buffers", 0) * 1024}


def libvirt_figures(prev: LibvirtCounters | None, cur: LibvirtCounters) -> dict[str, Any]:
    """Another host's figures: CPU % (null until two samples of CPU times differ, or when
    its driver does not tell), memory, and null for the rates libvirt does not tell."""
    cpu = None
    if prev is not None and prev.cpu_times and cur.cpu_times:
        delta = {k: cur.cpu_times.get(k, 0) - prev.cpu_times.get(k, 0) for k in cur.cpu_times}
        total = sum(v for v in delta.values() if v > 0)
        if total > 0:
            cpu = round(100.0 * max(0, total - max(0, delta.get("idle", 0))) / total, 1)
    return {"cpu_utilization": cpu, "memory": cur.memory, "disk_read_rate": None,
            "disk_write_rate": None, "net_recv_rate": None, "net_sent_rate": None}


def figures(prev: Counters | None, cur: Counters) -> dict[str, Any]:
    """``GET /host/stats``: CPU %, memory bytes, I/O rates in bytes per second."""
    out: dict[str, Any] = {"cpu_utilization": round(cur.cpu, 1), "memory": cur.memory,
                           "disk_read_rate": 0, "disk_write_rate": 0,
                           "net_recv_rate": 0, "net_sent_rate": 0}
    seconds = cur.at - prev.at if prev is not None else 0.0
    if prev is None or seconds <= 0:
        return out
    for name, attr in (("disk_read_rate", "disk_read"), ("disk_write_rate", "disk_write"),
                       ("net_recv_rate", "net_recv"), ("net_sent_rate", "net_sent")):
        out[name] = int(max(0, getattr(cur, attr) - getattr(prev, attr)) / seconds)
    return out


class HostStats:
    def __init__(self, libvirt: LibvirtConnection, events: EventHub, clock: Any,
                 interval: float, history: int, host: str = LOCAL_HOST,
                 local: bool = True) -> None:
        """``host``, ``local``: whose figures these are; this machine's are read here,
        another host's from its libvirtd (``libvirt``, the connection to it)."""
        self.libvirt = libvirt
        self.events = events
        self.host = host
        self.local = local
        self.interval = interval
        self.history: deque[dict[str, Any]] = deque(maxlen=history)
        self._prev: Counters | None = None
        self._nics: set[str] | None = None
        self._loop = task.LoopingCall(self.sample)
        self._loop.clock = clock
        self.clock = clock

    def start(self) -> None:
        self._loop.start(self.interval, now=True)

    def stop(self) -> None:
        if self._loop.running:
            self._loop.stop()

    async def _read(self) -> Any:
        if not self.local:
            return await self.libvirt.run(LibvirtCounters)
        if self._nics is None:
            self._nics = await threads.deferToThread(physical_nics)
        return await threads.deferToThread(Counters, self._nics)

    def _figures(self, prev: Any, cur: Any) -> dict[str, Any]:
        out = figures(prev, cur) if self.local else libvirt_figures(prev, cur)
        return {**out, "host": self.host, "time": round(self.clock.seconds(), 3)}

    async def sample(self) -> None:
        if not self.local and not self.libvirt.up:
            self._prev = None  # the rates start again with the connection
            return
        try:
            cur = await self._read()
        except Exception as e:  # never stops the loop
            log.warn("host {host}: statistics unavailable: {e}", host=self.host, e=str(e))
            return
        first = self._prev is None
        out = self._figures(self._prev, cur)
        self._prev = cur
        if first:
            return  # the first CPU figure and the rates need a sample before them
        self.history.append(out)
        self.events.ephemeral("host.stats", out)

    async def current(self) -> dict[str, Any]:
        if self.history:
            return self.history[-1]
        # before the first sample (the first interval after start): one read now
        if not self.local and not self.libvirt.up:
            raise ServiceUnavailable("KCHSVC0002E", error=self.libvirt.error)
        return self._figures(None, await self._read())

    def series(self) -> dict[str, Any]:
        """The history as lists, oldest first (Kimchi's ``/host/stats/history`` shape)."""
        rows = list(self.history)
        out: dict[str, Any] = {k: [r[k] for r in rows] for k in FIGURES if k != "memory"}
        out["memory"] = {k: [r["memory"][k] for r in rows]
                         for k in ("total", "free", "avail", "cached", "buffers")}
        out["time"] = [r["time"] for r in rows]
        out["interval"] = self.interval
        out["host"] = self.host
        return out

    async def describe(self) -> dict[str, Any]:
        out = await threads.deferToThread(describe)
        if self.libvirt.up:
            try:
                v = await self.libvirt.run(lambda c: c.getLibVersion())
                out["libvirt_version"] = f"{v // 1_000_000}.{v // 1000 % 1000}.{v % 1000}"
            except Exception:  # away since: the rest still answers
                pass
        return out
