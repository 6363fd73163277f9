"""The daemon's service tree: started in the order added, stopped in reverse."""

from __future__ import annotations

import os
import socket
from typing import Any

from twisted.application.service import MultiService, Service
from twisted.internet import defer, endpoints, task
from twisted.internet.interfaces import IListeningPort, IProtocolFactory, IStreamServerEndpoint
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.server import Site

from kimchi import bus, reports
from kimchi.bus.context import JobContext
from kimchi.bus.twisted import RedisClient
from kimchi.config import Config
from kimchid import api
from kimchid.adapters.jobrunner import DaemonJobs
from kimchid.adapters.libvirt import LibvirtConnection
from kimchid.adapters.objectstore import ObjectStore, ObjectWatcher
from kimchid.adapters.processes import Children, add_embedded_redis, add_workers
from kimchid.api.access import Access
from kimchid.api.audit import AuditTrail
from kimchid.api.gate import Gate
from kimchid.api.redirect import ToHttps
from kimchid.auth.pam import PamLogin
from kimchid.auth.sessions import SessionStore
from kimchid.auth.throttle import LoginThrottle
from kimchid.auth.tls import context_factory, ensure_certificate, https_endpoint
from kimchid.auth.tokens import TokenStore
from kimchid.metrics import MeteredSite, Metrics
from kimchid.model import (
    snapshots,
    template_download,
    vm_clone,
    vm_create,
    vm_migrate,
    vm_template,
)
from kimchid.model.audit import AuditLog
from kimchid.model.capabilities import Capabilities
from kimchid.model.debugreports import DebugReports
from kimchid.model.events import EventHub
from kimchid.model.health import Health
from kimchid.model.host import HostStats
from kimchid.model.host_setup import check_defaults, ensure_defaults
from kimchid.model.hosts import LOCAL, Host, Hosts
from kimchid.model.isos import IsoLibrary
from kimchid.model.preferences import Preferences
from kimchid.model.serial import SerialConsoles
from kimchid.model.storage import VolumeTransfers
from kimchid.model.tasks import TaskService
from kimchid.model.template_download import TemplateDownloads
from kimchid.model.templates import TemplateService, networks_named, pools_named
from kimchid.model.vm_clone import VmCloner
from kimchid.model.vm_create import VmCreator
from kimchid.model.vm_migrate import VmMigrator
from kimchid.model.vm_template import VmTemplater
from kimchid.model.vms import Screenshots
from kimchid.model.vmstats import VmStats

log = Logger()


