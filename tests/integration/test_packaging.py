"""The production install: pinned versions, a wheel that serves the whole UI from a
virtualenv outside the checkout, and the Debian package in a fresh Debian 12 root.

The wheel and the .deb are built by ``packaging/build-deb.sh``, as a user builds them.
The .deb is installed with apt into a Debian 12 root made by ``debootstrap --variant=minbase``
(the closest to a fresh machine this one allows without a VM: a chroot).  That root, with
the package's Depends installed in it by apt from Debian's archive, is made once and kept in
``.cache/debian-root`` (about 700 MB; made again when the Depends change); each run mounts
an overlay of it, so every run starts from the same untouched root.  The package's postinst
runs there without systemd, and the installed kimchid is started inside the root with its
own Redis (Debian's redis-server), a worker and PAM, then the package is purged.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil
import pytest
import requests

from tests.conftest import free_port, wait_for

ROOT = Path(__file__).resolve().parent.parent.parent
BUILD = ROOT / "packaging" / "build-deb.sh"
CONSTRAINTS = ROOT / "constraints.txt"
WEBUI = ROOT / "webui"
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
CACHE = ROOT / ".cache" / "debian-root"
SUITE = "bookworm"  # Debian 12
ARCH = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True,
                      check=False).stdout.strip() or "amd64"
QEMU = "qemu-system-arm" if ARCH == "arm64" else "qemu-system-x86"
ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
       "LANG": "C.UTF-8", "DEBIAN_FRONTEND": "noninteractive", "HOME": "/root"}


def run(*cmd: Any, timeout: float = 300, **kw: Any) -> subprocess.CompletedProcess[str]:
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True,
                       timeout=timeout, **kw)
    assert r.returncode == 0, (f"{' '.join(map(str, cmd))} exited {r.returncode}:\n"
                               f"{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    return r


def ui_files() -> list[str]:
    """Every file of the UI, relative to webui/."""
    return sorted(str(p.relative_to(WEBUI)) for p in WEBUI.rglob("*")
                  if p.is_file() and not p.name.startswith("."))


def missing_tool(*what: str) -> None:
    """Skip (by hand) or fail (under ./kimchi.sh test, which installs them)."""
    reason = f"the packaging test needs {', '.join(what)}"
    if os.environ.get("KIMCHI_TEST_RUNNER") == "kimchi.sh":
        pytest.fail(reason)
    pytest.skip(reason)


def clean_env() -> dict[str, str]:
    """This environment without the checkout on the path or kimchi settings."""
    return {k: v for k, v in os.environ.items()
            if not k.startswith(("KIMCHI_", "PYTHON", "VIRTUAL_ENV"))}


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with kimchi's wheel, built by packaging/build-deb.sh --wheel-only."""
    if not Path("/usr/bin/python3.11").exists() or shutil.which("dpkg-deb") is None:
        missing_tool("Debian's python3.11 and dpkg-deb")
    out = tmp_path_factory.mktemp("dist")
    run(BUILD, "--wheel-only", "--out", out, timeout=600)
    return out


def wheel_of(dist: Path) -> Path:
    (wheel,) = dist.glob(f"kimchi-{VERSION}-*.whl")
    return wheel


# -- constraints.txt -----------------------------------------------------------------


def _has_extra(extra: str) -> bool:
    """Whether every requirement of kimchi's ``extra`` is installed here."""
    import tomllib

    from packaging.requirements import Requirement

    reqs = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"][extra]
    for text in reqs:
        try:
            metadata.distribution(Requirement(text.split(";")[0]).name)
        except metadata.PackageNotFoundError:
            return False
    return True


