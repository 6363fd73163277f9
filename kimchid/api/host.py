"""/host: what the host is and how busy it is (every signed-in user may look)."""

from __future__ import annotations

from typing import Any

from kimchid.api.routes import Call, RouteTable
from kimchid.model.host import HostStats

_INT = {"type": "integer"}
_MEMORY = {"type": "object", "description": "bytes",
           "properties": {k: _INT for k in ("total", "free", "avail", "cached", "buffers")}}
HOST_SCHEMA = {
    "type": "object",
    "required": ["hostname", "os_distro", "os_version", "cpu_model", "cpus", "memory"],
    "properties": {
        "hostname": {"type": "string"},
        "os_distro": {"type": "string"}, "os_version": {"type": "string"},
        "os_codename": {"type": "string"}, "kernel": {"type": "string"},
        "architecture": {"type": "string"}, "cpu_model": {"type": "string"},
        "cpu_mhz": {**_INT, "description": "0 when the kernel does not say"},
        "cpus": {"type": "object", "properties": {
            k: _INT for k in ("online", "cores", "threads_per_core", "sockets")}},
        "memory": {**_INT, "description": "bytes"},
        "uptime": {**_INT, "description": "seconds since boot"},
        "libvirt_version": {"type": "string", "description": "empty while libvirtd is away"},
    },
}
_RATE = {"type": "integer", "description": "bytes per second"}
STATS_SCHEMA = {
    "type": "object",
    "required": ["cpu_utilization", "memory", "disk_read_rate", "disk_write_rate",
                 "net_recv_rate", "net_sent_rate"],
    "properties": {
        "cpu_utilization": {"type": "number", "description": "0-100, all CPUs"},
        "memory": _MEMORY,
        "disk_read_rate": _RATE, "disk_write_rate": _RATE,
        "net_recv_rate": _RATE, "net_sent_rate": _RATE,
        "time": {"type": "number", "description": "when it was sampled (Unix time)"},
    },
}
_SERIES = {"type": "array", "items": {"type": "number"}}
HISTORY_SCHEMA = {
    "type": "object",
    "properties": {
        **{k: _SERIES for k in ("cpu_utilization", "disk_read_rate", "disk_write_rate",
                                "net_recv_rate", "net_sent_rate", "time")},
        "memory": {"type": "object", "properties": {
            k: _SERIES for k in ("total", "free", "avail", "cached", "buffers")}},
        "interval": {"type": "number", "description": "seconds between two samples"},
    },
}


def register(table: RouteTable, host: HostStats) -> None:
    async def get(call: Call) -> dict[str, Any]:
        return await host.describe()

    async def stats(call: Call) -> dict[str, Any]:
        return await host.current()

    async def history(call: Call) -> dict[str, Any]:
        return host.series()

    table.add("/host", "GET", get, "The host: OS, CPUs, memory", "host",
              response=HOST_SCHEMA,
              description="Answers while libvirtd is away (then without `libvirt_version` "
                          "and `cpus.sockets`).")
    table.add("/host/stats", "GET", stats, "The host's figures now", "host",
              response=STATS_SCHEMA,
              description="The latest sample (every `[host] stats_interval` s): CPU %, memory "
                          "in bytes, disk and network rates in bytes/s. Live watchers get "
                          "each sample as a `host.stats` notice.")
    table.add("/host/stats/history", "GET", history, "The host's recent figures", "host",
              response=HISTORY_SCHEMA,
              description="The last `[host] history` samples, oldest first, one list per "
                          "figure.")
