"""kimchi.logs: the one record shape, its lines (JSON, text, journal priorities), the
rotated log file and the JSON-to-text reader."""

from __future__ import annotations

import io
import json
import logging
import os
import pty
import re
import sys
from pathlib import Path
from typing import Any

import pytest
from twisted.logger import Logger, LogPublisher

from kimchi import logs

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def events(level: str = "debug", fmt: str = "json",
           journal: bool = False) -> tuple[Logger, io.BytesIO]:
    out = io.BytesIO()
    publisher = LogPublisher()
    publisher.addObserver(logs.RecordObserver(logs.LogSink(out), fmt, level, journal))
    return Logger(namespace="kimchid.model.vms", observer=publisher), out


def records(out: io.BytesIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.getvalue().decode().splitlines()]


def test_a_twisted_event_becomes_one_flat_record_with_its_message_rendered() -> None:
    log, out = events()
    log.warn("VM {vm} did not stop within {secs:.1f} s", vm="alpine", secs=3.25)
    (rec,) = records(out)
    assert ISO.match(rec.pop("time"))
    assert rec == {"level": "warning", "logger": "kimchid.model.vms",
                   "message": "VM alpine did not stop within 3.2 s", "vm": "alpine",
                   "secs": 3.25, "pid": os.getpid(), "process": "kimchid"}


def test_fields_json_cannot_hold_are_written_as_their_repr_and_fixed_keys_kept() -> None:
    log, out = events()
    log.info("x", path=Path("/a"), nan=float("nan"), many=[1, "b"], odd={1: object()},
             time="mine", message="also mine")
    (rec,) = records(out)
    assert rec["path"] == "PosixPath('/a')" and rec["nan"] == "nan" and rec["many"] == [1, "b"]
    assert rec["odd"].startswith("{1: <object object")
    assert rec["message"] == "x" and rec["field_time"] == "mine"
    assert rec["field_message"] == "also mine"
    assert not [k for k in rec if k.startswith("log_")]


@pytest.mark.parametrize(("method", "level", "priority"), [
    ("debug", "debug", 7), ("info", "info", 6), ("warn", "warning", 4), ("error", "error", 3),
    ("critical", "critical", 2)])
def test_each_level_gets_its_syslog_priority_for_the_journal(method: str, level: str,
                                                             priority: int) -> None:
    log, out = events(journal=True)
    getattr(log, method)("something {what}", what="happened")
    line = out.getvalue().decode()
    assert line.startswith(f"<{priority}>{{") and line.endswith("}\n") and line.count("\n") == 1
    assert json.loads(line[3:])["level"] == level


def test_events_below_the_configured_level_are_left_out() -> None:
    log, out = events(level="warning")
    log.debug("d")
    log.info("i")
    log.warn("w")
    log.error("e")
    assert [r["level"] for r in records(out)] == ["warning", "error"]
    assert logs.config_level("warn") == "warning"


def test_a_failure_carries_its_traceback_and_stays_on_one_line() -> None:
    log, out = events(journal=True)
    missing: dict[str, str] = {}
    try:
        missing["key"]
    except KeyError:
        log.failure("cannot read {what}", what="the VM")
    line = out.getvalue().decode()
    assert line.startswith("<2>") and line.count("\n") == 1
    rec = json.loads(line[3:])
    assert rec["message"] == "cannot read the VM" and rec["level"] == "critical"
    assert "Traceback" in rec["traceback"] and "KeyError" in rec["traceback"]


def test_text_reads_time_level_logger_message_with_the_traceback_below() -> None:
    log, out = events(fmt="text")
    log.info("VM {vm} started", vm="alpine")
    try:
        raise ValueError("bad disk")
    except ValueError:
        log.failure("start failed")
    lines = out.getvalue().decode().splitlines()
    assert re.match(r"^\S+Z info kimchid\.model\.vms: VM alpine started$", lines[0])
    assert re.match(r"^\S+Z critical kimchid\.model\.vms: start failed$", lines[1])
    assert "ValueError: bad disk" in lines[-1]


def test_text_for_the_journal_prefixes_every_line() -> None:
    line = logs.render({"time": "t", "level": "error", "logger": "l", "message": "a\nb"},
                       "text", journal=True)
    assert line == "<3>t error l: a\n<3>b\n"


