"""Fixtures that start the real things: redis-server, kimchid and its worker processes.

Nothing here is faked: a test gets a Redis of its own (flushed), and a daemon
started as a process, exactly as the README's first command starts it.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import redis
import requests

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = Path(os.environ.get("KIMCHI_TEST_ARTIFACTS", ROOT / "artifacts"))


# The tests that use the machine's libvirtd, or QEMU hosts of their own, are marked
# "system": ./kimchi.sh test runs them one after another in one pytest process (with the
# browser and fuzz tests), and the others in a second process beside it.  They share the
# machine's libvirtd, whose objects the session checks are left as found, and each of
# their emulated guests takes a core.
SYSTEM_FIXTURES = frozenset({"libvirtd", "qemu_hosts"})


def pytest_itemcollected(item: pytest.Item) -> None:
    if SYSTEM_FIXTURES & set(getattr(item, "fixturenames", ())):
        item.add_marker(pytest.mark.system)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate: Any, timeout: float = 15.0, interval: float = 0.05, what: str = "") -> Any:
    """Poll ``predicate`` until it returns something truthy; fail the test on timeout."""
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
    pytest.fail(f"timed out after {timeout}s waiting for {what or predicate}: last {last!r}")


class RedisServer:
    """A real redis-server on a unix socket, append-only file on (restarts keep data)."""

    def __init__(self, workdir: Path) -> None:
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.sock = self.dir / "redis.sock"
        self.url = f"unix://{self.sock}"
        self.proc: subprocess.Popen[bytes] | None = None

    def emptied(self) -> RedisServer:
        """This server running (started again if a test stopped it) and empty."""
        if self.proc is None or self.proc.poll() is not None:
            self.start()
        self.client().flushall()
        return self

    def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is not installed (.ci/run installs it)"
        self.proc = subprocess.Popen(
            [binary, "--port", "0", "--unixsocket", str(self.sock), "--unixsocketperm", "700",
             "--dir", str(self.dir), "--appendonly", "yes", "--appendfsync", "always",
             "--save", "", "--logfile", str(self.dir / "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        wait_for(lambda: self.client().ping(), what="redis-server")

    def client(self) -> redis.Redis:
        return redis.Redis(unix_socket_path=str(self.sock), decode_responses=True,
                           socket_timeout=5)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def restart(self, down_for: float = 0.0) -> None:
        self.stop()
        time.sleep(down_for)
        self.start()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_db(redis_server: RedisServer) -> RedisServer:
    """The session's Redis, emptied for this test (restarted first if a test stopped it)."""
    return redis_server.emptied()


