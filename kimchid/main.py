"""``kimchid [--config FILE]``: the daemon."""

from __future__ import annotations

import argparse
import sys

from kimchi import config as config_mod
from kimchi import gcpause
from kimchi.errors import ConfigError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kimchid", description="kimchi daemon")
    parser.add_argument("--config", help=f"TOML file (default {config_mod.DEFAULT_CONFIG_FILE})")
    args = parser.parse_args(argv)
    try:
        cfg = config_mod.load(args.config)
    except ConfigError as e:
        print(f"kimchid: configuration error:\n{e}", file=sys.stderr)
        return 2

    from twisted.internet import reactor
    from twisted.logger import Logger

    gc_log = Logger(namespace="kimchid.gc")
    gcpause.install("kimchid", lambda p: reactor.callFromThread(  # type: ignore[attr-defined]
        gc_log.warn, "garbage collection of generation {generation} took {ms:.1f} ms "
        "({collected} objects freed)", generation=p.generation, ms=p.ms,
        collected=p.collected))

    from kimchi.logs import setup_twisted_logging
    from kimchid.service import Kimchid, notify_systemd

    setup_twisted_logging(cfg.server.log_format, cfg.server.log_level)
    try:
        daemon = Kimchid(cfg, reactor, args.config)
    except (OSError, RuntimeError) as e:
        print(f"kimchid: cannot start: {e}", file=sys.stderr)
        return 1

    def started() -> None:
        daemon.startService()
        # start-up is over (modules, routes, schemas, listeners): out of the collector's sight
        gcpause.settle()
        gcpause.IdleFullCollections(reactor).start()
        host = "localhost" if cfg.server.host in ("0.0.0.0", "::", "") else cfg.server.host
        print(f"kimchid ready: open http://{host}:{cfg.server.http_port}/", flush=True)
        notify_systemd("READY=1")

    def stopping() -> object:
        notify_systemd("STOPPING=1")
        return daemon.stopService()

    reactor.callWhenRunning(started)
    reactor.addSystemEventTrigger("before", "shutdown", stopping)
    reactor.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
