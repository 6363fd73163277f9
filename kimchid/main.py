"""``kimchid [--config FILE]``: the daemon."""

from __future__ import annotations

import argparse
import sys

from kimchi import config as config_mod
from kimchi import gcpause
from kimchi.errors import ConfigError
from kimchi.logs import add_log_arguments


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kimchid", description="kimchi daemon")
    parser.add_argument("--config", help=f"TOML file (default {config_mod.DEFAULT_CONFIG_FILE})")
    add_log_arguments(parser)
    args = parser.parse_args(argv)
    try:
        cfg = config_mod.load(args.config)
    except ConfigError as e:
        print(f"kimchid: configuration error:\n{e}", file=sys.stderr)
        return 2

    from twisted.internet import reactor
    from twisted.internet.defer import FirstError
    from twisted.logger import Logger
    from twisted.python.failure import Failure

    gc_log = Logger(namespace="kimchid.gc")
    gcpause.install("kimchid", lambda p: reactor.callFromThread(  # type: ignore[attr-defined]
        gc_log.warn, "garbage collection of generation {generation} took {ms:.1f} ms "
        "({collected} objects freed)", generation=p.generation, ms=p.ms,
        collected=p.collected))

    from kimchi.logs import setup_twisted_logging
    from kimchid.service import Kimchid, notify_systemd

    setup_twisted_logging(args.log_format or cfg.server.log_format, cfg.server.log_level,
                          log_file=args.log_file, max_bytes=int(args.log_max_mb * 2**20),
                          keep=max(0, args.log_keep), process="kimchid")
    try:
        daemon = Kimchid(cfg, reactor, args.config)
    except (OSError, RuntimeError) as e:
        Logger(namespace="kimchid").critical("kimchid cannot start: {error}", error=str(e))
        return 1

    failed: list[str] = []

    def cannot_serve(failure: Failure) -> None:
        # without its port the daemon serves no one: say so and stop, rather than run on
        err = failure.value
        if isinstance(err, FirstError):  # gatherResults': the first port that failed
            err = err.subFailure.value
        why = str(err)
        Logger(namespace="kimchid").critical("kimchid cannot start: {error}", error=why)
        failed.append(why)
        reactor.stop()

    def ready(_ports: object) -> None:
        host = "localhost" if cfg.server.host in ("0.0.0.0", "::", "") else cfg.server.host
        scheme, port = (("https", cfg.server.https_port) if cfg.server.tls
                        else ("http", cfg.server.http_port))
        Logger(namespace="kimchid").info("kimchid ready: open {scheme}://{host}:{port}/",
                                         scheme=scheme, host=host, port=port)
        notify_systemd("READY=1")

    def started() -> None:
        daemon.startService()
        # start-up is over (modules, routes, schemas, listeners): out of the collector's sight
        gcpause.settle()
        gcpause.IdleFullCollections(reactor).start()
        daemon.listening().addCallbacks(ready, cannot_serve)

    def stopping() -> object:
        notify_systemd("STOPPING=1")
        return daemon.stopService()

    reactor.callWhenRunning(started)
    reactor.addSystemEventTrigger("before", "shutdown", stopping)
    reactor.run()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
