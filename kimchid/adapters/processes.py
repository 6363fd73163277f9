"""Child processes the daemon supervises: the embedded redis-server and the workers.

Twisted's ProcessMonitor restarts a child that dies (with back-off) and stops
them all on shutdown (SIGTERM, then SIGKILL after a grace period).  Children are
started through :mod:`kimchi.orphan_guard` so they die with the
daemon even when it is killed outright.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from twisted.internet import defer, task
from twisted.internet.interfaces import IReactorProcess
from twisted.logger import Logger
from twisted.runner.procmon import ProcessMonitor

from kimchi.config import Config

log = Logger()


def guarded(*argv: str) -> list[str]:
    return [sys.executable, "-m", "kimchi.orphan_guard", "--", *argv]


class Children(ProcessMonitor):
    """Supervised children whose stop waits until they have exited."""

    name = "children"  # type: ignore[assignment]

    def __init__(self, reactor: IReactorProcess) -> None:
        super().__init__(reactor=reactor)
        self.killTime = 10.0  # type: ignore[assignment]  # a worker hands its job back within its 2 s grace
        self.minRestartDelay = 0.2  # type: ignore[assignment]
        self.maxRestartDelay = 5
        self.threshold = 1

    def stopService(self) -> defer.Deferred[None]:  # type: ignore[override]
        """Stop every child; the Deferred fires once they have all exited."""
        super().stopService()
        return defer.Deferred.fromCoroutine(self._exited())

    async def _exited(self) -> None:
        deadline = self._clock.seconds() + self.killTime + 2.0
        while self.protocols and self._clock.seconds() < deadline:
            await task.deferLater(self._clock, 0.05)


def redis_socket(cfg: Config) -> Path:
    return cfg.state_dir / "redis.sock"


def add_embedded_redis(children: Children, cfg: Config) -> str:
    """Supervise a private redis-server in the state dir; returns its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis.url is empty and redis-server is not installed "
                           "(apt-get install redis-server)")
    data = cfg.state_dir / "redis"
    data.mkdir(parents=True, exist_ok=True, mode=0o700)
    sock = redis_socket(cfg)
    children.addProcess("redis", guarded(
        binary, "--port", "0", "--unixsocket", str(sock), "--unixsocketperm", "700",
        "--dir", str(data), "--appendonly", "yes", "--appendfsync", cfg.redis.appendfsync,
        "--save", "", "--daemonize", "no", "--logfile", "", "--loglevel", "warning",
        "--maxclients", "10000",
    ), env=dict(os.environ))
    return f"unix://{sock}"


def add_workers(children: Children, cfg: Config, redis_url: str,
                config_file: str | None) -> None:
    env = dict(os.environ, KIMCHI_REDIS_URL=redis_url, PYTHONUNBUFFERED="1")
    # JSON lines whatever the daemon's own format: kimchid passes each on as the record
    # it is (level, logger, fields), in its own format (kimchi.logs)
    args = [sys.executable, "-m", "workers.main", "--log-format", "json"]
    if config_file:
        args += ["--config", config_file]
    for i in range(cfg.workers.embedded):
        children.addProcess(f"worker-{i}", guarded(*args, "--log-name", f"worker-{i}"),
                            env=env)
