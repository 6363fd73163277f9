"""/host: what the host is and how busy it is (every signed-in user may look)."""

from __future__ import annotations

from typing import Any

from kimchi.errors import ServiceUnavailable
from kimchid.api.routes import Call, RouteTable
from kimchid.model.host import HostStats
from kimchid.model.hosts import Hosts

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
_RATE = {"type": ["integer", "null"],
         "description": "bytes per second (null: another host's, which libvirt does not tell)"}
STATS_SCHEMA = {
    "type": "object",
    "required": ["host", "cpu_utilization", "memory", "disk_read_rate", "disk_write_rate",
                 "net_recv_rate", "net_sent_rate"],
    "properties": {
        "host": {"type": "string", "description": "whose figures (GET /hosts)"},
        "cpu_utilization": {"type": ["number", "null"],
                            "description": "0-100, all CPUs (null: another host's driver "
                                           "does not tell, or one sample only)"},
        "memory": _MEMORY,
        "disk_read_rate": _RATE, "disk_write_rate": _RATE,
        "net_recv_rate": _RATE, "net_sent_rate": _RATE,
        "time": {"type": "number", "description": "when it was sampled (Unix time)"},
    },
}
_SERIES = {"type": "array", "items": {"type": ["number", "null"]}}
HISTORY_SCHEMA = {
    "type": "object",
    "properties": {
        "host": {"type": "string"},
        **{k: _SERIES for k in ("cpu_utilization", "disk_read_rate", "disk_write_rate",
                                "net_recv_rate", "net_sent_rate", "time")},
        "memory": {"type": "object", "properties": {
            k: _SERIES for k in ("total", "free", "avail", "cached", "buffers")}},
        "interval": {"type": "number", "description": "seconds between two samples"},
    },
}


def register(table: RouteTable, host: HostStats, hosts: Hosts) -> None:
    def figures_of(call: Call) -> HostStats:
        """The figures of the host the path names (/hosts/<host>/stats), else this one's."""
        if "host" not in call.args:
            return host
        found = hosts.get(call.args["host"]).figures
        if found is None:
            raise ServiceUnavailable("KCHSVC0002E", error="its figures are not sampled")
        return found

    async def get(call: Call) -> dict[str, Any]:
        return await host.describe()

    async def stats(call: Call) -> dict[str, Any]:
        return await figures_of(call).current()

    async def history(call: Call) -> dict[str, Any]:
        return figures_of(call).series()

    table.add("/host", "GET", get, "The host: OS, CPUs, memory", "host",
              response=HOST_SCHEMA,
              description="Answers while libvirtd is away (then without `libvirt_version` "
                          "and `cpus.sockets`).")
    for base, of in (("/host", ""), ("/hosts/<host>", " (one of the hosts kimchi manages)")):
        table.add(f"{base}/stats", "GET", stats, f"The host's figures now{of}", "host",
                  response=STATS_SCHEMA,
                  description="The latest sample (every `[host] stats_interval` s): CPU %, "
                              "memory in bytes, disk and network rates in bytes/s. Live "
                              "watchers get each sample as a `host.stats` notice naming its "
                              "host. Another host's come from its libvirtd: CPU and memory, "
                              "no disk or network rates (null); 503 (KCHSVC0002E) while it "
                              "is not connected and nothing was sampled yet.")
        table.add(f"{base}/stats/history", "GET", history, f"The host's recent figures{of}",
                  "host", response=HISTORY_SCHEMA,
                  description="The last `[host] history` samples, oldest first, one list "
                              "per figure.")
