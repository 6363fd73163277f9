"""One log shape for every kimchi process: JSON lines, or readable text on a terminal.

The daemon logs through ``twisted.logger`` (format strings with fields); the
workers, which have no reactor, through ``logging``.  Both become the same flat
JSON object, one a line::

    {"time": "2024-05-01T12:00:00.123Z", "level": "warning", "logger": "kimchid.model.vms",
     "message": "VM alpine did not stop", "vm": "alpine", "pid": 4242, "process": "kimchid"}

``level`` is one of debug, info, warning, error, critical; the event's own fields sit
beside the fixed keys (values JSON cannot hold are written as their ``repr()``), and a
failure adds ``traceback``.  When the output is the systemd journal (``JOURNAL_STREAM``
names it) every line starts with its syslog priority ``<N>`` (sd-daemon(3)), which
journald strips and keeps as the entry's priority, so ``journalctl -p err -u kimchid``
finds the errors.  On a terminal the same records read as ``time level logger: message``.

The embedded workers' lines reach the daemon through its ProcessMonitor; the daemon
passes them on unchanged in shape (their own level, logger and fields) instead of
wrapping them in an info line of its own.

``python -m kimchi.logs [FILE]`` turns JSON lines back into text (``kimchi.sh logs``).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import re
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import IO, Any, TypeGuard

from twisted.logger import ILogObserver, Logger, LogLevel, formatEvent, globalLogBeginner
from twisted.python.failure import Failure
from zope.interface import implementer

LEVELS = ("debug", "info", "warning", "error", "critical")
# syslog priorities (sd-daemon(3)): emerg 0 ... debug 7
PRIORITY = {"debug": 7, "info": 6, "warning": 4, "error": 3, "critical": 2}
# the names [server] log_level accepts -> the level they mean
CONFIG_LEVELS = {"debug": "debug", "info": "info", "warn": "warning", "warning": "warning",
                 "error": "error", "critical": "critical"}
FORMATS = ("auto", "json", "text")
FIXED_KEYS = ("time", "level", "logger", "message", "traceback", "pid", "process")
# an event field named like a fixed key is written under this prefix
FIELD_PREFIX = "field_"

DEFAULT_MAX_BYTES = 10 * 1024 * 1024
DEFAULT_KEEP = 5

_TWISTED_LEVELS = {LogLevel.debug: "debug", LogLevel.info: "info", LogLevel.warn: "warning",
                   LogLevel.error: "error", LogLevel.critical: "critical"}
# keys a legacy twisted.python.log event carries besides its log_* ones
_LEGACY_KEYS = frozenset(("message", "isError", "system", "time", "format", "why", "failure",
                          "printed", "logLevel"))
# ProcessMonitor (kimchid.adapters.processes.Children) logs each line of a child so
_CHILD_LINE_FORMAT = "[{tag}] {line}"
# redis-server's own lines: "pid:role dd Mon yyyy hh:mm:ss.mmm # text".  Started with
# --loglevel warning it marks every line '#', its start-up banner too: only the lines
# that say something is wrong become warnings
_REDIS_WARNING = re.compile(r"^\d+:[XCSM] .*? # .*\b(WARNING|error|fail(ed|ure)?|fatal|can't|"
                            r"cannot|unable)\b", re.IGNORECASE)


def iso_time(seconds: float) -> str:
    """``seconds`` since the epoch as ISO 8601 UTC, to the millisecond."""
    stamp = datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


def config_level(name: str) -> str:
    """The level a ``[server] log_level`` value means (``warn`` is ``warning``)."""
    return CONFIG_LEVELS[name.lower()]


def is_journal(stream: IO[Any], environ: Mapping[str, str] | None = None) -> bool:
    """True when ``stream`` is the journal stream systemd gave this process.

    systemd sets ``JOURNAL_STREAM=<device>:<inode>`` of the socket it connected
    stdout/stderr to; a child whose output is a pipe or file inherits the variable
    but not the socket, hence the comparison (sd_journal_stream_fd(3), systemd.exec(5)).
    """
    environ = os.environ if environ is None else environ
    value = environ.get("JOURNAL_STREAM", "")
    try:
        dev, ino = (int(part) for part in value.split(":"))
        st = os.fstat(stream.fileno())
    except (ValueError, OSError, AttributeError):  # io.UnsupportedOperation is both
        return False
    return (st.st_dev, st.st_ino) == (dev, ino)


def choose_format(fmt: str, stream: IO[Any] | None, journal: bool) -> str:
    """``json`` or ``text`` for ``fmt`` (auto: text on a terminal, JSON anywhere else)."""
    if fmt in ("json", "text"):
        return fmt
    try:
        tty = stream is not None and not journal and stream.isatty()
    except (ValueError, OSError, AttributeError):
        tty = False
    return "text" if tty else "json"


def json_safe(value: Any) -> Any:
    """``value`` if JSON holds it as it is, else its ``repr()``."""
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, (list, tuple, dict)):
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError):
            return repr(value)
        return value
    return repr(value)


def _fields(items: Iterable[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in items:
        if not isinstance(key, str):
            continue
        out[FIELD_PREFIX + key if key in FIXED_KEYS else key] = json_safe(value)
    return out


def _is_record(obj: Any) -> TypeGuard[dict[str, Any]]:
    return (isinstance(obj, dict) and obj.get("level") in LEVELS
            and all(isinstance(obj.get(k), str) for k in ("time", "logger", "message")))


# -- twisted.logger events -> records -------------------------------------------------------


def _child_record(event: Mapping[str, Any]) -> dict[str, Any] | None:
    """A record for a line a supervised child wrote, None if ``event`` is not one; an
    empty record for an empty line (nothing to write)."""
    if event.get("log_format") != _CHILD_LINE_FORMAT or "line" not in event:
        return None
    line, tag = str(event.get("line", "")), str(event.get("tag", ""))
    if not line.strip():
        return {}
    if line.startswith("{"):
        try:
            parsed = json.loads(line)
        except ValueError:
            parsed = None
        if _is_record(parsed):
            parsed.setdefault("process", tag)
            return dict(parsed)
    if tag == "redis" and _REDIS_WARNING.match(line):
        level = "warning"
    else:
        # what a child writes outside its logger (a crash before logging starts) is news
        level = "warning" if event.get("stream") == "stderr" else "info"
    return {"time": iso_time(event.get("log_time") or time.time()), "level": level,
            "logger": f"kimchid.children.{tag}", "message": line,
            "stream": event.get("stream"), "pid": _child_pid(event, tag), "process": tag}


def _child_pid(event: Mapping[str, Any], tag: str) -> int | None:
    """The pid of the child ``tag`` of the ProcessMonitor that logged ``event``."""
    protocols = getattr(event.get("log_source"), "protocols", None) or {}
    pid = getattr(getattr(protocols.get(tag), "transport", None), "pid", None)
    return pid if isinstance(pid, int) else None


def twisted_record(event: Mapping[str, Any], process: str) -> dict[str, Any]:
    """The flat record of a ``twisted.logger`` event (empty: nothing worth a line)."""
    child = _child_record(event)
    if child is not None:
        return child
    failure = event.get("log_failure")
    message = formatEvent(dict(event))
    if not message and failure is not None:
        message = failure.getErrorMessage()
    level = event.get("log_level")
    record: dict[str, Any] = {
        "time": iso_time(event.get("log_time") or time.time()),
        "level": _TWISTED_LEVELS.get(level, "info"),
        "logger": str(event.get("log_namespace") or "-"),
        "message": message,
    }
    legacy = "isError" in event
    record.update(_fields((k, v) for k, v in event.items()
                          if not k.startswith("log_") and not (legacy and k in _LEGACY_KEYS)))
    if failure is not None:
        try:
            record["traceback"] = failure.getTraceback()
        except Exception:  # a failure that cannot print itself still leaves its message
            record["traceback"] = repr(failure)
    record["pid"] = os.getpid()
    record.setdefault("process", process)
    return record


# -- logging records -> records -------------------------------------------------------------

_STDLIB_ATTRS = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime",
                                                                  "taskName"}


def stdlib_record(record: logging.LogRecord, process: str) -> dict[str, Any]:
    """The flat record of a ``logging`` record (its ``extra=`` fields beside the keys)."""
    level = record.levelname.lower()
    out: dict[str, Any] = {
        "time": iso_time(record.created),
        "level": level if level in LEVELS else ("debug" if record.levelno < 20 else "info"),
        "logger": record.name,
        "message": record.getMessage(),
    }
    out.update(_fields((k, v) for k, v in record.__dict__.items() if k not in _STDLIB_ATTRS))
    if record.exc_info:
        out["traceback"] = logging.Formatter().formatException(record.exc_info)
    elif record.exc_text:
        out["traceback"] = record.exc_text
    if record.stack_info:
        out["stack"] = record.stack_info
    out["pid"] = record.process or os.getpid()
    out["process"] = process
    return out


# -- records -> lines -----------------------------------------------------------------------


def as_text(record: Mapping[str, Any], own_process: str = "") -> str:
    """``time level logger: message`` (and the traceback's lines), no trailing newline.

    A record from another process than ``own_process`` (a child's line the daemon
    passes on) names it before its logger.
    """
    logger = str(record.get("logger", "-"))
    process = record.get("process")
    if own_process and process and process != own_process and \
            not logger.endswith(f".{process}"):
        logger = f"{process} {logger}"
    text = f"{record.get('time', '')} {record.get('level', 'info')} {logger}: " \
           f"{record.get('message', '')}"
    if record.get("traceback"):
        text += "\n" + str(record["traceback"]).rstrip("\n")
    return text


def render(record: Mapping[str, Any], fmt: str, journal: bool, own_process: str = "") -> str:
    """The line(s) of ``record`` in ``fmt`` (json|text), each ending with a newline.

    For the journal each line starts with ``<priority>``.
    """
    if fmt == "json":
        lines = [json.dumps(record, ensure_ascii=False, default=repr)]
    else:
        lines = as_text(record, own_process).split("\n")
    if journal:
        prefix = f"<{PRIORITY.get(str(record.get('level')), 6)}>"
        lines = [prefix + line for line in lines]
    return "".join(line + "\n" for line in lines)


# -- where the lines go ---------------------------------------------------------------------


class LogSink:
    """Writes whole lines to a binary stream, one writer at a time (threads log too)."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream
        self._lock = threading.RLock()  # a gc callback may log while a line is written

    def write(self, text: str) -> None:
        data = text.encode("utf-8", "backslashreplace")
        with self._lock:
            try:
                self._write(data)
            except (OSError, ValueError):
                pass  # nowhere left to say it: a full disk or a closed pipe loses the line

    def _write(self, data: bytes) -> None:
        self._stream.write(data)
        self._stream.flush()

    def close(self) -> None:
        with self._lock:
            self._stream.flush()


class RotatingFile(LogSink):
    """A log file rotated by size: past ``max_bytes`` it becomes ``PATH.1`` (``PATH.1``
    becomes ``PATH.2``, ...) and a new ``PATH`` starts; ``keep`` old files stay."""

    def __init__(self, path: str | os.PathLike[str], max_bytes: int = DEFAULT_MAX_BYTES,
                 keep: int = DEFAULT_KEEP) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.keep = keep
        self.path.parent.mkdir(parents=True, exist_ok=True)
        super().__init__(self._open())

    def _open(self) -> IO[bytes]:
        # append mode: a line another writer adds (a shell's >>) is never overwritten;
        # 0640: logs name users and addresses
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        f = os.fdopen(fd, "ab")
        self._size = f.tell()
        return f

    def _write(self, data: bytes) -> None:
        if self.max_bytes > 0 and self._size > 0 and self._size + len(data) > self.max_bytes:
            self._rotate()
        self._stream.write(data)
        self._stream.flush()
        self._size += len(data)

    def _rotate(self) -> None:
        self._stream.close()
        try:
            if self.keep > 0:
                for i in range(self.keep - 1, 0, -1):
                    older = self.path.with_name(f"{self.path.name}.{i}")
                    if older.exists():
                        older.replace(self.path.with_name(f"{self.path.name}.{i + 1}"))
                self.path.replace(self.path.with_name(f"{self.path.name}.1"))
            else:
                self.path.unlink(missing_ok=True)
        finally:
            self._stream = self._open()

    def close(self) -> None:
        with self._lock:
            self._stream.close()


def _binary(stream: IO[Any]) -> IO[bytes]:
    return getattr(stream, "buffer", stream)


# -- the daemon: twisted.logger -------------------------------------------------------------


@implementer(ILogObserver)
class RecordObserver:
    """A ``twisted.logger`` observer writing each event at or above ``level`` as a record."""

    def __init__(self, sink: LogSink, fmt: str, level: str, journal: bool = False,
                 process: str = "kimchid") -> None:
        self.sink = sink
        self.fmt = fmt
        self.min_level = LEVELS.index(level)
        self.journal = journal
        self.process = process

    def __call__(self, event: Mapping[str, Any]) -> None:
        record = twisted_record(event, self.process)
        if not record or LEVELS.index(record["level"]) < self.min_level:
            return
        self.sink.write(render(record, self.fmt, self.journal, self.process))


def make_sink(stream: IO[Any], log_file: str | None, max_bytes: int,
              keep: int) -> tuple[LogSink, IO[Any] | None, bool]:
    """The sink for ``log_file`` (rotated) or ``stream``; the stream whose nature decides
    the format (None for a file) and whether it is the journal."""
    if log_file:
        return RotatingFile(log_file, max_bytes, keep), None, False
    return LogSink(_binary(stream)), stream, is_journal(stream)


def setup_twisted_logging(fmt: str, level: str, stream: IO[str] | None = None, *,
                          log_file: str | None = None, max_bytes: int = DEFAULT_MAX_BYTES,
                          keep: int = DEFAULT_KEEP, process: str = "kimchid") -> RecordObserver:
    """Send the daemon's log events to ``stream`` (stdout) or ``log_file``.

    ``fmt`` auto|json|text, ``level`` a ``[server] log_level``.  The shared code's
    ``logging`` records go the same way, and what the process writes to
    ``sys.stdout``/``sys.stderr`` afterwards becomes log events too.
    """
    sink, tty, journal = make_sink(stream or sys.stdout, log_file, max_bytes, keep)
    fmt = choose_format(fmt, tty, journal)
    observer = RecordObserver(sink, fmt, config_level(level), journal, process)
    _route_stdlib(sink, fmt, level, journal, process)
    globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=True)
    log = Logger(namespace=process)

    def uncaught(kind: type[BaseException], exc: BaseException, tb: TracebackType | None,
                 thread: str = "") -> None:
        # one record with the traceback, not a line per line of it through stderr
        if thread:
            log.failure("uncaught exception in thread {thread}", Failure(exc, kind, tb),
                        thread=thread)
        else:
            log.failure("uncaught exception", Failure(exc, kind, tb))

    _hook_uncaught(uncaught)
    return observer