class Kimchi:
    """kimchid as a process, with its embedded workers, and a small HTTP client."""

    def __init__(self, workdir: Path, redis_url: str = "", workers: int = 2,
                 extra: dict[str, dict[str, Any]] | None = None,
                 env: dict[str, str] | None = None,
                 auth: tuple[str, str] | None = None, tls: bool = False) -> None:
        """``auth``: the (user, password) every request of ``http`` sends (HTTP Basic);
        ``tls``: HTTPS on ``port`` with kimchid's own certificate (``cert``), as
        ``kimchi.sh up`` serves it, and plain HTTP beside it only redirecting."""
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self.ws_url = f"{'wss' if tls else 'ws'}://127.0.0.1:{self.port}"
        self.cert = self.dir / "state" / "tls" / "kimchi-cert.pem"  # made on the first start
        self.config = self.dir / "kimchi.toml"
        server: dict[str, Any] = {"http_port": self.port, "host": "127.0.0.1", "tls": tls}
        if tls:
            server.update(https_port=self.port, http_port=free_port())
        sections: dict[str, dict[str, Any]] = {
            "server": server,
            "redis": {"url": redis_url},
            "libvirt": {"uri": "test:///default"},
            "workers": {"embedded": workers, "lease_seconds": 2.0},
            "paths": {"state_dir": str(self.dir / "state"),
                      "objects_dir": str(self.dir / "objects")},
        }
        for name, keys in (extra or {}).items():
            sections.setdefault(name, {}).update(keys)
        self.config.write_text("".join(
            f"[{name}]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in keys.items())
            for name, keys in sections.items()))
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("KIMCHI_")}
        self.env.update(env or {})
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = self.dir / "kimchid.log"
        self.http = requests.Session()
        if tls:  # the environment's CA bundle (REQUESTS_CA_BUNDLE) would win over verify
            self.http.trust_env = False
            self.http.verify = str(self.cert)
        self.auth = auth
        self.http.auth = auth

    def start(self, wait: bool = True) -> Kimchi:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "kimchid.main", "--config", str(self.config)],
                stdout=out, stderr=subprocess.STDOUT, env=self.env, cwd=self.dir,
            )
        if wait:
            wait_for(lambda: self.http.get(self.url + "/health", timeout=2).status_code == 200,
                     timeout=20, what=f"kimchid on {self.url} (log {self.log})")
        return self

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def restart(self) -> None:
        self.stop()
        self.start()

    def children(self, what: str) -> list[psutil.Process]:
        """Live child processes whose command line contains ``what`` (workers.main, redis)."""
        if self.proc is None:
            return []
        try:
            kids = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []
        out = []
        for p in kids:
            try:
                if what in " ".join(p.cmdline()) and p.status() != psutil.STATUS_ZOMBIE:
                    out.append(p)
            except psutil.NoSuchProcess:
                pass
        return out

    def workers(self) -> list[psutil.Process]:
        return self.children("workers.main")

    @property
    def ws_headers(self) -> list[str]:
        """Headers for a WebSocket handshake with this daemon's credentials."""
        if self.auth is None:
            return []
        token = base64.b64encode(f"{self.auth[0]}:{self.auth[1]}".encode()).decode()
        return [f"Authorization: Basic {token}"]

    def login_cookie(self) -> str:
        """A session cookie from ``POST /login`` (what a browser gets)."""
        assert self.auth is not None
        r = requests.post(self.url + "/login", json={"username": self.auth[0],
                                                     "password": self.auth[1]}, timeout=20)
        assert r.status_code == 200, r.text
        return str(r.cookies["kimchi_session"])

    def get(self, path: str, **kw: Any) -> requests.Response:
        return self.http.get(self.url + path, timeout=kw.pop("timeout", 10), **kw)

    def post(self, path: str, body: Any = None, **kw: Any) -> requests.Response:
        if body is not None:
            kw["json"] = body
        return self.http.post(self.url + path, timeout=kw.pop("timeout", 10), **kw)

    def delete(self, path: str, **kw: Any) -> requests.Response:
        return self.http.delete(self.url + path, timeout=kw.pop("timeout", 10), **kw)

    def wait_task(self, task_id: str, timeout: float = 30.0) -> dict[str, Any]:
        def ended() -> dict[str, Any] | None:
            t = self.get(f"/tasks/{task_id}").json()
            return t if t["status"] in ("finished", "failed", "cancelled") else None

        return wait_for(ended, timeout=timeout, interval=0.05, what=f"task {task_id} to end")

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@pytest.fixture
def kimchi_factory(tmp_path: Path, pam_users: Any) -> Iterator[Any]:  # noqa: F811
    """Start daemons (``kimchi_factory(redis_url=..., workers=2)``); all stopped at the end.

    Their ``http`` client signs in as the test admin (``auth=None``: anonymous).
    """
    started: list[Kimchi] = []

    def make(name: str = "kimchi", **kw: Any) -> Kimchi:
        kw.setdefault("auth", (pam_users.admin.name, pam_users.admin.password))
        k = Kimchi(tmp_path / name, **kw)
        started.append(k)
        return k.start()

    yield make
    for k in started:
        k.stop()


@pytest.fixture
def kimchi(kimchi_factory: Any, redis_db: RedisServer) -> Kimchi:
    """A daemon with 2 embedded workers on the test's own (external) Redis."""
    return kimchi_factory(redis_url=redis_db.url)


@pytest.fixture
def iso_tree(tmp_path: Path) -> Path:
    """A folder with ISOs of several distributions, decoys and a symlink loop."""
    from tests.isofactory import make_iso, make_not_iso, make_truncated_iso

    root = tmp_path / "isos"
    make_iso(root / "fedora" / "Fedora-39.iso", "Fedora-WS-Live-39-1-5")
    make_iso(root / "ubuntu" / "ubuntu-22.04.iso", "Ubuntu 22.04.3 LTS amd64")
    make_iso(root / "deep" / "a" / "b" / "c" / "debian-12.iso", "Debian 12.2.0 amd64 n")
    make_iso(root / "misc" / "UNKNOWN.ISO", "MY_OWN_DISC", bootable=False)
    make_not_iso(root / "misc" / "notes.iso")
    make_truncated_iso(root / "misc" / "broken.iso")
    (root / "misc" / "readme.txt").write_text("not an image")
    (root / "loop").mkdir()
    (root / "loop" / "again").symlink_to(root)
    return root


