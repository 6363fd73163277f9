"""What kimchid tells Prometheus (``GET /metrics``): one registry per daemon.

Two kinds of figures:

* counted here as things happen, on the reactor: HTTP requests and their latency by route
  template (:class:`MeteredSite`), failed logins (the gate's ``on_failure``), task
  durations (every ``task.finished|failed|cancelled`` the event hub reads, see
  :meth:`Metrics.events_read`);
* read at each scrape (:meth:`Metrics.refresh`): from Redis in one Lua script (queues,
  workers, tasks by kind and status, lost leases, the event stream's length) and from what
  the daemon already holds in memory (each host's libvirt connection and its cached VM
  list).  A scrape never calls libvirt, and costs Redis one round trip.

A scrape while Redis is away still answers: ``kimchi_redis_up 0`` and the figures that
do not come from Redis.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
from collections import Counter as Tally
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.web import http
from twisted.web.iweb import IRequest
from twisted.web.server import Request, Site

from kimchi import __version__, bus
from kimchi.bus.twisted import RedisClient
from kimchid.model.events import Event, EventHub
from kimchid.model.hosts import Hosts
from kimchid.model.vms import STATES

log = Logger()

#: the media type of the answer: Prometheus' text format 0.0.4, which every scraper reads
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4

TASK_STATUSES = ("running", "finished", "failed", "cancelled")
ENDINGS = {"task.finished", "task.failed", "task.cancelled"}
HOST_STATES = ("connected", "connecting", "unreachable")
#: the label of a request that reached no route (404, 405, 413 before routing)
NO_ROUTE = "none"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

# Seconds.  A request is a millisecond to a few seconds (a screenshot, a VM's creation
# answered with its task); a task, a tenth of a second (a VM started) to hours (a copy).
HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0, 30.0)
TASK_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
                1800.0, 3600.0, 7200.0, 21600.0)

# One round trip for everything Redis knows.  KEYS: the event stream, the dead-letter
# stream, the live workers, the task kinds, the lost-lease counter, then ``ARGV[4]`` job
# streams, then the live-worker set of each host.  ARGV: live since (seconds), the
# creation time (ms) before which an ended task is no longer kept, the task index's key,
# the number of job streams.
_SNAPSHOT = """
local live_from, cutoff, tasks, nq = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local queues, hosts, counts = {}, {}, {}
for i = 6, 5 + nq do
  local taken = 0
  local r = redis.pcall('XPENDING', KEYS[i], 'workers')
  if type(r) == 'table' and r.err == nil then taken = r[1] end
  queues[#queues + 1] = {redis.call('XLEN', KEYS[i]), taken}
end
for i = 6 + nq, #KEYS do
  hosts[#hosts + 1] = redis.call('ZCOUNT', KEYS[i], live_from, '+inf')
end
for _, kind in ipairs(redis.call('SMEMBERS', KEYS[4])) do
  for _, s in ipairs({'running', 'finished', 'failed', 'cancelled'}) do
    local key = tasks .. ':status:' .. s .. ':kind:' .. kind
    local n
    if s == 'running' then n = redis.call('ZCARD', key)
    else n = redis.call('ZCOUNT', key, cutoff, '+inf') end
    counts[#counts + 1] = kind
    counts[#counts + 1] = s
    counts[#counts + 1] = n
  end
end
return {queues, hosts, counts, redis.call('XLEN', KEYS[1]), redis.call('XLEN', KEYS[2]),
        redis.call('ZCOUNT', KEYS[3], live_from, '+inf'),
        tonumber(redis.call('GET', KEYS[5]) or '0')}
"""
_SNAPSHOT_SHA = hashlib.sha1(_SNAPSHOT.encode()).hexdigest()


@dataclass
class RedisFigures:
    """What one scrape read from Redis."""

    queues: list[tuple[str, str, int, int]] = field(default_factory=list)  # queue, host,
    #                                             waiting, taken
    host_workers: dict[str, int] = field(default_factory=dict)
    tasks: dict[tuple[str, str], int] = field(default_factory=dict)  # (kind, status) -> n
    events: int = 0
    dead: int = 0
    workers: int = 0
    leases_lost: int = 0


@dataclass
class HostFigures:
    """One host as the daemon holds it (no libvirt call)."""

    name: str
    state: str
    vms: dict[str, int] | None  # None: the VM list has not been read yet


class Metrics:
    """The daemon's registry and everything that feeds it."""

    def __init__(self, redis: RedisClient, keys: bus.Keys, hosts: Hosts, events: EventHub,
                 clock: IReactorTime, keep_seconds: int) -> None:
        self.redis = redis
        self.keys = keys
        self.hosts = hosts
        self.events = events
        self.clock = clock
        self.keep_seconds = keep_seconds
        # no ``*_created`` series beside each counter and histogram: Prometheus' text format
        # does not use them, and they would double the answer (a setting of the process)
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        self.http_requests = Counter(
            "kimchi_http_requests", "HTTP requests answered, by route template, method and "
            "status", ("route", "method", "status"), registry=self.registry)
        self.http_latency = Histogram(
            "kimchi_http_request_duration_seconds", "Time from a request's first line to "
            "its last byte written, by route template and method", ("route", "method"),
            buckets=HTTP_BUCKETS, registry=self.registry)
        self.failed_logins = Counter(
            "kimchi_failed_logins", "Refused logins: a wrong password (password), an unknown "
            "or expired API token (token), an attempt refused by the throttle (throttled)",
            ("reason",), registry=self.registry)
        for reason in ("password", "token", "throttled"):
            self.failed_logins.labels(reason)
        self.task_duration = Histogram(
            "kimchi_task_duration_seconds", "Time from a task's creation to its end, by "
            "kind and ending, observed as this daemon reads the end", ("kind", "status"),
            buckets=TASK_BUCKETS, registry=self.registry)
        self._http_series: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self._redis_figures: RedisFigures | None = None
        self._host_figures: list[HostFigures] = []
        self.registry.register(_Snapshot(self))

    # -- counted as it happens ---------------------------------------------------------

    def failed_login(self, reason: str) -> None:
        """A login refused: ``password``, ``token`` or ``throttled``."""
        self.failed_logins.labels(reason).inc()

    def request_done(self, request: http.Request, started: float | None) -> None:
        """One answered request: counted under its route's template (never its path)."""
        route = getattr(request, "route_template", None) or NO_ROUTE
        method = request.method.decode("ascii", errors="replace").upper()
        if method not in METHODS:
            method = "other"
        key = (route, method, request.code)
        series = self._http_series.get(key)
        if series is None:  # labels() takes a lock and builds a key: once per series
            series = self._http_series[key] = (
                self.http_requests.labels(route, method, str(request.code)),
                self.http_latency.labels(route, method))
        series[0].inc()
        if started is not None:
            series[1].observe(max(0.0, self.clock.seconds() - started))

    def events_read(self, events: Sequence[Event]) -> None:
        """A batch of the event stream, as the hub read it: the durations of tasks that
        ended."""
        for ev in events:
            if ev.type not in ENDINGS:
                continue
            try:
                task = json.loads(ev.text)["data"]
                took = (_seconds(task["updated"]) - _seconds(task["created"]))
                self.task_duration.labels(task["kind"], task["status"]).observe(
                    max(0.0, took))
            except (KeyError, TypeError, ValueError) as e:
                log.debug("task ending {id} not measured: {e}", id=ev.id, e=str(e))

    # -- read at each scrape -----------------------------------------------------------

    async def refresh(self) -> None:
        """Read what the scrape reports of Redis and of the hosts."""
        self._host_figures = [HostFigures(h.name, h.state, _vm_states(h.vms.vms.values())
                                          if h.vms.loaded else None) for h in self.hosts]
        try:
            self._redis_figures = await self._read_redis([h.name for h in self.hosts])
        except Exception as e:  # Redis away or slow: the scrape says so and goes on
            log.debug("metrics: redis not read: {e}", e=str(e))
            self._redis_figures = None

    async def _read_redis(self, hosts: list[str]) -> RedisFigures:
        k = self.keys
        queues = [("shared", "", k.jobs), ("daemon", "", k.daemon_jobs),
                  *(("host", h, k.host_jobs(h)) for h in hosts)]
        now = self.clock.seconds()
        keys = [k.events, k.dead, k.workers, k.task_kinds, k.leases_lost,
                *(q[2] for q in queues), *(k.host_workers(h) for h in hosts)]
        args = [repr(now - bus.LIVE_WINDOW), str(int((now - self.keep_seconds) * 1000)),
                k.tasks, str(len(queues))]
        try:
            raw = await self.redis.call("EVALSHA", _SNAPSHOT_SHA, len(keys), *keys, *args)
        except Exception as e:
            if "NOSCRIPT" not in str(e):
                raise
            raw = await self.redis.call("EVAL", _SNAPSHOT, len(keys), *keys, *args)
        lengths, served, counts, events, dead, workers, lost = raw
        out = RedisFigures(events=int(events), dead=int(dead), workers=int(workers),
                           leases_lost=int(lost))
        for (name, host, _key), (length, taken) in zip(queues, lengths, strict=True):
            out.queues.append((name, host, max(0, int(length) - int(taken)), int(taken)))
        out.host_workers = {h: int(n) for h, n in zip(hosts, served, strict=True)}
        for i in range(0, len(counts), 3):
            out.tasks[(_text(counts[i]), _text(counts[i + 1]))] = int(counts[i + 2])
        return out

    async def scrape(self) -> bytes:
        """The text of a scrape."""
        await self.refresh()
        return generate_latest(self.registry)

    def _collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("kimchi_redis_up", "Whether this scrape could read Redis "
                               "(1) or not (0): the queue, worker, task and event figures "
                               "are missing while it is 0")
        figures = self._redis_figures
        up.add_metric([], 1.0 if figures is not None else 0.0)
        yield up
        info = GaugeMetricFamily("kimchi_build_info", "kimchid's version", labels=["version"])
        info.add_metric([__version__], 1.0)
        yield info
        yield from self._collect_hosts()
        watchers = GaugeMetricFamily(
            "kimchi_event_watchers", "Clients following the event stream live, by transport",
            labels=["transport"])
        live = Tally(w.transport for w in self.events.watchers if w.transport)
        for transport in ("websocket", "sse"):
            watchers.add_metric([transport], float(live.get(transport, 0)))
        yield watchers
        yield CounterMetricFamily("kimchi_events_delivered", "Events this daemon has read "
                                  "from the stream and offered to its watchers",
                                  value=float(self.events.delivered))
        if figures is not None:
            yield from _collect_redis(figures)

    def _collect_hosts(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("kimchi_libvirt_up", "Whether kimchid's libvirt connection "
                               "to the host is open (1) or not (0)", labels=["host"])
        state = GaugeMetricFamily("kimchi_host_state", "The state of each host's "
                                  "connection, one series per state (1: the current one)",
                                  labels=["host", "state"])
        vms = GaugeMetricFamily("kimchi_vms", "VMs of each host by state, from the list "
                                "kimchid keeps (none before it has been read)",
                                labels=["host", "state"])
        for h in self._host_figures:
            up.add_metric([h.name], 1.0 if h.state == "connected" else 0.0)
            for s in HOST_STATES:
                state.add_metric([h.name, s], 1.0 if h.state == s else 0.0)
            if h.vms is not None:
                for s, n in sorted(h.vms.items()):
                    vms.add_metric([h.name, s], float(n))
        yield up
        yield state
        yield vms


def _collect_redis(f: RedisFigures) -> Iterator[Metric]:
    waiting = GaugeMetricFamily(
        "kimchi_queue_depth", "Jobs queued that no worker has taken yet, by queue "
        "(shared, daemon, host) and host", labels=["queue", "host"])
    taken = GaugeMetricFamily(
        "kimchi_queue_in_progress", "Jobs a worker has taken and not yet ended, by queue "
        "and host", labels=["queue", "host"])
    for name, host, w, t in f.queues:
        waiting.add_metric([name, host], float(w))
        taken.add_metric([name, host], float(t))
    yield waiting
    yield taken
    yield GaugeMetricFamily("kimchi_workers_alive", "Worker processes that sent a "
                            "heartbeat in the last 3 seconds (all hosts)", value=f.workers)
    served = GaugeMetricFamily("kimchi_host_workers_alive", "Live workers serving each "
                               "host's jobs", labels=["host"])
    for host, n in f.host_workers.items():
        served.add_metric([host], float(n))
    yield served
    yield CounterMetricFamily("kimchi_leases_lost", "Jobs taken over from a worker whose "
                              "lease expired (it died or stopped heartbeating), counted by "
                              "the workers in Redis", value=float(f.leases_lost))
    yield GaugeMetricFamily("kimchi_dead_jobs", "Jobs failed after their last attempt "
                            "(the dead-letter stream, capped)", value=float(f.dead))
    yield GaugeMetricFamily("kimchi_event_stream_length", "Events kept in the stream for "
                            "resuming (capped by [events] max_len)", value=float(f.events))
    tasks = GaugeMetricFamily("kimchi_tasks", "Tasks kept, by kind and status (ended ones "
                              "for [tasks] keep_seconds)", labels=["kind", "status"])
    for (kind, status), n in sorted(f.tasks.items()):
        tasks.add_metric([kind, status], float(n))
    yield tasks


class _Snapshot:
    """The figures read at scrape time, as a collector of the registry."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterable[Metric]:
        return list(self.metrics._collect())


class MeteredSite(Site):
    """A Site that counts every answered request in ``metrics``: its route template (set
    by the dispatcher on the request as ``route_template``), method, status and time."""

    def __init__(self, resource: Any, metrics: Metrics, clock: IReactorTime,
                 requestFactory: type[Request] = Request) -> None:
        stamp = clock.seconds

        def init(self: Request, *args: Any, **kw: Any) -> None:
            requestFactory.__init__(self, *args, **kw)
            self.kimchi_started = stamp()  # type: ignore[attr-defined]

        stamped = type(requestFactory.__name__, (requestFactory,), {"__init__": init})
        Site.__init__(self, resource, requestFactory=stamped)  # Twisted's (mypy: untyped)
        self.metrics = metrics

    def log(self, request: http.Request) -> None:
        super().log(request)
        try:
            self.metrics.request_done(request, getattr(request, "kimchi_started", None))
        except Exception:  # never an answer lost to its count
            log.failure("counting a request")


def parse_allow(allow: Iterable[str]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """``[metrics] allow``: addresses and networks (CIDR); ValueError naming a bad one."""
    out = []
    for item in allow:
        try:
            out.append(ipaddress.ip_network(item.strip(), strict=False))
        except ValueError as e:
            raise ValueError(f"not an address or network: {item!r}") from e
    return out


def address_check(allow: Iterable[str]) -> Callable[[IRequest], bool] | None:
    """Whether a request's client address is one of ``allow`` (None: none is)."""
    networks = parse_allow(allow)
    if not networks:
        return None

    def allowed(request: IRequest) -> bool:
        host = str(getattr(request.getClientAddress(), "host", "") or "")
        try:
            addr = ipaddress.ip_address(host.split("%")[0])
        except ValueError:  # a UNIX socket, or no address
            return False
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        return any(addr in n for n in networks)

    return allowed


def _vm_states(vms: Iterable[dict[str, Any]]) -> dict[str, int]:
    counts = dict.fromkeys(("running", "paused", "shutoff"), 0)
    for vm in vms:
        state = vm.get("state")
        state = state if state in STATES else "nostate"
        counts[state] = counts.get(state, 0) + 1
    return counts


def _seconds(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)