def child_line(tag: str, line: str, stream: str = "stdout") -> dict[str, Any]:
    return {"log_format": "[{tag}] {line}", "tag": tag, "line": line, "stream": stream,
            "log_namespace": "kimchid.adapters.processes.Children", "log_time": 1.0,
            "log_level": None}


def test_a_workers_json_line_passes_through_the_daemon_with_its_own_level() -> None:
    worker = {"time": "2024-01-01T00:00:00.000Z", "level": "error", "logger": "kimchi.worker",
              "message": "task t1 failed", "task": "t1", "pid": 99}
    rec = logs.twisted_record(child_line("worker-0", json.dumps(worker), "stderr"), "kimchid")
    assert rec == dict(worker, process="worker-0")
    assert logs.render(rec, "json", True).startswith("<3>{")
    assert logs.as_text(rec, "kimchid").endswith("error worker-0 kimchi.worker: task t1 failed")


def test_other_child_lines_are_records_of_their_own() -> None:
    crash = logs.twisted_record(child_line("worker-1", "Traceback (most recent call last):",
                                           "stderr"), "kimchid")
    assert crash["level"] == "warning" and crash["process"] == "worker-1"
    assert crash["logger"] == "kimchid.children.worker-1"
    banner = logs.twisted_record(child_line("redis", "7:M 01 Jan 2024 00:00:00.000 # Server "
                                                     "initialized"), "kimchid")
    warning = logs.twisted_record(child_line("redis", "7:M 01 Jan 2024 00:00:00.000 # WARNING "
                                                      "Memory overcommit must be enabled!"),
                                  "kimchid")
    assert (banner["level"], warning["level"]) == ("info", "warning")
    assert logs.twisted_record(child_line("redis", ""), "kimchid") == {}


def test_a_logging_record_has_the_same_shape_with_its_extra_fields() -> None:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logs.RecordFormatter("json", journal=True, process="worker-3"))
    handler.terminator = ""
    log = logging.getLogger("kimchi.test.worker")
    log.propagate = False
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    try:
        log.warning("task %s: %d attempts", "t9", 3, extra={"task": "t9", "obj": object()})
        try:
            raise ZeroDivisionError("division by zero")
        except ZeroDivisionError:
            log.exception("task %s crashed", "t9")
    finally:
        log.removeHandler(handler)
    first, second = out.getvalue().splitlines()
    assert first.startswith("<4>") and second.startswith("<3>")
    rec = json.loads(first[3:])
    assert ISO.match(rec.pop("time"))
    assert rec.pop("obj").startswith("<object object")
    assert rec == {"level": "warning", "logger": "kimchi.test.worker",
                   "message": "task t9: 3 attempts", "task": "t9", "pid": os.getpid(),
                   "process": "worker-3"}
    assert "ZeroDivisionError" in json.loads(second[3:])["traceback"]


def test_the_journal_is_recognised_by_the_device_and_inode_systemd_names(
        tmp_path: Path) -> None:
    with open(tmp_path / "a", "w") as a, open(tmp_path / "b", "w") as b:
        st = os.fstat(a.fileno())
        env = {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}
        assert logs.is_journal(a, env)
        assert not logs.is_journal(b, env)  # inherited by a child writing elsewhere
        assert not logs.is_journal(a, {})
        assert not logs.is_journal(a, {"JOURNAL_STREAM": "garbage"})
        assert not logs.is_journal(io.StringIO(), env)


def test_auto_is_text_on_a_terminal_and_json_elsewhere(tmp_path: Path) -> None:
    master, slave = pty.openpty()
    try:
        with open(slave, "w", closefd=False) as tty, open(tmp_path / "f", "w") as f:
            assert logs.choose_format("auto", tty, journal=False) == "text"
            assert logs.choose_format("auto", f, journal=False) == "json"
            assert logs.choose_format("auto", None, journal=False) == "json"  # a log file
            assert logs.choose_format("json", tty, journal=False) == "json"
            assert logs.choose_format("text", f, journal=True) == "text"
    finally:
        os.close(master)
        os.close(slave)


