"""The daemon's own job runner: the VM jobs, which are libvirt calls through the
connections the daemon holds to every host.

They run in the daemon, on threads of their own, through the same queue, leases,
fencing and cancellation as the worker processes — a stream of their own
(``{p}jobs:daemon``) read by one :class:`kimchi.bus.worker.Worker` living on a thread
of each daemon.  If a daemon dies mid-job, another (or the next) reclaims the job once
its lease has expired.  Why these jobs run here: README.md, "Where jobs run".
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Mapping
from typing import Any

from twisted.application.service import Service
from twisted.internet import defer, threads
from twisted.logger import Logger

from kimchi import bus
from kimchi.bus.jobs import Job
from kimchi.config import Config

log = Logger()


class DaemonJobs(Service):
    name = "daemon-jobs"  # type: ignore[assignment]

    def __init__(self, cfg: Config, redis_url: str, keys: bus.Keys,
                 jobs: Mapping[str, Job], reactor: Any) -> None:
        self.cfg = cfg
        self.redis_url = redis_url
        self.keys = keys
        self.jobs = jobs
        self.reactor = reactor
        self.worker: Any = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()

    def startService(self) -> None:
        super().startService()
        self._thread = threading.Thread(target=self._run, name="daemon-jobs", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        from kimchi.bus.worker import Worker

        self.worker = Worker(self.cfg, self.redis_url, self.jobs,
                             name=f"kimchid-{socket.gethostname()}-{os.getpid()}",
                             stream=self.keys.daemon_jobs, advertise=False)
        self._ready.set()
        try:
            self.worker.run()
        except Exception as e:  # never silently: a dead runner leaves VM creation queued
            log.failure("the daemon's job runner stopped: {e}", e=str(e))

    def stopService(self) -> defer.Deferred[None]:
        super().stopService()
        thread = self._thread
        if thread is None:
            return defer.succeed(None)

        def stop() -> None:
            self._ready.wait(5)
            if self.worker is not None:
                self.worker.request_stop()
            thread.join(15)

        return threads.deferToThreadPool(self.reactor, self.reactor.getThreadPool(), stop)
