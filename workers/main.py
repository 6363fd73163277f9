"""``kimchi-worker [--config FILE]``: one worker process."""

from __future__ import annotations

import argparse
import logging
import sys

from kimchi import config as config_mod
from kimchi import gcpause
from kimchi.bus.worker import Worker, install_signal_handlers
from kimchi.errors import ConfigError
from kimchi.logs import setup_stdlib_logging
from workers.jobs import load_all


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kimchi-worker", description=__doc__)
    parser.add_argument("--config", help="TOML configuration file")
    parser.add_argument("--name", help="consumer name (default: host-pid)")
    args = parser.parse_args(argv)
    try:
        cfg = config_mod.load(args.config)
    except ConfigError as e:
        print(f"kimchi-worker: {e}", file=sys.stderr)
        return 2
    setup_stdlib_logging(cfg.server.log_format, cfg.server.log_level)
    if not cfg.redis.url:
        logging.getLogger("kimchi.worker").error(
            "redis.url is empty: a worker needs the Redis URL of its daemon "
            "(KIMCHI_REDIS_URL or [redis] url)"
        )
        return 2
    gc_log = logging.getLogger("kimchi.worker.gc")
    gcpause.install("worker", lambda p: gc_log.warning(
        "garbage collection of generation %d took %.1f ms (%d objects freed)",
        p.generation, p.ms, p.collected))
    worker = Worker(cfg, cfg.redis.url, load_all(), args.name)
    install_signal_handlers(worker)
    gcpause.settle()  # after the imports and the job registry: see kimchi.gcpause
    worker.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
