"""What kimchid and its workers write is one JSON object a line, in one shape, with the
journal's priority in front when systemd's journal is the output; readable text on a
terminal; and a log file of its own rotated past its size.

The journal is the real check systemd documents: ``JOURNAL_STREAM`` names the device
and inode of the process's output.  Here that output is a file whose device and inode
the test puts in ``JOURNAL_STREAM``, as systemd does for its socket; the processes
cannot tell the difference (journald itself needs systemd, which this machine lacks).
"""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import ROOT, Kimchi, RedisServer, wait_for

LEVELS = ("debug", "info", "warning", "error", "critical")
PRIORITY = {"debug": 7, "info": 6, "warning": 4, "error": 3, "critical": 2}
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
JOURNAL_LINE = re.compile(r"^<([0-7])>(\{.*\})$")
TEXT_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z "
                       r"(debug|info|warning|error|critical) \S+( \S+)?: ")


def journal_env(output: Path) -> dict[str, str]:
    """The environment systemd gives a unit whose output is ``output``."""
    output.touch()
    st = output.stat()
    return {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}


def records_of(text: str) -> list[tuple[int, dict[str, Any]]]:
    """Every line as (its priority, its record); fails on any line of another shape."""
    out = []
    for line in text.splitlines():
        m = JOURNAL_LINE.match(line)
        assert m, f"not a <priority>JSON line: {line!r}"
        out.append((int(m.group(1)), json.loads(m.group(2))))
    return out


def check_shape(priority: int, rec: dict[str, Any]) -> None:
    assert ISO.match(rec["time"]), rec
    assert rec["level"] in LEVELS and priority == PRIORITY[rec["level"]], rec
    assert isinstance(rec["logger"], str) and rec["logger"], rec
    assert isinstance(rec["message"], str), rec
    assert isinstance(rec["pid"], int) and rec["pid"] > 0, rec
    assert not [k for k in rec if k.startswith("log_")], rec


@pytest.fixture(scope="module")
def journal_daemon(tmp_path_factory: pytest.TempPathFactory, pam_users: Any) -> Iterator[Kimchi]:
    """kimchid with its embedded Redis and one worker, its output "the journal"."""
    k = Kimchi(tmp_path_factory.mktemp("journal"), redis_url="", workers=1,
               auth=(pam_users.admin.name, pam_users.admin.password))
    k.env.update(journal_env(k.log))
    k.start()
    yield k
    k.stop()


def test_daemon_and_worker_lines_share_one_shape_with_the_journal_priority_in_front(
        journal_daemon: Kimchi, pam_users: Any) -> None:
    k = journal_daemon
    admin = pam_users.admin
    wait_for(lambda: k.get("/health").json()["workers"] == 1, what="the embedded worker")
    r = requests.post(k.url + "/login", json={"username": admin.name,
                                              "password": admin.password}, timeout=20)
    assert r.status_code == 200, r.text
    r = requests.post(k.url + "/login", json={"username": admin.name, "password": "wrong"},
                      timeout=20)
    assert r.status_code == 401, r.text
    # Redis goes away under the worker: it says so, as a warning, through the daemon
    (redis,) = k.children("redis-server")
    redis.kill()
    wait_for(lambda: k.get("/health").status_code == 200 and len(k.children("redis-server")),
             timeout=20, what="the embedded Redis restarted")

    def worker_warned() -> list[dict[str, Any]]:
        return [rec for p, rec in records_of(k.log_text())
                if rec["process"] == "worker-0" and rec["level"] == "warning" and p == 4]

    warned = wait_for(worker_warned, timeout=15, what="the worker's warning about Redis")
    assert any("redis unreachable" in rec["message"] for rec in warned), warned

    recs = records_of(k.log_text())
    for priority, rec in recs:
        check_shape(priority, rec)
    daemon_pid = k.proc.pid if k.proc else 0
    assert {rec["process"] for _p, rec in recs} >= {"kimchid", "worker-0"}
    assert all(rec["pid"] == daemon_pid for _p, rec in recs if rec["process"] == "kimchid")
    # a message made of a format and fields: rendered, and the fields beside it
    accepted = [(p, rec) for p, rec in recs if rec["message"].startswith("login accepted")]
    assert accepted and accepted[0][0] == 6
    assert accepted[0][1]["message"] == f"login accepted for {admin.name} (admin) from 127.0.0.1"
    assert accepted[0][1]["username"] == admin.name
    assert accepted[0][1]["logger"] == "kimchid.auth.pam"
    refused = [(p, rec) for p, rec in recs if rec["message"].startswith("login refused")]
    assert refused and refused[0][0] == 4 and refused[0][1]["level"] == "warning"
    assert refused[0][1]["message"].startswith(f"login refused for {admin.name!r} from ")
    # the worker's own lines (logging, %-formats) arrive as the worker wrote them
    started = [rec for _p, rec in recs if rec["process"] == "worker-0"
               and "starting (concurrency" in rec["message"]]
    assert started and started[0]["logger"] == "kimchi.worker"
    assert started[0]["pid"] != daemon_pid


def start_worker(tmp_path: Path, config: str, output: Path,
                 env: dict[str, str]) -> subprocess.CompletedProcess[bytes]:
    cfg = tmp_path / "worker.toml"
    cfg.write_text(config)
    base = {k: v for k, v in os.environ.items() if not k.startswith("KIMCHI_")}
    with open(output, "ab") as out:
        return subprocess.run([sys.executable, "-m", "workers.main", "--config", str(cfg)],
                              stdout=subprocess.DEVNULL, stderr=out, env=dict(base, **env),
                              cwd=ROOT, timeout=60)