class Libvirtd:
    """The machine's libvirtd (with virtlogd), started if none runs, stopped at the end only
    if started here.  No test stops, restarts or reconfigures it: those that need a libvirtd
    to die use one of their own (tests/libvirtd_private.py)."""

    def __init__(self) -> None:
        self.started: list[int] = []
        self.before: dict[str, dict[str, tuple[bool, bool]]] = {}

    @staticmethod
    def objects() -> dict[str, dict[str, tuple[bool, bool]]]:
        """The machine's guests, networks and pools: name -> (active, persistent)."""
        import libvirt

        conn = libvirt.open("qemu:///system")
        try:
            return {
                "domain": {d.name(): (bool(d.isActive()), bool(d.isPersistent()))
                           for d in conn.listAllDomains()},
                "network": {n.name(): (bool(n.isActive()), bool(n.isPersistent()))
                            for n in conn.listAllNetworks()},
                "pool": {p.name(): (bool(p.isActive()), bool(p.isPersistent()))
                         for p in conn.listAllStoragePools()},
            }
        finally:
            conn.close()

    def restore_defaults(self) -> None:
        """Undo what kimchid's start-up does on a libvirtd where they were missing: the
        default network and pool it made (tests point daemons at the machine's libvirtd)."""
        import libvirt

        conn = libvirt.open("qemu:///system")
        try:
            for kind, lookup in (("network", conn.networkLookupByName),
                                 ("pool", conn.storagePoolLookupByName)):
                if "default" in self.before.get(kind, {}):
                    continue
                try:
                    obj = lookup("default")
                except libvirt.libvirtError:
                    continue
                if obj.isActive():
                    obj.destroy()
                obj.undefine()
        finally:
            conn.close()

    def check_left_as_found(self) -> None:
        """The machine's libvirtd holds what it held before the tests, no more, no less."""
        self.restore_defaults()
        after = self.objects()
        # a throw-away pool of another test session running meanwhile (qemu_pool) may have
        # been there at the start and gone since: not this session's change
        before = {kind: {name: state for name, state in objs.items()
                         if not name.startswith("kimchi-test-") or name in after[kind]}
                  for kind, objs in self.before.items()}
        changed = {kind: {"before": before[kind], "after": after[kind]}
                   for kind in after if after[kind] != before.get(kind)}
        assert not changed, f"the tests changed the machine's libvirtd objects: {changed}"

    @staticmethod
    def _running(name: str) -> list[int]:
        return [p.pid for p in psutil.process_iter(["name"]) if p.info["name"] == name]

    def ensure(self) -> None:
        for daemon in ("virtlogd", "libvirtd"):
            if not self._running(daemon):
                binary = shutil.which(daemon) or f"/usr/sbin/{daemon}"
                subprocess.run([binary, "-d"], check=True, timeout=30)
                self.started += self._running(daemon)
        import libvirt

        wait_for(lambda: libvirt.open("qemu:///system").getLibVersion(), timeout=30,
                 what="libvirtd to answer")
        if not self.before:
            self.before = self.objects()

    def stop_started(self) -> None:
        for pid in self.started:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass


@pytest.fixture(scope="session")
def libvirtd() -> Iterator[Libvirtd]:
    if not shutil.which("libvirtd") and not Path("/usr/sbin/libvirtd").exists():
        pytest.fail("libvirtd is not installed (.ci/run installs libvirt-daemon-system)")
    d = Libvirtd()
    d.ensure()
    yield d
    try:
        d.check_left_as_found()  # an error at the end of the run when a test left something
    finally:
        d.stop_started()


# The login tests' real Linux accounts (a user and an admin), for every daemon test.
from tests.authfixtures import pam_users  # noqa: E402,F401,F811  (a fixture)


@pytest.fixture
def qemu_pool(libvirtd: Libvirtd) -> Iterator[Any]:
    """A throw-away directory pool on the real libvirtd, in a folder QEMU may read.

    ``.tag`` names it (domains whose name holds the tag are removed at the end),
    ``.folder`` is its directory and ``.iso_dir`` a readable folder beside it for ISOs.
    """
    import uuid

    import libvirt

    conn = libvirt.open("qemu:///system")
    tag = uuid.uuid4().hex[:8]
    folder = Path("/var/lib/libvirt/images") / f"kimchi-test-{tag}"
    folder.mkdir(parents=True)
    iso_dir = Path(f"{folder}-iso")
    iso_dir.mkdir(mode=0o755)
    pool = conn.storagePoolCreateXML(
        f"<pool type='dir'><name>kimchi-test-{tag}</name><target><path>{folder}</path>"
        "</target></pool>", 0)
    pool.tag, pool.folder, pool.iso_dir = tag, folder, iso_dir
    yield pool
    for dom in conn.listAllDomains(0):
        if tag in dom.name():
            if dom.isActive():
                dom.destroy()
            dom.undefine()
    try:
        pool.destroy()
    except libvirt.libvirtError:
        pass
    shutil.rmtree(folder, ignore_errors=True)
    shutil.rmtree(iso_dir, ignore_errors=True)