def test_the_log_file_rotates_past_its_size_and_keeps_n_old_files(tmp_path: Path) -> None:
    path = tmp_path / "kimchid.log"
    path.write_bytes(b"from before\n")  # appended to, as kimchi.sh restarts
    sink = logs.RotatingFile(path, max_bytes=1000, keep=2)
    line = "x" * 99 + "\n"
    for _ in range(45):
        sink.write(line)
    sink.close()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["kimchid.log", "kimchid.log.1", "kimchid.log.2"]
    assert all(p.stat().st_size <= 1000 for p in tmp_path.iterdir())
    # 9 lines joined the old file's 12 bytes, then 10 a file: the oldest two are gone
    assert (tmp_path / "kimchid.log.2").read_text() == line * 10
    assert (tmp_path / "kimchid.log.1").read_text() == line * 10
    assert path.read_text() == line * 6


def test_a_log_file_kept_zero_times_starts_again_empty(tmp_path: Path) -> None:
    sink = logs.RotatingFile(tmp_path / "w.log", max_bytes=100, keep=0)
    for i in range(5):
        sink.write(f"{i}" * 59 + "\n")
    sink.close()
    assert [p.name for p in tmp_path.iterdir()] == ["w.log"]
    assert (tmp_path / "w.log").read_text() == "4" * 59 + "\n"


def test_the_reader_turns_json_lines_into_text_and_leaves_others_alone() -> None:
    rec = {"time": "2024-01-01T00:00:00.000Z", "level": "warning", "logger": "kimchid.x",
           "message": "hello", "pid": 1, "process": "kimchid"}
    out = io.StringIO()
    logs.to_text([json.dumps(rec) + "\n", "<4>" + json.dumps(rec) + "\n", "plain words\n",
                  "{not json\n"], out)
    assert out.getvalue().splitlines() == [
        "2024-01-01T00:00:00.000Z warning kimchid.x: hello"] * 2 + ["plain words", "{not json"]


def test_the_reader_runs_as_a_program(tmp_path: Path) -> None:
    import subprocess

    f = tmp_path / "l.log"
    f.write_text(json.dumps({"time": "T", "level": "info", "logger": "a", "message": "m"}) + "\n")
    done = subprocess.run([sys.executable, "-m", "kimchi.logs", str(f)], capture_output=True,
                          text=True, timeout=30, cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0 and done.stdout == "T info a: m\n"


def test_an_uncaught_exception_is_one_critical_record_with_its_traceback(
        tmp_path: Path) -> None:
    import subprocess

    code = ("import threading; from kimchi import logs\n"
            "logs.setup_stdlib_logging('json', 'info', process='worker-7')\n"
            "t = threading.Thread(target=lambda: {}['in a thread'], name='t1'); t.start(); t.join()\n"
            "raise RuntimeError('at the top')\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=30, cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 1
    first, second = (json.loads(line) for line in done.stderr.splitlines())
    assert first["message"] == "uncaught exception in thread t1"
    assert "KeyError: 'in a thread'" in first["traceback"]
    assert second["level"] == "critical" and second["message"] == "uncaught exception"
    assert "RuntimeError: at the top" in second["traceback"]
    assert second["process"] == "worker-7" and second["logger"] == "kimchi.worker"


def test_the_daemon_gathers_prints_logging_and_crashes_into_its_records() -> None:
    import subprocess

    code = ("import logging, sys; from kimchi import logs\n"
            "logs.setup_twisted_logging('json', 'info')\n"
            "print('hello from print')\n"
            "logging.getLogger('kimchi.bus.follow').warning('stdlib %s', 'too')\n"
            "logging.getLogger('kimchi.bus.follow').debug('below the level')\n"
            "raise RuntimeError('boom')\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=30, cwd=Path(__file__).resolve().parents[2])
    assert done.stderr == ""
    printed, warned, crashed = (json.loads(line) for line in done.stdout.splitlines())
    assert (printed["logger"], printed["message"]) == ("stdout", "hello from print")
    assert (warned["level"], warned["logger"], warned["message"]) == (
        "warning", "kimchi.bus.follow", "stdlib too")
    assert crashed["level"] == "critical" and "RuntimeError: boom" in crashed["traceback"]
    assert {r["process"] for r in (printed, warned, crashed)} == {"kimchid"}