def test_constraints_pin_every_package_the_tests_run_with() -> None:
    # ./kimchi.sh test installs the test extra (bench too with KIMCHI_BENCH_SMOKE=1): what
    # is installed here is pinned at the version installed
    extras = [e for e in ("test", "bench", "dev") if _has_extra(e)]
    r = subprocess.run([sys.executable, str(ROOT / "packaging" / "constraints.py"), "--check",
                        "--extras", ",".join(extras)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    pins = {}
    for line in CONSTRAINTS.read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[name.lower()] = version
    # kimchid/api/events.py reaches into these packages' private attributes
    for name in ("twisted", "autobahn", "pyopenssl", "cryptography"):
        assert pins[name] == metadata.version(name), name
    assert "kimchi" not in pins


# -- the wheel ---------------------------------------------------------------------------


def test_wheel_in_a_fresh_virtualenv_serves_the_whole_ui(
        dist: Path, pam_users: Any, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", venv)
    py = venv / "bin" / "python"
    run(py, "-m", "pip", "install", "-q", "--no-compile", "--disable-pip-version-check",
        "-c", CONSTRAINTS, wheel_of(dist), timeout=600)
    where = run(py, "-c", "import kimchid, workers; print(kimchid.__file__, workers.__file__)",
                cwd=tmp_path, env=clean_env()).stdout.split()
    assert all(p.startswith(str(venv)) for p in where), where
    # only what runs kimchi: no test tools come with it
    assert subprocess.run([py, "-c", "import pytest"], cwd=tmp_path, env=clean_env(),
                          capture_output=True).returncode != 0
    served = venv / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}" \
        / "site-packages" / "kimchid" / "webui"
    assert not served.is_symlink() and not any(p.is_symlink() for p in served.rglob("*"))
    files = ui_files()
    assert "index.html" in files and "js/main.js" in files
    assert sorted(str(p.relative_to(served)) for p in served.rglob("*") if p.is_file()) == files

    port = free_port()
    config = tmp_path / "kimchi.toml"
    config.write_text(
        f'[server]\nhost = "127.0.0.1"\nhttp_port = {port}\ntls = false\n'
        '[redis]\nurl = ""\n'  # its own embedded redis-server, as an install has
        '[libvirt]\nuri = "test:///default"\n'
        '[workers]\nembedded = 1\n'
        f'[paths]\nstate_dir = "{tmp_path / "state"}"\nobjects_dir = "{tmp_path / "objects"}"\n')
    log = tmp_path / "kimchid.log"
    url = f"http://127.0.0.1:{port}"
    with open(log, "ab") as out:
        proc = subprocess.Popen([venv / "bin" / "kimchid", "--config", config], cwd=tmp_path,
                                env=clean_env(), stdout=out, stderr=subprocess.STDOUT)
    try:
        health = wait_for(lambda: (h := requests.get(url + "/health", timeout=2)).status_code
                          == 200 and h.json()["workers"] >= 1 and h.json(),
                          timeout=60, what=f"the wheel's kimchid and its worker ({log})")
        assert health["redis"] == "up"
        workers = [p for p in psutil.Process(proc.pid).children(recursive=True)
                   if "workers.main" in " ".join(p.cmdline())]
        assert workers and all(p.cmdline()[0].startswith(str(venv)) for p in workers)

        page = requests.get(url + "/", headers={"Accept": "text/html"}, timeout=10)
        assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
        assert "<html" in page.text and "js/main.js" in page.text
        with requests.Session() as s:
            for rel in files:
                r = s.get(f"{url}/ui/{rel}", timeout=10)
                assert r.status_code == 200, rel
                assert r.content == (served / rel).read_bytes(), rel
        # the UI's translations: the compiled catalogues travel in the wheel too
        ui_pt = requests.get(url + "/i18n", headers={"Accept-Language": "pt-BR"}, timeout=10)
        assert ui_pt.status_code == 200 and ui_pt.json()["language"] == "pt-BR"
        assert ui_pt.json()["messages"]
        assert requests.get(url + "/openapi.json", timeout=10).status_code == 401
        spec = requests.get(url + "/openapi.json", timeout=10,
                            auth=(pam_users.admin.name, pam_users.admin.password))
        assert spec.status_code == 200, spec.text
        assert spec.json()["info"]["version"] == VERSION and "/vms" in spec.json()["paths"]
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# -- the Debian package --------------------------------------------------------------------


def debian_mirror() -> str:
    """The Debian archive this machine's apt uses (deb.debian.org when none is named)."""
    sources = Path("/etc/apt/sources.list.d/debian.sources")
    if sources.exists():
        for line in sources.read_text().splitlines():
            if line.startswith("URIs:") and "security" not in line:
                return line.split()[1]
    listing = Path("/etc/apt/sources.list")
    if listing.exists():
        for line in listing.read_text().splitlines():
            parts = line.split()
            if len(parts) > 2 and parts[0] == "deb" and "security" not in parts[1]:
                return parts[1]
    return "http://deb.debian.org/debian"


def package_depends() -> list[str]:
    """The names in the Depends of packaging/debian/control.in (for Debian 12's python3.11)."""
    for line in (ROOT / "packaging/debian/control.in").read_text().splitlines():
        if line.startswith("Depends:"):
            return [d.split()[0].replace("@PYVER@", "3.11").replace("@QEMU@", QEMU)
                    for d in line.partition(":")[2].split(",")]
    raise AssertionError("control.in has no Depends")


class DebianRoot:
    """A Debian root at ``path`` (over the read-only ``lower`` when given, through an
    overlay), with /proc and the cached apt archives mounted in it, a policy-rc.d that
    starts no service while installing, and commands run in it with chroot.  ``close``
    kills what still runs there and unmounts all."""

    def __init__(self, path: Path, lower: Path | None = None) -> None:
        self.path = path
        self.mounts: list[Path] = []
        self.path.mkdir(exist_ok=True)
        if lower is not None:
            upper, work = path.parent / "upper", path.parent / "work"
            upper.mkdir()
            work.mkdir()
            self._mount(path, "-t", "overlay", "overlay", "-o",
                        f"lowerdir={lower},upperdir={upper},workdir={work}")

    def open(self) -> DebianRoot:
        self._mount(self.path / "proc", "-t", "proc", "proc")
        archives = CACHE / "archives"
        (archives / "partial").mkdir(parents=True, exist_ok=True)
        self._mount(self.path / "var/cache/apt/archives", "--bind", str(archives))
        shutil.copyfile("/etc/resolv.conf", self.path / "etc/resolv.conf")
        rc = self.path / "usr/sbin/policy-rc.d"
        rc.write_text("#!/bin/sh\nexit 101\n")
        rc.chmod(0o755)
        return self

    def _mount(self, target: Path, *args: str) -> None:
        run("mount", *args, target)
        self.mounts.append(target)

    def run(self, *cmd: str, timeout: float = 300, check: bool = True,
            stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        r = subprocess.run(["chroot", str(self.path), *cmd], env=ENV, input=stdin,
                           capture_output=True, text=True, timeout=timeout)
        if check:
            assert r.returncode == 0, (f"{' '.join(cmd)} in the Debian root exited "
                                       f"{r.returncode}:\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}")
        return r

    def popen(self, *cmd: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
        with open(log, "ab") as out:
            return subprocess.Popen(["chroot", str(self.path), *cmd], env={**ENV, **env},
                                    stdout=out, stderr=subprocess.STDOUT)

    def processes(self) -> list[psutil.Process]:
        """Processes whose root is this one (a daemon and what it started)."""
        found = []
        for p in psutil.process_iter():
            try:
                if os.readlink(f"/proc/{p.pid}/root") == str(self.path):
                    found.append(p)
            except OSError:
                pass
        return found

    def close(self) -> None:
        for p in self.processes():
            p.kill()
        psutil.wait_procs(self.processes(), timeout=10)
        for target in reversed(self.mounts):
            subprocess.run(["umount", str(target)], capture_output=True)
        self.mounts = []
        assert not mounts_under(self.path), f"still mounted: {mounts_under(self.path)}"


def mounts_under(path: Path) -> list[str]:
    return [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()
            if line.split()[1] == str(path) or line.split()[1].startswith(f"{path}/")]


def remove_tree(path: Path) -> None:
    assert not mounts_under(path), f"{path} has mounts: {mounts_under(path)}"
    subprocess.run(["rm", "-rf", "--one-file-system", str(path)], check=True)


def debian_base() -> Path:
    """A Debian 12 root made by ``debootstrap --variant=minbase``, with the package's
    Depends installed by apt from Debian's archive: made once per list of Depends (the
    first run takes a minute or two), then only read (each test mounts an overlay)."""
    depends = package_depends()
    key = hashlib.sha256(" ".join(sorted(depends)).encode()).hexdigest()[:12]
    base = CACHE / f"{SUITE}-{key}"
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (base / "etc/debian_version").exists():
            return base
        for old in CACHE.glob(f"{SUITE}-*"):  # made for other Depends, or left half-made
            remove_tree(old)
        partial = CACHE / f"{SUITE}-{key}.partial"
        run("debootstrap", "--variant=minbase", SUITE, partial, debian_mirror(), timeout=900)
        root = DebianRoot(partial).open()
        try:
            root.run("apt-get", "update", "-q")
            root.run("apt-get", "install", "-y", "-q", "--no-install-recommends",
                     "-o", "Dpkg::Options::=--force-unsafe-io", *depends, timeout=900)
        finally:
            root.close()
        (partial / "usr/sbin/policy-rc.d").unlink()
        partial.rename(base)
    return base


@pytest.fixture
def debian_root() -> Iterator[DebianRoot]:
    if os.geteuid() != 0:
        missing_tool("root (mount, chroot)")
    if shutil.which("debootstrap") is None:
        missing_tool("debootstrap")
    base = debian_base()
    scratch = Path(tempfile.mkdtemp(prefix="kimchi-debroot-"))
    root = DebianRoot(scratch / "root", lower=base)
    try:
        yield root.open()
    finally:
        root.close()
        remove_tree(scratch)


def deb_info(deb: Path) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in run("dpkg-deb", "-f", deb).stdout.splitlines():
        if line[:1] not in (" ", ""):
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    return fields


def test_debian_package_installs_and_starts_in_a_fresh_debian_12(
        dist: Path, debian_root: DebianRoot, tmp_path: Path) -> None:
    deb = Path(run(BUILD, "--wheel", wheel_of(dist), "--out", tmp_path,
                   timeout=900).stdout.strip().splitlines()[-1])
    assert deb.name == f"kimchi_{VERSION}_{ARCH}.deb"

    # what it is, before installing it
    info = deb_info(deb)
    assert (info["Package"], info["Version"], info["Architecture"]) == ("kimchi", VERSION, ARCH)
    depends = {d.split()[0] for d in info["Depends"].split(", ")}
    assert {"python3.11", "redis-server", "libvirt-daemon-system", "libvirt-clients",
            "qemu-utils", QEMU, "libvirt0"} <= depends
    recommends = info["Recommends"].split(", ")
    listing = run("dpkg-deb", "-c", deb).stdout
    for path in ("./opt/kimchi/bin/kimchid", "./opt/kimchi/bin/kimchi-worker",
                 "./lib/systemd/system/kimchid.service",
                 "./lib/systemd/system/kimchi-worker@.service", "./etc/pam.d/kimchi",
                 "./usr/share/doc/kimchi/examples/kimchi.toml.example",
                 "./opt/kimchi/lib/python3.11/site-packages/kimchid/webui/index.html"):
        assert f" {path}" in listing, path
    for absent in ("site-packages/pytest/", "site-packages/playwright/", "site-packages/pip/",
                   "site-packages/mypy/"):
        assert absent not in listing, absent  # only what runs kimchi
    control = tmp_path / "control"
    run("dpkg-deb", "-e", deb, control)
    assert (control / "conffiles").read_text().split() == ["/etc/pam.d/kimchi"]
    for script in ("postinst", "prerm", "postrm"):
        assert os.access(control / script, os.X_OK), script

    # installed with apt (its dependencies are in the root already, installed by name from
    # Debian 12's archive: apt checks they satisfy the package), without systemd running
    root = debian_root
    shutil.copyfile(deb, root.path / "tmp" / deb.name)
    unsafe = ["-o", "Dpkg::Options::=--force-unsafe-io", "-o", "Dpkg::Use-Pty=0"]
    installed = root.run("apt-get", "install", "-y", "-q", "--no-install-recommends", *unsafe,
                         f"/tmp/{deb.name}", timeout=600)
    assert "systemd is not running here" in installed.stdout, installed.stdout[-2000:]
    # each recommended package is one Debian 12 has
    root.run("apt-cache", "show", *recommends)

    conf = root.path / "etc/kimchi/kimchi.toml"
    assert conf.stat().st_mode & 0o777 == 0o600
    root.run("/opt/kimchi/bin/python", "-c",
             "from kimchi import config; c = config.load('/etc/kimchi/kimchi.toml'); "
             "assert c.server.tls and c.paths.state_dir == '/var/lib/kimchi'")
    assert "kimchi-admin:" in (root.path / "etc/group").read_text()
    unit = (root.path / "lib/systemd/system/kimchid.service").read_text()
    assert "ExecStart=/opt/kimchi/bin/kimchid --config /etc/kimchi/kimchi.toml" in unit
    assert (root.path / "etc/systemd/system/multi-user.target.wants/kimchid.service").is_symlink()
    assert (root.path / "etc/pam.d/kimchi").read_bytes() == \
        (ROOT / "etc/pam.d/kimchi").read_bytes()

    # its kimchid starts there, with Debian's redis-server and a worker, serves the UI and
    # signs a user of that root in through the PAM service it installed
    user, password = "kimchiop", secrets.token_urlsafe(12)
    root.run("useradd", "--no-create-home", "--groups", "kimchi-admin", user)
    root.run("chpasswd", stdin=f"{user}:{password}\n")
    port, redirect = free_port(), free_port()
    log = tmp_path / "kimchid-in-root.log"
    daemon = root.popen("/usr/bin/kimchid", "--config", "/etc/kimchi/kimchi.toml", log=log, env={
        "KIMCHI_SERVER_HOST": "127.0.0.1", "KIMCHI_SERVER_HTTPS_PORT": str(port),
        "KIMCHI_SERVER_HTTP_PORT": str(redirect), "KIMCHI_LIBVIRT_URI": "test:///default",
        "KIMCHI_WORKERS_EMBEDDED": "1"})
    try:
        http = requests.Session()
        http.trust_env = False
        cert = root.path / "var/lib/kimchi/tls/kimchi-cert.pem"
        url = f"https://127.0.0.1:{port}"

        def healthy() -> Any:
            if daemon.poll() is not None:
                pytest.fail(f"kimchid exited {daemon.returncode}:\n{log.read_text()[-3000:]}")
            if not cert.exists():
                return None
            h = http.get(url + "/health", timeout=2, verify=str(cert))
            return h.status_code == 200 and h.json()["workers"] >= 1 and h.json()

        wait_for(healthy, timeout=60, what=f"kimchid in the Debian root ({log})")
        http.verify = str(cert)
        names = {" ".join(p.cmdline()[:2]) for p in root.processes()}
        assert any(n.startswith("/usr/bin/redis-server") for n in names), names
        page = http.get(url + "/", headers={"Accept": "text/html"}, timeout=10)
        assert page.status_code == 200 and "js/main.js" in page.text
        main_js = http.get(url + "/ui/js/main.js", timeout=10)
        assert main_js.status_code == 200
        assert main_js.content == (
            root.path / "opt/kimchi/lib/python3.11/site-packages/kimchid/webui/js/main.js"
        ).read_bytes()
        spec = http.get(url + "/openapi.json", auth=(user, password), timeout=20)
        assert spec.status_code == 200, spec.text
        assert spec.json()["info"]["version"] == VERSION
    finally:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(30)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()
    wait_for(lambda: not root.processes(), timeout=20, what="kimchid's children to end")

    # purged, it leaves no kimchi behind
    root.run("apt-get", "purge", "-y", "-q", *unsafe, "kimchi")
    for gone in ("opt/kimchi", "etc/kimchi", "var/lib/kimchi", "etc/pam.d/kimchi",
                 "usr/bin/kimchid", "lib/systemd/system/kimchid.service"):
        assert not os.path.lexists(root.path / gone), gone
    assert (root.path / "opt").is_dir()
    assert not (root.path / "etc/systemd/system/multi-user.target.wants/kimchid.service"
                ).is_symlink()
