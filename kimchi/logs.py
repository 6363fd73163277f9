"""Structured logs: human text on a terminal, JSON lines under systemd.

The daemon logs through ``twisted.logger`` (format strings with fields); the
workers, which have no reactor, through ``logging`` with the same JSON shape.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import IO, Any

from twisted.logger import (
    FilteringLogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    globalLogBeginner,
    jsonFileLogObserver,
    textFileLogObserver,
)

_LEVELS = {"debug": LogLevel.debug, "info": LogLevel.info, "warn": LogLevel.warn,
           "error": LogLevel.error}


def setup_twisted_logging(fmt: str, level: str, stream: IO[str] = sys.stdout) -> None:
    """Send the daemon's log events to ``stream`` as text or JSON lines."""
    # JSON lines: no RFC 7464 record separator, one object per line for the journal
    observer = (jsonFileLogObserver(stream, recordSeparator="") if fmt == "json"
                else textFileLogObserver(stream))
    predicate = LogLevelFilterPredicate(defaultLogLevel=_LEVELS[level])
    globalLogBeginner.beginLoggingTo(
        [FilteringLogObserver(observer, [predicate])], redirectStandardIO=False
    )


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            out["traceback"] = self.formatException(record.exc_info)
        return json.dumps(out)


def setup_stdlib_logging(fmt: str, level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    logging.basicConfig(level=level.upper().replace("WARN", "WARNING"), handlers=[handler],
                        force=True)
