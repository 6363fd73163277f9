"""``kimchi-worker [--config FILE]``: one worker process."""

from __future__ import annotations

import argparse
import logging
import sys

from kimchi import config as config_mod
from kimchi import gcpause
from kimchi.bus.worker import Worker, install_signal_handlers
from kimchi.errors import ConfigError
from kimchi.logs import add_log_arguments, setup_stdlib_logging
from workers.jobs import load_all


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kimchi-worker", description=__doc__)
    parser.add_argument("--config", help="TOML configuration file")
    parser.add_argument("--name", help="consumer name (default: host-pid)")
    parser.add_argument("--log-name", metavar="NAME",
                        help="the process its log lines name (default worker-<pid>)")
    add_log_arguments(parser)
    args = parser.parse_args(argv)
    try:
        cfg = config_mod.load(args.config)
    except ConfigError as e:
        print(f"kimchi-worker: {e}", file=sys.stderr)
        return 2
    setup_stdlib_logging(args.log_format or cfg.server.log_format, cfg.server.log_level,
                         log_file=args.log_file, max_bytes=int(args.log_max_mb * 2**20),
                         keep=max(0, args.log_keep), process=args.log_name or "")
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
