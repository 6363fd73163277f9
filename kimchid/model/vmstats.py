"""Live figures of running VMs: CPU and memory use, disk and network rates.

Every few seconds one ``virConnectGetAllDomainStats`` call reads the counters of
every running domain; a rate is the difference from the previous sample over
the time between them (rates, not totals).  The figures go into each VM's
``stats`` and to live watchers as one ``vm.stats`` notice (not kept in the event
stream: a figure of five seconds ago is worth nothing on resume).
"""

from __future__ import annotations

import time
from typing import Any

from twisted.internet import task
from twisted.logger import Logger

from kimchid.model.events import EventHub
from kimchid.model.vms import ZERO_STATS as ZERO
from kimchid.model.vms import VmInventory

log = Logger()



def _sample(conn: Any) -> tuple[float, dict[str, dict[str, float]]]:
    """Counters of every running domain, by UUID (blocking: libvirt thread)."""
    import libvirt

    groups = (libvirt.VIR_DOMAIN_STATS_CPU_TOTAL | libvirt.VIR_DOMAIN_STATS_BALLOON
              | libvirt.VIR_DOMAIN_STATS_VCPU | libvirt.VIR_DOMAIN_STATS_INTERFACE
              | libvirt.VIR_DOMAIN_STATS_BLOCK)
    now = time.monotonic()
    out: dict[str, dict[str, float]] = {}
    for dom, st in conn.getAllDomainStats(groups,
                                          libvirt.VIR_CONNECT_GET_ALL_DOMAINS_STATS_ACTIVE):
        c: dict[str, float] = {
            "cpu_ns": st.get("cpu.time", 0),
            "vcpus": st.get("vcpu.current", 0),
            "mem_total": st.get("balloon.available", 0) or st.get("balloon.current", 0),
            "mem_free": st.get("balloon.unused", 0) + st.get("balloon.disk_caches", 0),
            "mem_rss": st.get("balloon.rss", 0),
            "mem_current": st.get("balloon.current", 0),
        }
        for kind, keys in (("block", ("rd.bytes", "wr.bytes")), ("net", ("rx.bytes",
                                                                          "tx.bytes"))):
            for i in range(int(st.get(f"{kind}.count", 0))):
                for key in keys:
                    name = f"{kind}_{key}"
                    c[name] = c.get(name, 0) + st.get(f"{kind}.{i}.{key}", 0)
        if not c["vcpus"] or not c["cpu_ns"]:  # drivers without those groups (test)
            _state, _max, mem, vcpus, cpu_ns = dom.info()
            c.update(vcpus=vcpus, cpu_ns=cpu_ns, mem_current=c["mem_current"] or mem)
        out[dom.UUIDString()] = c
    return now, out


def rates(prev: dict[str, float] | None, cur: dict[str, float], seconds: float
          ) -> dict[str, float]:
    """The figures between two samples of one domain (KiB/s for I/O, % for CPU/memory)."""
    out = dict(ZERO)
    if cur.get("mem_total") and cur.get("mem_free"):  # the guest's own view (balloon driver)
        used = cur["mem_total"] - cur["mem_free"]
        out["mem_utilization"] = round(max(0.0, min(100.0, 100 * used / cur["mem_total"])), 1)
    elif cur.get("mem_current") and cur.get("mem_rss"):  # what the host gave it
        out["mem_utilization"] = round(min(100.0, 100 * cur["mem_rss"] / cur["mem_current"]), 1)
    if prev is None or seconds <= 0:
        return out

    def per_s(key: str) -> float:
        return max(0.0, (cur.get(key, 0) - prev.get(key, 0)) / seconds)

    vcpus = max(1.0, cur.get("vcpus", 1))
    out["cpu_utilization"] = round(min(100.0, per_s("cpu_ns") / 1e9 / vcpus * 100), 1)
    for name, key in (("io_read", "block_rd.bytes"), ("io_write", "block_wr.bytes"),
                      ("net_received", "net_rx.bytes"), ("net_sent", "net_tx.bytes")):
        out[name] = round(per_s(key) / 1024, 1)
    out["io_throughput"] = round(out["io_read"] + out["io_write"], 1)
    out["net_throughput"] = round(out["net_received"] + out["net_sent"], 1)
    return out


class VmStats:
    def __init__(self, inventory: VmInventory, events: EventHub, clock: Any,
                 interval: float = 5.0) -> None:
        self.inventory = inventory
        self.events = events
        self.interval = interval
        self._last: tuple[float, dict[str, dict[str, float]]] | None = None
        self._loop = task.LoopingCall(self.sample)
        self._loop.clock = clock
        self._failing = False

    def start(self) -> None:
        self._loop.start(self.interval, now=False)

    def stop(self) -> None:
        if self._loop.running:
            self._loop.stop()

    async def sample(self) -> None:
        inv = self.inventory
        if not inv.loaded or not inv.libvirt.up:
            return
        try:
            now, counters = await inv.libvirt.run(_sample)
        except Exception as e:
            if not self._failing:
                log.warn("VM statistics unavailable: {e}", e=str(e))
            self._failing = True
            return
        self._failing = False
        prev_time, prev = self._last or (now, {})
        self._last = (now, counters)
        live: dict[str, dict[str, float]] = {}
        for uuid, vm in inv.vms.items():
            cur = counters.get(uuid)
            figures = rates(prev.get(uuid), cur, now - prev_time) if cur else dict(ZERO)
            if vm.get("stats") != figures:
                vm["stats"] = figures
                inv.changed()
            if cur:
                live[vm["name"]] = figures
        if live:
            self.events.ephemeral("vm.stats", {"vms": live, "host": inv.host})
