"""Shared helpers of the benchmarks: processes (redis-server, kimchid, workers), statistics,
CPU sampling and the result table.

Every benchmark starts its own redis-server (unix socket, AOF everysec like the embedded
one) and its own kimchid, in a fresh temporary folder, and stops them at the end.  kimchid
wants a login: each bench process makes one admin account of its own (a real Linux
account that PAM checks, ``kcbench<pid>``) and removes it at the end.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import functools
import grp
import json
import os
import platform
import pwd
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil
import redis

if TYPE_CHECKING:
    import requests

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"


def base_env(tree: Path = ROOT, **extra: str) -> dict[str, str]:
    """The environment for child processes: the repo importable, no stray KIMCHI_ settings.

    ``tree``: the source tree whose ``kimchid``/``workers`` the child imports (another
    commit's, extracted elsewhere, for a reference run); bench/ stays this one's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KIMCHI_")}
    env["PYTHONPATH"] = os.pathsep.join(
        [str(tree), str(BENCH)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate: Callable[[], Any], timeout: float = 20.0, interval: float = 0.05,
             what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
        except Exception as e:  # not ready yet
            last = e
        if last and not isinstance(last, Exception):
            return last
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what or predicate}: {last!r}")


_WORKDIRS: list[Path] = []


def workdir(name: str) -> Path:
    """A fresh folder for one run's processes; removed at exit unless BENCH_KEEP=1."""
    d = Path(tempfile.mkdtemp(prefix=f"kimchi-bench-{name}-"))
    _WORKDIRS.append(d)
    return d


_STARTED: list[subprocess.Popen[Any]] = []


def track(proc: subprocess.Popen[Any]) -> subprocess.Popen[Any]:
    """Remember a child we started, so it is stopped (by pid) however the benchmark ends."""
    _STARTED.append(proc)
    return proc


def _cleanup() -> None:
    try:
        _stop_started()
    finally:
        remove_bench_account()


def _stop_started() -> None:
    for proc in reversed(_STARTED):
        if proc.poll() is None:
            try:
                proc.terminate()
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + 10
    for proc in reversed(_STARTED):
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
    if os.environ.get("BENCH_KEEP") != "1":
        for d in _WORKDIRS:
            shutil.rmtree(d, ignore_errors=True)


def _on_signal(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)


atexit.register(_cleanup)
signal.signal(signal.SIGTERM, _on_signal)
signal.signal(signal.SIGHUP, _on_signal)


def stop_proc(proc: subprocess.Popen[Any] | None, sig: int = signal.SIGTERM,
              timeout: float = 15.0) -> None:
    """Stop one process we started (by its pid), killing it if it does not go."""
    if proc is None or proc.poll() is not None:
        return
    try:
        proc.send_signal(sig)
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
    except ProcessLookupError:
        pass


# -- the benchmark's login --------------------------------------------------------------

PAM_SOURCE = ROOT / "etc" / "pam.d" / "kimchi"
PAM_TARGET = Path("/etc/pam.d/kimchi")
ADMIN_GROUP = "kimchi-admin"  # kimchid's default [auth] admin_groups

_ACCOUNT: tuple[str, str] | None = None
_ACCOUNT_PID = 0  # the process that made it: a forked child must not remove it


def _admin_tool(*cmd: str, stdin: str | None = None, ok: tuple[int, ...] = (0,)) -> int:
    """Run useradd & co.; retried while another process (the tests) holds /etc/passwd."""
    binary = shutil.which(cmd[0]) or f"/usr/sbin/{cmd[0]}"
    for attempt in range(20):
        r = subprocess.run([binary, *cmd[1:]], input=stdin, text=True, capture_output=True,
                           timeout=30)
        if r.returncode in ok:
            return r.returncode
        if "lock" not in r.stderr.lower() or attempt == 19:
            raise RuntimeError(f"{' '.join(cmd)}: {r.stderr.strip()} (exit {r.returncode})")
        time.sleep(0.25)
    raise AssertionError("unreachable")


def _known(lookup: Callable[[str], Any], name: str) -> bool:
    """Whether ``lookup`` (``grp.getgrnam``, ``pwd.getpwnam``) finds ``name``."""
    try:
        lookup(name)
        return True
    except KeyError:
        return False


def bench_account() -> tuple[str, str]:
    """This process's benchmark admin ``(name, password)``, made on first use.

    ``kcbench<pid>`` in ``kimchi-admin``, a random password, no home, no shell; the group
    and ``/etc/pam.d/kimchi`` are made when missing and never removed (the package
    installs both, and the tests running at the same time use them).  The account goes
    at exit (:func:`remove_bench_account`).  Needs root, like kimchid's PAM check.
    """
    global _ACCOUNT, _ACCOUNT_PID
    if _ACCOUNT is not None and _ACCOUNT_PID == os.getpid():
        return _ACCOUNT
    if os.geteuid() != 0:
        raise SystemExit("the benchmarks sign in to kimchid with a Linux account they make "
                         "(useradd, PAM): run them as root")
    if not PAM_TARGET.exists():
        shutil.copyfile(PAM_SOURCE, PAM_TARGET)
        PAM_TARGET.chmod(0o644)
    if not _known(grp.getgrnam, ADMIN_GROUP):
        _admin_tool("groupadd", "-f", ADMIN_GROUP)  # -f: made meanwhile by someone else is fine
    name, password = f"kcbench{os.getpid()}", secrets.token_urlsafe(18)
    if _known(pwd.getpwnam, name) or _known(grp.getgrnam, name):
        _drop_account(name)  # left by a killed run that had our pid: no live process owns it
    _admin_tool("useradd", "--no-create-home", "--shell", "/usr/sbin/nologin",
                "--user-group", "-G", ADMIN_GROUP, name)
    _ACCOUNT, _ACCOUNT_PID = (name, password), os.getpid()
    _admin_tool("chpasswd", stdin=f"{name}:{password}\n")
    return _ACCOUNT


def _drop_account(name: str) -> None:
    _admin_tool("userdel", "--force", name, ok=(0, 6))  # 6: already gone
    if _known(grp.getgrnam, name):  # userdel keeps the user group when USERGROUPS_ENAB is off
        _admin_tool("groupdel", name, ok=(0, 6))


def remove_bench_account() -> None:
    """Remove the account :func:`bench_account` made in this process (at exit, or sooner)."""
    global _ACCOUNT
    if _ACCOUNT is None or _ACCOUNT_PID != os.getpid():
        return
    name, _ACCOUNT = _ACCOUNT[0], None
    try:
        _drop_account(name)
    except (OSError, RuntimeError, subprocess.TimeoutExpired) as e:
        print(f"could not remove the benchmark account {name}: {e}", file=sys.stderr)


def basic_authorization(auth: tuple[str, str]) -> str:
    """The value of an ``Authorization: Basic`` header for ``(user, password)``."""
    return "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()


def git_tree(rev: str, dest: Path) -> Path:
    """This repository's whole tree at ``rev`` (``git archive``), extracted into ``dest``
    (a fresh folder): a reference kimchid runs from it (``KimchidProc(tree=...)``)."""
    dest.mkdir(parents=True, exist_ok=True)
    try:
        sha = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--verify", f"{rev}^{{commit}}"],
                             capture_output=True, text=True, check=True).stdout.strip()
    except subprocess.CalledProcessError as e:
        raise SystemExit(f"no commit {rev!r} in {ROOT}: {e.stderr.strip()}") from None
    archive = subprocess.Popen(["git", "-C", str(ROOT), "archive", sha], stdout=subprocess.PIPE)
    untar = subprocess.run(["tar", "-x", "-C", str(dest)], stdin=archive.stdout)
    assert archive.stdout is not None
    archive.stdout.close()
    if archive.wait() != 0 or untar.returncode != 0:
        raise RuntimeError(f"git archive {sha} | tar -x -C {dest} failed")
    return dest


# -- redis-server ----------------------------------------------------------------------


class RedisProc:
    """redis-server on a unix socket; AOF everysec by default (as kimchid's embedded one)."""

    def __init__(self, folder: Path, aof: bool = True) -> None:
        self.dir = folder
        self.dir.mkdir(parents=True, exist_ok=True)
        self.sock = self.dir / "redis.sock"
        self.url = f"unix://{self.sock}"
        self.aof = aof
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> RedisProc:
        binary = shutil.which("redis-server")
        if not binary:
            raise SystemExit("redis-server is not installed (apt-get install redis-server)")
        persistence = (["--appendonly", "yes", "--appendfsync", "everysec"] if self.aof
                       else ["--appendonly", "no"])
        self.proc = track(subprocess.Popen(
            [binary, "--port", "0", "--unixsocket", str(self.sock), "--unixsocketperm", "700",
             "--dir", str(self.dir), *persistence, "--save", "", "--maxclients", "10000",
             "--logfile", str(self.dir / "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        ))
        wait_for(lambda: self.client().ping(), what="redis-server")
        return self

    def client(self, decode: bool = True) -> redis.Redis:
        return redis.Redis(unix_socket_path=str(self.sock), decode_responses=decode,
                           socket_timeout=30)

    def stop(self) -> None:
        stop_proc(self.proc)


# -- kimchid and workers ------------------------------------------------------------------


def write_config(path: Path, sections: dict[str, dict[str, Any]]) -> Path:
    path.write_text("".join(
        f"[{name}]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in keys.items())
        for name, keys in sections.items()))
    return path


class KimchidProc:
    """kimchid as a process (``python -m kimchid.main``) on an external Redis.

    ``tree``: the source tree it runs from (its kimchid, workers and webui/): this
    checkout by default, or another commit's extracted elsewhere (see :func:`git_tree`)."""

    def __init__(self, folder: Path, redis_url: str, workers: int = 2,
                 extra: dict[str, dict[str, Any]] | None = None, tree: Path = ROOT,
                 tls: bool = False) -> None:
        """``tls``: HTTPS with kimchid's own certificate, as ``kimchi.sh up`` serves (the
        plain port then only redirects); clients here do not verify the certificate."""
        self.tree = tree
        self.tls = tls
        self.dir = folder
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        scheme = "https" if tls else "http"
        self.url = f"{scheme}://127.0.0.1:{self.port}"
        self.ws_url = f"{'wss' if tls else 'ws'}://127.0.0.1:{self.port}"
        server: dict[str, Any] = {"http_port": self.port, "host": "127.0.0.1", "tls": tls,
                                  "log_level": "warn"}
        if tls:
            server.update(https_port=self.port, http_port=free_port())
            import urllib3

            urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
        sections: dict[str, dict[str, Any]] = {
            "server": server,
            "redis": {"url": redis_url},
            "libvirt": {"uri": "test:///default"},
            "workers": {"embedded": workers},
            "paths": {"state_dir": str(self.dir / "state"),
                      "objects_dir": str(self.dir / "objects")},
        }
        for name, keys in (extra or {}).items():
            sections.setdefault(name, {}).update(keys)
        self.config = write_config(self.dir / "kimchi.toml", sections)
        self.log = self.dir / "kimchid.log"
        # kimchid and its workers write their GC pause figures here (see gc_pauses)
        self.gc_dir = self.dir / "gc"
        self.gc_dir.mkdir(exist_ok=True)
        self.env: dict[str, str] = {}  # more environment for kimchid (KIMCHI_BENCH_GC_SETTLE=0 ...)
        self.gc_mark: dict[str, dict[str, Any]] = {}  # GC figures when start() returned
        self.proc: subprocess.Popen[bytes] | None = None
        self.workers = workers
        self.auth = bench_account()  # (user, password): an admin, HTTP Basic
        self.ws_headers = [f"Authorization: {basic_authorization(self.auth)}"]
        # When kimchid last checked our password with PAM, as (earliest, latest) monotonic
        # times: it remembers a right Basic password for BASIC_MEMORY s from that check.
        self._checked = (-float("inf"), -float("inf"))

    def start(self) -> KimchidProc:
        import requests

        with open(self.log, "ab") as out:
            self.proc = track(subprocess.Popen(
                [sys.executable, "-m", "kimchid.main", "--config", str(self.config)],
                stdout=out, stderr=subprocess.STDOUT, cwd=self.dir,
                env=base_env(self.tree, KIMCHI_BENCH_GC_STATS=str(self.gc_dir), **self.env),
            ))
        s = requests.Session()
        s.verify, s.trust_env = False, False  # kimchid's own certificate (no CA bundle)
        wait_for(lambda: s.get(self.url + "/health", timeout=2).status_code == 200,
                 timeout=30, what=f"kimchid on {self.url} (log {self.log})")
        if self.workers:
            wait_for(lambda: len(self.worker_procs()) >= self.workers, timeout=30,
                     what="kimchid's embedded workers")
            # past their start-up (a tree from before the GC figures has no gcpause)
            if any((self.tree / d / "gcpause.py").exists() for d in ("kimchi", "kimchid")):
                wait_for(lambda: all(_gc_settled(self.gc_dir, p.pid) for p in self.worker_procs()),
                         timeout=30, what="kimchid's workers to finish starting")
        self.sign_in()
        self.gc_mark = gc_snapshot(self.gc_dir)
        return self

    def session(self) -> requests.Session:
        """A requests session that signs in with HTTP Basic as the benchmark's admin."""
        return _session(self)

    def sign_in(self) -> None:
        """One request that has kimchid check our password with PAM (when it does not
        remember it): do it before measuring, so no PAM check falls inside the
        measurement, and before many connections at once (parallel first checks would
        each count as a login attempt and be throttled)."""
        r = self.session().get(self.url + "/session", timeout=60)
        if r.status_code != 200 or r.json().get("role") != "admin":
            raise RuntimeError(f"signing in to kimchid as {self.auth[0]}: {r.status_code} "
                               f"{r.text[:300]} (log {self.log})")

    def keep_remembered(self, need: float) -> None:
        """Make sure kimchid remembers our password for at least ``need`` more seconds.

        kimchid checks a Basic password with PAM once, then remembers it for a minute
        from that check (a hit does not extend it); a measurement that crosses the end
        would time one PAM check.  When less than ``need`` s are left, wait for the
        memory to run out and sign in again now (waits at most about ``need`` s)."""
        earliest, latest = self._checked
        memory = _basic_memory()
        if earliest + memory - time.monotonic() >= need:
            return
        time.sleep(max(0.0, latest + memory + 0.1 - time.monotonic()))
        self.sign_in()

    def note_request(self, sent: float, answered: float) -> None:
        """Account for a request made with our credentials (monotonic send/answer
        times): it made kimchid check the password again if its memory had run out."""
        earliest, latest = self._checked
        memory = _basic_memory()
        if sent >= latest + memory:  # surely forgotten: this one was checked
            self._checked = (sent, answered)
        elif answered > earliest + memory:  # perhaps: widen the bounds
            self._checked = (earliest, answered)

    def worker_procs(self) -> list[psutil.Process]:
        """The embedded worker processes (python -m workers.main), not their guards."""
        if self.proc is None:
            return []
        out = []
        for p in psutil.Process(self.proc.pid).children(recursive=True):
            try:
                cmd = p.cmdline()
                if "workers.main" in cmd and "kimchi.orphan_guard" not in cmd:
                    out.append(p)
            except psutil.NoSuchProcess:
                pass
        return out

    def stop(self) -> None:
        stop_proc(self.proc, timeout=25)


@functools.cache
def _basic_memory() -> float:
    """Seconds kimchid remembers a right Basic password (imported late: the gate module
    pulls in Twisted and PAM, which the benchmarks' small child processes do not need)."""
    from kimchid.api.gate import BASIC_MEMORY

    return BASIC_MEMORY


def _session(k: KimchidProc) -> requests.Session:
    import requests

    class SignedIn(requests.Session):
        """Basic auth on every request, each noted for :meth:`KimchidProc.keep_remembered`."""

        def request(self, *args: Any, **kwargs: Any) -> requests.Response:
            sent = time.monotonic()
            r = super().request(*args, **kwargs)
            if r.status_code != 401:  # it reached the gate and passed
                k.note_request(sent, time.monotonic())
            return r

    s = SignedIn()
    s.auth = k.auth
    s.verify, s.trust_env = False, False  # kimchid's own certificate (with tls; no CA bundle)
    return s


def start_worker(config: Path, redis_url: str, name: str, log: Path,
                 gc_dir: Path | None = None) -> subprocess.Popen[bytes]:
    """One standalone ``kimchi-worker`` process (``python -m workers.main``); with
    ``gc_dir``, it writes its GC pause figures there (see :func:`gc_pauses`)."""
    extra: dict[str, Any] = {"KIMCHI_BENCH_GC_STATS": str(gc_dir)} if gc_dir else {}
    with open(log, "ab") as out:
        return track(subprocess.Popen(
            [sys.executable, "-m", "workers.main", "--config", str(config), "--name", name],
            stdout=out, stderr=subprocess.STDOUT,
            env=base_env(KIMCHI_REDIS_URL=redis_url, **extra),
        ))


def wait_workers(client: redis.Redis, n: int, prefix: str = "kimchi:",
                 timeout: float = 20.0) -> None:
    """Until ``n`` workers heartbeat in ``{prefix}workers``."""
    wait_for(lambda: client.zcount(prefix + "workers", time.time() - 3, "+inf") >= n,
             timeout=timeout, what=f"{n} workers heartbeating")


# -- statistics --------------------------------------------------------------------------


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of ``values``; nan when empty."""
    if not values:
        return float("nan")
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(round(p / 100.0 * len(s) + 0.5)) - 1))
    return s[k]


def median(values: Iterable[float]) -> float:
    v = [x for x in values if x == x]
    return statistics.median(v) if v else float("nan")


def spread(values: Sequence[float]) -> str:
    v = [x for x in values if x == x]
    if not v:
        return "-"
    return f"{fmt(min(v))}-{fmt(max(v))}"


def fmt(x: float | int | None) -> str:
    if x is None or (isinstance(x, float) and x != x):
        return "-"
    if isinstance(x, int):
        return f"{x:,}"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


# -- CPU ------------------------------------------------------------------------------------


class CpuMeter:
    """CPU seconds used by some processes (and optionally their children) between two points."""

    def __init__(self, pids: Sequence[int], children: bool = False) -> None:
        self.pids = list(pids)
        self.children = children
        self.t0 = 0.0
        self.c0 = 0.0

    def _procs(self) -> list[psutil.Process]:
        out: list[psutil.Process] = []
        for pid in self.pids:
            try:
                p = psutil.Process(pid)
            except psutil.NoSuchProcess:
                continue
            out.append(p)
            if self.children:
                out.extend(p.children(recursive=True))
        return out

    def _cpu(self) -> float:
        total = 0.0
        for p in self._procs():
            try:
                t = p.cpu_times()
                # children_*: children that have ended and been waited for (RQ's horses)
                total += t.user + t.system + t.children_user + t.children_system
            except psutil.NoSuchProcess:
                pass
        return total

    def start(self) -> CpuMeter:
        self.t0, self.c0 = time.monotonic(), self._cpu()
        return self

    def stop(self) -> tuple[float, float]:
        """(cpu seconds, % of one core) since start."""
        cpu = self._cpu() - self.c0
        wall = time.monotonic() - self.t0
        return cpu, 100.0 * cpu / wall if wall > 0 else float("nan")


class MachineCpu:
    """The whole machine's busy CPU (all processes, ours and others'), % of one core."""

    def start(self) -> MachineCpu:
        self.t0, self.c0 = time.monotonic(), self._busy()
        return self

    @staticmethod
    def _busy() -> float:
        t = psutil.cpu_times()
        return t.user + t.nice + t.system + t.irq + t.softirq + getattr(t, "steal", 0.0)

    def stop(self) -> float:
        wall = time.monotonic() - self.t0
        return 100.0 * (self._busy() - self.c0) / wall if wall > 0 else float("nan")


# -- output ------------------------------------------------------------------------------------


def machine() -> str:
    return (f"{platform.node()} {os.cpu_count()} CPUs, "
            f"{psutil.virtual_memory().total / 2**30:.0f} GiB, Python {platform.python_version()}, "
            f"redis-server {_redis_version()}")


def _redis_version() -> str:
    try:
        out = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout
        return next((w.split("=")[1] for w in out.split() if w.startswith("v=")), "?")
    except OSError:
        return "?"


_RUN_CPU: MachineCpu | None = None


def header(title: str, quick: bool) -> None:
    global _RUN_CPU
    _RUN_CPU = MachineCpu().start()
    print(f"# {title}{' (quick)' if quick else ''}")
    print(f"# {time.strftime('%Y-%m-%d %H:%M:%S %Z')} on {machine()}")
    print(f"# load average before start: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    sys.stdout.flush()


def footer() -> float:
    """Print how busy the whole machine was during the run (others' processes included)."""
    busy = _RUN_CPU.stop() if _RUN_CPU else float("nan")
    print(f"# machine CPU busy during the run: {busy:.0f}% of {100 * (os.cpu_count() or 1)}% "
          f"(all processes, this benchmark's included); load average at the end: "
          f"{', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    sys.stdout.flush()
    return busy


def table(rows: list[Sequence[Any]], head: Sequence[str]) -> None:
    cells = [[str(c) for c in head]] + [[c if isinstance(c, str) else fmt(c) for c in r]
                                        for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(head))]
    for j, r in enumerate(cells):
        print("  ".join(c.ljust(widths[i]) for i, c in enumerate(r)))
        if j == 0:
            print("  ".join("-" * w for w in widths))
    sys.stdout.flush()


def verdict(ok: bool, what: str) -> str:
    line = f"{'PASS' if ok else 'FAIL'}: {what}"
    print(line)
    sys.stdout.flush()
    return line


def log(msg: str) -> None:
    print(f"  .. {msg}", file=sys.stderr, flush=True)


# -- garbage-collector pauses ------------------------------------------------------------------
#
# kimchid and the workers time each of their collections (kimchi/gcpause.py) and, with
# KIMCHI_BENCH_GC_STATS naming a folder, write the histogram there as gc-<role>-<pid>.json at
# start, on SIGUSR2 and at exit.  KimchidProc points it at its own folder and notes the
# figures when start() returns (``k.gc_mark``), so ``print_gc_pauses(k)`` gives the pauses
# of the benchmark's load.


def gc_snapshot(folder: Path, timeout: float = 5.0) -> dict[str, dict[str, Any]]:
    """Fresh GC figures of every live process writing into ``folder`` (asked with SIGUSR2;
    only a process whose file exists is signalled: it has the handler), by file name."""
    asked: dict[Path, float] = {}
    for f in folder.glob("gc-*.json"):
        pid = int(f.stem.rsplit("-", 1)[1])
        try:
            before = json.loads(f.read_text())["written"]
            os.kill(pid, signal.SIGUSR2)
            asked[f] = before
        except (OSError, ValueError, KeyError):
            pass  # gone (its last figures, written at exit, stay readable)
    deadline = time.monotonic() + timeout
    out: dict[str, dict[str, Any]] = {}
    for f in folder.glob("gc-*.json"):
        while True:
            try:
                data = json.loads(f.read_text())
            except (OSError, ValueError):
                data = None
            fresh = data is not None and (f not in asked or data["written"] > asked[f])
            if fresh or time.monotonic() > deadline:
                break
            time.sleep(0.01)
        if data is not None:
            out[f.stem] = data
    return out


def _gc_settled(folder: Path, pid: int) -> bool:
    """Whether the process ``pid`` writing into ``folder`` is past its start-up (its
    start-up collection must not count as a pause under the benchmark's load)."""
    for f in folder.glob(f"gc-*-{pid}.json"):
        try:
            return bool(json.loads(f.read_text()).get("settled"))
        except (OSError, ValueError):
            return False
    return False


GcRuns = dict[str, list[tuple[dict[str, Any], dict[str, Any] | None]]]


def gc_runs(folder: Path, since: dict[str, dict[str, Any]] | None = None) -> GcRuns:
    """Fresh figures of the processes writing into ``folder``, paired with their figures
    in ``since`` (an earlier :func:`gc_snapshot`), by role (``kimchid``, ``worker``): add
    several with ``+`` per role to pool repetitions, then :func:`gc_describe`."""
    roles: GcRuns = {}
    for name, data in gc_snapshot(folder).items():
        roles.setdefault(data["role"], []).append((data, (since or {}).get(name)))
    return roles


def gc_describe(runs: GcRuns) -> dict[str, dict[str, float | None]]:
    """The pause distribution per role, ms: ``{"kimchid": {"n", "p50", "p99", "max",
    "over", "gen2_n", "gen2_max", "cpu_p99", "cpu_max", "cpu_over", "idle_full_n",
    "idle_full_max"}, ...}`` (``cpu_``: the collector's own CPU time, which leaves out the
    time the process waited for a core on a busy machine; ``idle_full_``: the full
    collections kimchid ran on an idle reactor, not in the pauses; the workers of a role
    together)."""
    from kimchi.gcpause import IDLE_FULL, distribution

    out = {}
    for role, pairs in sorted(runs.items()):
        d = distribution(pairs)
        g2 = distribution(pairs, generation=2)
        idle = distribution(pairs, generation=IDLE_FULL)
        cpu = distribution(pairs, cpu=True)
        figures = {**d, "gen2_n": g2["n"], "gen2_max": g2["max"], "cpu_p99": cpu["p99"],
                   "cpu_max": cpu["max"], "cpu_over": cpu["over"], "idle_full_n": idle["n"],
                   "idle_full_max": idle["max"]}
        # no collection: None, not nan (RESULT lines are JSON)
        out[role] = {k: None if v != v else v for k, v in figures.items()}
    return out


def gc_pauses(folder: Path, since: dict[str, dict[str, Any]] | None = None
              ) -> dict[str, dict[str, float | None]]:
    """:func:`gc_describe` of :func:`gc_runs`: the pauses since ``since``, per role."""
    return gc_describe(gc_runs(folder, since))


def print_gc_lines(dists: dict[str, dict[str, float | None]], label: str = "") -> None:
    """``GC pauses <role> (<label>): n, p50, p99, max, over 10 ms: k (...)``, one per role."""
    for role, d in dists.items():
        print(f"GC pauses {role}{f' ({label})' if label else ''}: n {d['n']:,}, "
              f"p50 {fmt(d['p50'])} ms, p99 {fmt(d['p99'])} ms, max {fmt(d['max'])} ms, "
              f"over 10 ms: {d['over']} (full collections: {d['gen2_n']}, longest "
              f"{fmt(d['gen2_max'])} ms; collector CPU p99 {fmt(d['cpu_p99'])}, max "
              f"{fmt(d['cpu_max'])} ms, over 10 ms: {d['cpu_over']}; on an idle reactor: "
              f"{d['idle_full_n']}, longest {fmt(d['idle_full_max'])} ms)")
    sys.stdout.flush()


def print_gc_pauses(k: KimchidProc | Path, label: str = "",
                    since: dict[str, dict[str, Any]] | None = None
                    ) -> dict[str, dict[str, float | None]]:
    """Print the GC pauses of kimchid and its workers (or of the processes writing into a
    folder) since ``since`` (default: when ``KimchidProc.start`` returned), one line per
    role: ``GC pauses kimchid: n, p50, p99, max, over 10 ms: k``; return them for RESULT."""
    folder = k.gc_dir if isinstance(k, KimchidProc) else k
    if since is None and isinstance(k, KimchidProc):
        since = k.gc_mark
    dists = gc_pauses(folder, since)
    print_gc_lines(dists, label)
    return dists


def post_task(k: KimchidProc, s: Any, path: str, body: dict[str, Any]
              ) -> tuple[float, dict[str, Any]]:
    """POST a request that answers 202 with a task and wait for the task's end as the web
    UI does (its event on ``/events``, a WebSocket opened before the POST: no polling that
    would take CPU from the work): (seconds from the POST to that event, the ended task)."""
    import json as _json
    import ssl

    import websocket

    k.keep_remembered(60.0)  # no PAM check of our Basic password inside the timing
    ws = websocket.create_connection(
        k.ws_url + "/events?types=task.finished,task.failed,task.cancelled", timeout=600,
        header=k.ws_headers, sslopt={"cert_reqs": ssl.CERT_NONE} if k.tls else None)
    try:
        t = time.perf_counter()
        r = s.post(k.url + path, json=body, timeout=60)
        if r.status_code != 202:
            raise RuntimeError(f"POST {path}: {r.status_code} {r.text[:300]}")
        tid = r.json()["id"]
        while True:
            ev = _json.loads(ws.recv())
            if (ev.get("data") or {}).get("id") == tid:
                break
        took = time.perf_counter() - t
    finally:
        ws.close()
    return took, s.get(f"{k.url}/tasks/{tid}", timeout=30).json()


@contextlib.contextmanager
def libvirtd_pool(uri: str = "qemu:///system") -> Iterator[tuple[Any, Any, Path]]:
    """A throw-away directory pool on the machine's libvirtd, in a folder QEMU may read:
    (connection, pool, folder); the domains whose disks are in it, and the folder, go at
    the end."""
    import uuid

    import libvirt

    tag = uuid.uuid4().hex[:6]
    folder = Path("/var/lib/libvirt/images") / f"kimchi-bench-{tag}"
    folder.mkdir()
    conn = libvirt.open(uri)
    pool = conn.storagePoolCreateXML(
        f"<pool type='dir'><name>kimchi-bench-{tag}</name><target><path>{folder}</path>"
        "</target></pool>", 0)
    try:
        yield conn, pool, folder
    finally:
        for dom in conn.listAllDomains(0):
            if str(folder) in dom.XMLDesc(0):
                if dom.isActive():
                    dom.destroy()
                dom.undefine()
        try:
            pool.destroy()
        except libvirt.libvirtError:
            pass
        shutil.rmtree(folder, ignore_errors=True)