def _hook_uncaught(report: Any) -> None:
    """Send exceptions nothing caught (the main thread's, other threads') to ``report``."""
    sys.excepthook = report

    def in_thread(args: threading.ExceptHookArgs) -> None:
        if args.exc_value is not None:
            report(args.exc_type, args.exc_value, args.exc_traceback,
                   thread=args.thread.name if args.thread else "?")

    threading.excepthook = in_thread


# -- the workers: logging -------------------------------------------------------------------


class RecordFormatter(logging.Formatter):
    """A ``logging`` formatter giving the records' lines (newline-terminated)."""

    def __init__(self, fmt: str, journal: bool, process: str) -> None:
        super().__init__()
        self.fmt = fmt
        self.journal = journal
        self.process = process

    def format(self, record: logging.LogRecord) -> str:
        return render(stdlib_record(record, self.process), self.fmt, self.journal)


class SinkHandler(logging.Handler):
    """A ``logging`` handler writing to a :class:`LogSink`."""

    def __init__(self, sink: LogSink) -> None:
        super().__init__()
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.sink.write(self.format(record))
        except Exception:
            self.handleError(record)

    def close(self) -> None:
        self.sink.close()
        super().close()


def _route_stdlib(sink: LogSink, fmt: str, level: str, journal: bool,
                  process: str) -> SinkHandler:
    handler = SinkHandler(sink)
    handler.setFormatter(RecordFormatter(fmt, journal, process))
    logging.basicConfig(level=config_level(level).upper(), handlers=[handler], force=True)
    logging.captureWarnings(True)
    return handler