def test_a_worker_on_its_own_writes_its_error_with_priority_3_for_the_journal(
        tmp_path: Path) -> None:
    journal = tmp_path / "journal"
    done = start_worker(tmp_path, '[redis]\nurl = ""\n', journal, journal_env(journal))
    assert done.returncode == 2
    ((priority, rec),) = records_of(journal.read_text())
    check_shape(priority, rec)
    assert priority == 3 and rec["level"] == "error" and rec["logger"] == "kimchi.worker"
    assert rec["message"].startswith("redis.url is empty")
    assert re.fullmatch(r"worker-\d+", rec["process"]) and rec["pid"] > 0
    # the variable inherited by a process whose output is not the journal: no prefix
    elsewhere = tmp_path / "file.log"
    done = start_worker(tmp_path, '[redis]\nurl = ""\n', elsewhere, journal_env(journal))
    assert done.returncode == 2
    (line,) = elsewhere.read_text().splitlines()
    assert json.loads(line)["level"] == "error"


class PtyReader(threading.Thread):
    """Everything a process writes to its terminal (read as it comes: a full pty blocks)."""

    def __init__(self, master: int) -> None:
        super().__init__(daemon=True)
        self.master = master
        self.data = b""
        self.done = False

    def run(self) -> None:
        while not self.done:
            ready, _, _ = select.select([self.master], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(self.master, 65536)
                except OSError:  # the other side closed
                    return
                if not chunk:
                    return
                self.data += chunk

    def text(self) -> str:
        return self.data.decode(errors="replace").replace("\r\n", "\n")


def test_on_a_terminal_the_daemon_and_its_worker_read_as_text(
        tmp_path: Path, redis_db: RedisServer, pam_users: Any) -> None:
    k = Kimchi(tmp_path / "tty", redis_url=redis_db.url, workers=1,
               auth=(pam_users.admin.name, pam_users.admin.password))
    master, slave = pty.openpty()
    reader = PtyReader(master)
    reader.start()
    try:
        k.proc = subprocess.Popen([sys.executable, "-m", "kimchid.main", "--config",
                                   str(k.config)], stdin=subprocess.DEVNULL, stdout=slave,
                                  stderr=slave, env=k.env, cwd=k.dir)
        os.close(slave)
        slave = -1
        wait_for(lambda: "worker-0 kimchi.worker: worker" in reader.text(), timeout=30,
                 what="the worker's first line on the terminal")
        text = reader.text()
        lines = [ln for ln in text.splitlines() if ln.strip()]
        assert lines and all(TEXT_LINE.match(ln) for ln in lines), text[-3000:]
        assert f"info kimchid: kimchid ready: open http://127.0.0.1:{k.port}/" in text
        assert re.search(r" info worker-0 kimchi\.worker: worker \S+ starting \(concurrency",
                         text), text[-3000:]
        assert "{" not in "".join(ln.split(": ", 1)[0] for ln in lines)  # no JSON heads
    finally:
        k.stop()
        reader.done = True
        reader.join(5)
        if slave >= 0:
            os.close(slave)
        os.close(master)


def test_the_log_file_is_rotated_past_its_size_keeping_n_files(
        tmp_path: Path, redis_db: RedisServer, pam_users: Any) -> None:
    k = Kimchi(tmp_path / "rot", redis_url=redis_db.url, workers=1,
               auth=(pam_users.admin.name, pam_users.admin.password))
    log = k.dir / "state" / "kimchid.log"
    out = k.dir / "kimchid.out"
    with open(out, "wb") as f:  # as kimchi.sh up starts it
        k.proc = subprocess.Popen(
            [sys.executable, "-m", "kimchid.main", "--config", str(k.config), "--log-file",
             str(log), "--log-max-mb", str(2000 / 2**20), "--log-keep", "2"],
            stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT, env=k.env, cwd=k.dir)
    try:
        wait_for(lambda: k.get("/health").json()["workers"] == 1, timeout=30,
                 what="kimchid and its worker")
        for _ in range(5):  # log lines of their own, enough to fill a few files
            assert requests.post(k.url + "/login", json={"username": pam_users.admin.name,
                                                         "password": pam_users.admin.password},
                                 timeout=20).status_code == 200
        wait_for(lambda: (log.parent / "kimchid.log.2").exists(), timeout=10,
                 what="two rotations")
    finally:
        k.stop()
    files = sorted(p.name for p in log.parent.glob("kimchid.log*"))
    assert files == ["kimchid.log", "kimchid.log.1", "kimchid.log.2"]
    everything = []
    for name in reversed(files):  # the oldest first
        data = (log.parent / name).read_text()
        assert 0 < len(data.encode()) <= 2000, name
        everything += [json.loads(line) for line in data.splitlines()]
    assert all(r["level"] in LEVELS and ISO.match(r["time"]) for r in everything)
    # the newest file ends with the daemon's last words, the worker's lines are among them
    assert everything[-1]["message"] == "Main loop terminated."
    assert {r["process"] for r in everything} >= {"kimchid", "worker-0"}
    assert out.read_text() == ""  # nothing went around the logger


def test_the_daemon_names_a_bad_log_flag(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "kimchid.main", "--log-format", "xml"],
                          capture_output=True, text=True, timeout=30, cwd=ROOT)
    assert done.returncode == 2 and "--log-format" in done.stderr