class Kimchid(MultiService):
    """Everything kimchid runs, wired together."""

    def __init__(self, cfg: Config, reactor: Any, config_file: str | None = None,
                 listen: bool = True) -> None:
        super().__init__()
        self.cfg = cfg
        self.reactor = reactor
        cfg.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.keys = bus.Keys(cfg.redis.key_prefix)

        # Redis first (everything needs it), workers last: on the way down the workers
        # stop first and hand their jobs back while Redis still answers.
        self.redis_process = Children(reactor)
        self.redis_process.name = "redis-server"
        redis_url = cfg.redis.url or add_embedded_redis(self.redis_process, cfg)
        self.redis_url = redis_url
        if not cfg.redis.url:
            self.redis_process.setServiceParent(self)

        self.redis = RedisClient(redis_url, cfg.redis.timeout, reactor)
        self.redis.setServiceParent(self)
        self.libvirt = LibvirtConnection(cfg.libvirt.uri, reactor)
        self.libvirt.setServiceParent(self)
        self.events = EventHub(self.redis, self.keys, reactor, cfg.events.max_len,
                               cfg.events.page_size)
        self.events.setServiceParent(self)
        self.tasks = TaskService(self.redis, self.keys, reactor, cfg.events.max_len,
                                 cfg.tasks.keep_seconds)
        self.isos = IsoLibrary(self.redis, self.keys, self.tasks, self.libvirt)
        self.store = ObjectStore(cfg.paths.objects_dir)
        self.preferences = Preferences(self.store)
        local = Host(LOCAL, cfg.libvirt.uri, True, self.libvirt, self.events,
                     template_pools=lambda: pools_named(self.store),
                     template_networks=lambda: networks_named(self.store))
        self.hosts = Hosts(local, self.store, self.events,
                           lambda uri: LibvirtConnection(uri, reactor), reactor,
                           cfg.libvirt.stats_interval,
                           (cfg.host.stats_interval, cfg.host.history))
        self.vms = local.vms
        self.vm_actions = local.actions
        self.screenshots = Screenshots(reactor)
        self.vm_stats = VmStats(self.vms, self.events, reactor, cfg.libvirt.stats_interval)
        self.host = HostStats(self.libvirt, self.events, reactor, cfg.host.stats_interval,
                              cfg.host.history)
        local.figures = self.host
        self.capabilities = Capabilities(
            cfg, self.libvirt, reactor, f"http://127.0.0.1:{cfg.server.http_port}/ui/logo.svg")
        self.debugreports = DebugReports(cfg.state_dir / "debugreports",
                                         cfg.debugreports.plugins, self.tasks, self.events,
                                         self.capabilities, reactor)
        self.templates = TemplateService(self.store, self.libvirt, self.events, reactor,
                                         cfg.outbound.allow)
        self.templates.prime()
        self.templates.hosts = self.hosts
        self.templates.tasks_ended = self.tasks.ended
        self.access = Access(self.hosts)
        self.storage = local.storage
        self.networks = local.networks
        self.vm_creator = VmCreator(self.tasks, self.vms, self.templates, self.libvirt,
                                    self.capabilities,
                                    cfg.state_dir / "vm-create-leftovers.json", self.hosts)
        self.vm_cloner = VmCloner(self.tasks, self.hosts, self.vm_creator,
                                  cfg.workers.copy_limit_mib)
        self.vm_migrator = VmMigrator(self.tasks, self.hosts)
        self.vm_templater = VmTemplater(self.tasks, self.hosts, self.templates,
                                        self.vm_cloner, reactor)
        self.transfers = VolumeTransfers(self.hosts, self.tasks, self.templates.outbound,
                                         cfg.workers.copy_limit_mib)
        self.template_downloads = TemplateDownloads(self.tasks, self.hosts, self.templates,
                                                    self.transfers, reactor)
        # jobs that are libvirt calls run here, on the daemon's threads (see jobrunner)
        self.daemon_jobs = DaemonJobs(cfg, redis_url, self.keys,
                                      {vm_create.KIND: self.vm_creator.run,
                                       vm_clone.KIND: self.vm_cloner.run,
                                       vm_template.KIND: self.vm_templater.run,
                                       template_download.KIND:
                                           self.template_downloads.run,
                                       snapshots.KIND: self._snapshot,
                                       vm_migrate.KIND: self.vm_migrator.run,
                                       reports.FETCH: self.debugreports.fetch}, reactor)
        self.daemon_jobs.setServiceParent(self)
        watcher = ObjectWatcher(self.store, reactor, on_change=self._file_changed)
        watcher.setServiceParent(self)
        self.redis.on_change(self._redis_changed)
        self.health = Health(self.redis, self.libvirt, self.events, self.tasks, reactor,
                             ensure_defaults=ensure_defaults, check_defaults=check_defaults,
                             redis_embedded=not cfg.redis.url)
        self.health.setServiceParent(self)

        self.workers = Children(reactor)
        self.workers.name = "workers"
        add_workers(self.workers, cfg, redis_url, config_file)

        self.metrics = Metrics(self.redis, self.keys, self.hosts, self.events, reactor,
                               cfg.tasks.keep_seconds)
        self.events.listeners.append(self.metrics.events_read)  # task durations
        auth = cfg.auth
        self.pam = PamLogin(auth.pam_service, auth.admin_groups, reactor, auth.pam_threads,
                            auth.pam_queue)
        self.pam.setServiceParent(self)
        prefix = cfg.redis.key_prefix
        self.gate = Gate(
            pam=self.pam,
            sessions=SessionStore(self.redis, prefix, reactor, auth.session_idle_minutes * 60,
                                  auth.session_max_hours * 3600),
            tokens=TokenStore(self.redis, prefix, reactor),
            throttle=LoginThrottle(self.redis, prefix, reactor, auth.throttle_free_attempts,
                                   auth.throttle_base_delay, auth.throttle_max_delay,
                                   auth.throttle_window),
            clock=reactor, extra_origins=auth.allowed_origins,
            on_failure=self.metrics.failed_login)

        # who changed what: stopped before the event hub and Redis, it writes its last
        self.audit = AuditLog(self.redis, self.keys, self.events, self.tasks, reactor,
                              cfg.audit.max_len)
        self.audit.setServiceParent(self)
        # the serial consoles' streams go back to libvirt before its connections close
        self.serial_consoles = SerialConsoles(reactor)
        self.serial_consoles.setServiceParent(self)
        self.table = api.make_table(self)
        self.site = MeteredSite(api.build(self.table, self.gate,
                                          AuditTrail(self.audit, self.gate.sessions)
                                          ).resource(), self.metrics,
                                reactor, requestFactory=api.app.request_factory(self.table))
        self.site.displayTracebacks = False
        self.site.noisy = False
        self.listeners: list[Listener] = []
        if listen:
            self._listen(cfg)

    def _listen(self, cfg: Config) -> None:
        """HTTPS with the app and HTTP redirecting to it; with ``tls = false``, HTTP only
        (behind a TLS-terminating proxy, or in tests)."""
        iface = _iface(cfg.server.host)
        http = endpoints.TCP4ServerEndpoint(self.reactor, cfg.server.http_port,
                                            interface=iface)
        if not cfg.server.tls:
            self._serve(Listener(http, self.site, f"http port {cfg.server.http_port}"))
            return
        cert, key = ensure_certificate(cfg.state_dir, cfg.server.cert, cfg.server.key,
                                       cfg.server.host)
        self.tls_files = (cert, key)
        endpoint = https_endpoint(self.reactor, cfg.server.https_port, cfg.server.host,
                                  context_factory(cert, key))
        self._serve(Listener(endpoint, self.site, f"https port {cfg.server.https_port}"))
        redirect = Site(ToHttps(cfg.server.https_port, self.site.resource))
        redirect.noisy = False
        self._serve(Listener(http, redirect, f"http port {cfg.server.http_port}"))

    def _serve(self, svc: Listener) -> None:
        svc.setServiceParent(self)
        self.listeners.append(svc)

    def listening(self) -> defer.Deferred[list[IListeningPort]]:
        """Fires when every port listens; fails (naming the port and why) when one cannot,
        a port taken by another program say."""
        return defer.gatherResults([svc.listening for svc in self.listeners],
                                   consumeErrors=True)

    def startService(self) -> None:
        super().startService()
        self.hosts.load()
        self._expiring = task.LoopingCall(self._expire_unserved)
        self._expiring.clock = self.reactor
        self._expiring.start(2.0, now=False)
        self.workers.startService()
        self.vm_stats.start()
        self.host.start()
        # probe once the listener serves the URL QEMU is asked to read
        self.reactor.callLater(0.5, self._probe)
        log.info("kimchid started: redis {redis}, libvirt {uri}, {n} embedded workers",
                 redis=self.redis_url, uri=self.cfg.libvirt.uri, n=self.cfg.workers.embedded)

    def _probe(self) -> None:
        d = defer.Deferred.fromCoroutine(self.capabilities.refresh())
        d.addErrback(lambda f: log.warn("capability probes failed: {e}",
                                        e=f.getErrorMessage()))

    def stopService(self) -> defer.Deferred[None]:
        return defer.Deferred.fromCoroutine(self._stop())

    async def _stop(self) -> None:
        if self._expiring.running:
            self._expiring.stop()
        self.vm_stats.stop()
        self.host.stop()
        await self.serial_consoles.stopService()  # while every host's connection is open
        self.hosts.stop()
        await self.workers.stopService()
        await defer.maybeDeferred(super().stopService)

    def _expire_unserved(self) -> defer.Deferred[Any]:
        """Fail the host jobs that waited too long for a worker serving their host."""
        d = defer.Deferred.fromCoroutine(self.tasks.expire_unserved(
            [h.name for h in self.hosts], self.cfg.workers.host_wait_seconds))
        d.addCallbacks(lambda _n: None, lambda f: log.debug(
            "expiring unserved jobs: {e}", e=f.getErrorMessage()))
        return d

    def _snapshot(self, ctx: JobContext) -> dict[str, Any]:
        """A ``vm.snapshot`` job: taken by its VM's host's :class:`Snapshots`."""
        return self.hosts.get(ctx.params.get("host", LOCAL)).snapshots.run(ctx)

    def _file_changed(self, kind: str, name: str, change: str, obj: Any) -> None:
        self.templates.file_changed(kind, name, change, obj)
        self.hosts.file_changed(kind, name, change, obj)

    def _redis_changed(self, up: bool, error: str) -> None:
        if up:  # a new Redis (or one that lost its data) needs the job queue's group again
            d = defer.Deferred.fromCoroutine(self.tasks.ensure_group())
            d.addErrback(lambda f: log.warn("after reconnecting to redis: {e}",
                                            e=f.getErrorMessage()))