def setup_stdlib_logging(fmt: str, level: str, stream: IO[str] | None = None, *,
                         log_file: str | None = None, max_bytes: int = DEFAULT_MAX_BYTES,
                         keep: int = DEFAULT_KEEP, process: str = "") -> SinkHandler:
    """Send ``logging``'s records to ``stream`` (stderr) or ``log_file`` as records."""
    sink, tty, journal = make_sink(stream or sys.stderr, log_file, max_bytes, keep)
    handler = _route_stdlib(sink, choose_format(fmt, tty, journal), level, journal,
                            process or f"worker-{os.getpid()}")
    log = logging.getLogger("kimchi.worker")

    def uncaught(kind: type[BaseException], exc: BaseException, tb: TracebackType | None,
                 thread: str = "") -> None:
        log.critical("uncaught exception%s", f" in thread {thread}" if thread else "",
                     exc_info=(kind, exc, tb))

    _hook_uncaught(uncaught)
    return handler


# -- the command lines' flags ---------------------------------------------------------------


def add_log_arguments(parser: argparse.ArgumentParser) -> None:
    """The log flags kimchid and kimchi-worker share (see docs/logs.md)."""
    parser.add_argument("--log-format", choices=FORMATS,
                        help="auto (text on a terminal, JSON elsewhere), json or text; "
                        "default: [server] log_format")
    parser.add_argument("--log-file", metavar="PATH",
                        help="write the log to PATH, rotated by size, instead of the output")
    parser.add_argument("--log-max-mb", type=float, default=DEFAULT_MAX_BYTES / 2**20,
                        metavar="MB", help="rotate the --log-file past this size "
                        "(default %(default)g)")
    parser.add_argument("--log-keep", type=int, default=DEFAULT_KEEP, metavar="N",
                        help="rotated files kept: PATH.1 ... PATH.N (default %(default)s)")


# -- python -m kimchi.logs: JSON lines to text ----------------------------------------------


def to_text(lines: Iterable[str], out: IO[str]) -> None:
    """Write each record of ``lines`` as text; other lines as they are."""
    for line in lines:
        body = line.rstrip("\n")
        prefix = re.match(r"<[0-7]>", body)
        if prefix:
            body = body[prefix.end():]
        try:
            record = json.loads(body) if body.startswith("{") else None
        except ValueError:
            record = None
        out.write((as_text(record) if _is_record(record) else body) + "\n")
        out.flush()


def main(argv: list[str] | None = None) -> int:
    """``python -m kimchi.logs [FILE]``: FILE (or stdin) as readable text."""
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("-h", "--help"):
        print("usage: python -m kimchi.logs [FILE]  (kimchi's JSON log lines as text)")
        return 0
    try:
        if argv:
            with open(argv[0], encoding="utf-8", errors="replace") as f:
                to_text(f, sys.stdout)
        else:
            to_text(sys.stdin, sys.stdout)
    except (BrokenPipeError, KeyboardInterrupt):
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