class Listener(Service):
    """One listening port of the daemon, opened when the service starts and closed when it
    stops.  ``listening`` fires with the port, or fails naming the port and why it could
    not be opened (the daemon then stops, rather than run without the port its users were
    told of)."""

    def __init__(self, endpoint: IStreamServerEndpoint, factory: IProtocolFactory,
                 what: str) -> None:
        self.endpoint = endpoint
        self.factory = factory
        self.what = what
        self.port: IListeningPort | None = None
        self.listening: defer.Deferred[IListeningPort] = defer.Deferred()

    def startService(self) -> None:
        super().startService()
        self.listening = self.endpoint.listen(self.factory)
        self.listening.addCallbacks(self._opened, self._refused)

    def _opened(self, port: IListeningPort) -> IListeningPort:
        self.port = port
        return port

    def _refused(self, failure: Failure) -> Failure:
        return Failure(RuntimeError(f"cannot listen on {self.what}: "
                                    f"{failure.getErrorMessage()}"))

    def stopService(self) -> defer.Deferred[None] | None:
        super().stopService()
        port, self.port = self.port, None
        stopped = port.stopListening() if port is not None else None
        return stopped if isinstance(stopped, defer.Deferred) else None


def _iface(host: str) -> str:
    return host.replace(":", "\\:")


def notify_systemd(state: str) -> None:
    """sd_notify(3): tell systemd we are READY / STOPPING (Type=notify)."""
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return
    if addr.startswith("@"):
        addr = "\0" + addr[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.connect(addr)
        s.sendall(state.encode())
