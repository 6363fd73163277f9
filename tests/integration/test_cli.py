"""The ``kimchi`` command-line client against a real kimchid (HTTPS, PAM, workers, Redis).

The client runs as a process, as a user runs it: the installed console script (or
``python -m kimchi.cli`` where it is not installed), its settings from the environment
or a cli.toml, never from the tests' own HTTP client.  One daemon serves the module; the
test that restarts it comes last.
"""

from __future__ import annotations

import datetime
import json
import os
import pty
import select
import shutil
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kimchi.bus.sync import SyncBus, connect
from tests.authfixtures import PamUsers
from tests.conftest import Kimchi, RedisServer, wait_for
from tests.isofactory import make_iso

SCRIPT = Path(sys.executable).with_name("kimchi")
COMMAND = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "kimchi.cli"]
ENDED = ("task.finished", "task.failed", "task.cancelled")


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory, redis_server: RedisServer,
           pam_users: PamUsers) -> Iterator[Kimchi]:
    """kimchid over HTTPS with its own certificate, two workers, quick debug reports."""
    redis_server.emptied()
    k = Kimchi(tmp_path_factory.mktemp("cli") / "kimchi", redis_url=redis_server.url,
               auth=(pam_users.admin.name, pam_users.admin.password), tls=True,
               extra={"debugreports": {"plugins": ["host", "kernel"]}})
    k.start()
    yield k
    k.stop()


@pytest.fixture(scope="module")
def admin_token(daemon: Kimchi) -> str:
    """An API token of the admin: what most tests sign in with (PAM is tested apart)."""
    r = daemon.post("/tokens", {"name": "cli-tests"})
    assert r.status_code == 201, r.text
    return str(r.json()["token"])


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty home for the client: no cli.toml unless a test writes one."""
    return tmp_path_factory.mktemp("cli-home")


@pytest.fixture(scope="module")
def bus(redis_server: RedisServer) -> SyncBus:
    return SyncBus(connect(redis_server.url))


class Cli:
    """Runs ``kimchi`` with the daemon's URL, its CA and the admin's token in the
    environment (each overridable)."""

    def __init__(self, k: Kimchi, home: Path, token: str) -> None:
        self.k = k
        self.home = home
        assert k.auth is not None
        self.env = {k_: v for k_, v in os.environ.items()
                    if not k_.startswith(("KIMCHI_", "REQUESTS_", "CURL_", "LC_", "LANG"))}
        self.env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"),
                        KIMCHI_URL=k.url, KIMCHI_CA_FILE=str(k.cert),
                        KIMCHI_TOKEN=token, COLUMNS="200")
        self.user, self.password = k.auth

    def environment(self, **env: str | None) -> dict[str, str]:
        out = dict(self.env)
        for key, value in env.items():
            if value is None:
                out.pop(key, None)
            else:
                out[key] = value
        return out

    def __call__(self, *args: str, timeout: float = 60, **env: str | None
                 ) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*COMMAND, *args], capture_output=True, text=True,
                              timeout=timeout, env=self.environment(**env), stdin=subprocess.DEVNULL)

    def json(self, *args: str, **env: Any) -> Any:
        r = self(*args, "--json", **env)
        assert r.returncode == 0, (args, r.returncode, r.stdout, r.stderr)
        return json.loads(r.stdout)

    def popen(self, *args: str, **env: str | None) -> subprocess.Popen[str]:
        return subprocess.Popen([*COMMAND, *args], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, bufsize=1,
                                env=self.environment(**env), stdin=subprocess.DEVNULL)


@pytest.fixture
def cli(daemon: Kimchi, home: Path, admin_token: str) -> Cli:
    return Cli(daemon, home, admin_token)


def server_error(r: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The server's error, as ``--json`` prints it on stderr."""
    return dict(json.loads(r.stderr.strip().splitlines()[-1]))


# -- VMs ------------------------------------------------------------------------------


def test_vms_list_show_and_actions_change_what_the_server_shows(cli: Cli, daemon: Kimchi):
    listed = cli.json("vms", "list")
    assert [(v["name"], v["host"], v["state"]) for v in listed] == [("test", "local", "running")]
    table = cli("vms", "list")
    assert table.returncode == 0
    header, row = table.stdout.splitlines()[:2]
    assert header.split()[:3] == ["NAME", "HOST", "STATE"]
    assert row.split()[:3] == ["test", "local", "running"]

    assert cli.json("vms", "show", "test")["uuid"] == listed[0]["uuid"]
    assert cli.json("vms", "suspend", "test")["state"] == "paused"
    assert cli.json("vms", "resume", "test")["state"] == "running"
    assert cli.json("vms", "stop", "test", "--force")["state"] == "shutoff"
    assert daemon.get("/vms/test").json()["state"] == "shutoff"
    # the canonical address (--host) works the same
    assert cli.json("vms", "start", "test", "--host", "local")["state"] == "running"
    people = cli("vms", "poweroff", "test")
    assert (people.returncode, people.stdout.strip()) == (0, "test: shutoff")
    assert cli.json("vms", "list", "--state", "running") == []
    cli.json("vms", "start", "test")


def test_an_action_the_state_refuses_exits_1_with_the_servers_reason(cli: Cli):
    r = cli("vms", "resume", "test")  # running, not paused
    assert r.returncode == 1
    assert "KCHVM0010E" in r.stderr and r.stderr.startswith("kimchi: error: ")
    r = cli("--json", "vms", "resume", "test")
    assert r.returncode == 1 and r.stdout == ""
    err = server_error(r)
    assert err["errcode"] == "KCHVM0010E" and err["code"] == "400 Bad Request"
    assert err["exit_code"] == 1


def test_a_missing_vm_exits_4_with_its_errcode(cli: Cli):
    r = cli("vms", "show", "nosuchvm")
    assert r.returncode == 4, r.stderr
    assert "KCHVM0002E" in r.stderr and "nosuchvm" in r.stderr
    assert server_error(cli("--json", "vms", "show", "nosuchvm"))["errcode"] == "KCHVM0002E"
    assert cli("hosts", "show", "nosuchhost").returncode == 4


def test_templates_and_a_vm_made_waited_for_and_deleted(cli: Cli, daemon: Kimchi,
                                                        tmp_path: Path):
    iso = make_iso(tmp_path / "iso" / "fedora.iso", "Fedora-WS-Live-39-1-5")
    made = cli.json("templates", "create", "f39", "--iso", str(iso), "--memory", "1024",
                    "--cpus", "2")
    assert made["name"] == "f39" and made["source_media"]["path"] == str(iso)
    wait_for(lambda: daemon.get("/templates/f39").json()["invalid"] == {},
             what="the template's pool and network")
    assert [t["name"] for t in cli.json("templates", "list")] == ["f39"]
    assert cli.json("templates", "show", "f39")["memory"]["current"] == 1024

    task = cli.json("vms", "create", "-t", "f39", "--name", "cli-web", "--wait")
    assert (task["kind"], task["status"], task["target_uri"]) == \
        ("vm.create", "finished", "/vms/cli-web")
    vm = cli.json("vms", "show", "cli-web")
    assert (vm["state"], vm["template"], vm["cpus"]) == ("shutoff", "f39", 2)
    # without --wait: the task as it starts, then tasks wait follows it
    started = cli.json("vms", "create", "-t", "f39", "--name", "cli-web2")
    assert started["kind"] == "vm.create"
    assert cli.json("tasks", "wait", started["id"])["status"] == "finished"
    # a creation the server refuses before any task: 1 and its reason
    again = cli("vms", "create", "-t", "f39", "--name", "cli-web")
    assert again.returncode == 1 and "KCHVM0001E" in again.stderr

    assert cli.json("vms", "set", "cli-web", "--memory", "512", "--cpus", "1")["cpus"] == 1
    assert daemon.get("/vms/cli-web").json()["memory"]["current"] == 512
    for name in ("cli-web", "cli-web2"):
        assert cli("vms", "delete", name, "--yes").returncode == 0
        assert daemon.get(f"/vms/{name}").status_code == 404
    assert cli.json("templates", "clone", "f39")["name"].startswith("f39-clone")
    for t in cli.json("templates", "list"):
        assert cli("templates", "delete", t["name"]).returncode == 0
    assert daemon.get("/templates").json() == []


# -- tasks ------------------------------------------------------------------------------


def test_tasks_wait_exit_codes_follow_how_the_task_ended(cli: Cli, bus: SyncBus):
    ok = bus.submit("diag.sleep", {"seconds": 1.0, "steps": 5})
    started = time.monotonic()
    done = cli.json("tasks", "wait", ok)
    assert time.monotonic() - started >= 0.8  # it did wait
    assert done["id"] == ok and done["status"] == "finished" and done["progress"] == 100

    failing = bus.submit("diag.fail", {"error": "the disk is on fire"})
    r = cli("tasks", "wait", failing)
    assert r.returncode == 5, (r.stdout, r.stderr)
    assert "failed" in r.stderr and "the disk is on fire" in r.stderr
    r = cli("--json", "tasks", "wait", failing)
    assert r.returncode == 5 and json.loads(r.stdout)["status"] == "failed"

    long = bus.submit("diag.sleep", {"seconds": 60.0, "steps": 600})
    r = cli("tasks", "wait", long, "--timeout", "0.5")
    assert r.returncode == 7, r.stderr
    shown = cli.json("tasks", "show", long)
    assert shown["status"] == "running"
    assert long in [t["id"] for t in cli.json("tasks", "list", "--status", "running")]
    cancelled = cli.json("tasks", "cancel", long, "--wait")
    assert cancelled["status"] == "cancelled"
    assert cli("tasks", "wait", long).returncode == 5  # cancelled is no success
    assert cli("tasks", "cancel", long).returncode == 1  # it has ended: 400
    assert cli("tasks", "show", "nosuchtask").returncode == 4
    kinds = {t["kind"] for t in cli.json("tasks", "list", "--kind", "diag.sleep")}
    assert kinds == {"diag.sleep"}


def test_tasks_wait_draws_a_live_progress_bar_on_a_terminal(cli: Cli, bus: SyncBus):
    task = bus.submit("diag.sleep", {"seconds": 1.5, "steps": 6})
    main, child = pty.openpty()
    proc = subprocess.Popen([*COMMAND, "tasks", "wait", task], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=child, text=True,
                            env=cli.environment(TERM="xterm", COLUMNS="100"))
    os.close(child)
    screen = b""
    while True:
        ready, _, _ = select.select([main], [], [], 20)
        assert ready, "no output from tasks wait"
        try:
            chunk = os.read(main, 4096)
        except OSError:  # the client has gone: the terminal is closed
            break
        if not chunk:
            break
        screen += chunk
    os.close(main)
    assert proc.wait(10) == 0
    text = screen.decode(errors="replace")
    # redrawn as it went (several percentages on the way), ending at 100 %
    shown = {p for p in ("17%", "33%", "50%", "67%", "83%") if p in text}
    assert len(shown) >= 2, text
    assert "diag.sleep: step " in text and "100%" in text
    assert proc.stdout is not None and "finished" in proc.stdout.read()


# -- events -----------------------------------------------------------------------------


def test_events_without_follow_print_the_kept_events(cli: Cli, bus: SyncBus, daemon: Kimchi):
    task = bus.submit("diag.progress", {"count": 5, "every": 0.01})
    daemon.wait_task(task)
    r = cli("events", "--json", "--since", "0", "--task", task)
    assert r.returncode == 0, r.stderr
    got = [json.loads(line) for line in r.stdout.splitlines()]
    api = daemon.get(f"/events?since=0&task={task}").json()
    assert [e["id"] for e in got] == [e["id"] for e in api]
    assert got[0]["type"] == "task.created" and got[-1]["type"] == "task.finished"
    people = cli("events", "--since", "0", "--task", task, "--limit", "1")
    assert people.returncode == 0 and "task.created" in people.stdout
    assert len(people.stdout.strip().splitlines()) == 1
    assert cli("events", "--since", "yesterday").returncode == 2


def test_task_messages_follow_the_users_locale(cli: Cli, bus: SyncBus, daemon: Kimchi):
    failing = bus.submit("diag.fail", {"error": "the disk is on fire"})
    daemon.wait_task(failing)
    english = "KCHTASK0005E: Job failed: RuntimeError: the disk is on fire"
    assert cli.json("tasks", "show", failing)["message"] == english
    shown = cli.json("tasks", "show", failing, LANG="pt_BR.UTF-8")
    assert shown["message"] == "KCHTASK0005E: O job falhou: RuntimeError: the disk is on fire"
    r = cli("tasks", "wait", failing, LANG="pt_BR.UTF-8")
    assert r.returncode == 5 and "O job falhou: RuntimeError" in r.stderr, r.stderr
    # events come as the server keeps them (English, with the template): the client shows
    # them in the user's language, and prints them as they are with --json
    people = cli("events", "--since", "0", "--task", failing, LANG="zh_CN.UTF-8")
    assert people.returncode == 0 and "作业失败：RuntimeError" in people.stdout, people.stdout
    raw = cli("events", "--json", "--since", "0", "--task", failing, LANG="pt_BR.UTF-8")
    ended = [json.loads(line) for line in raw.stdout.splitlines()][-1]
    assert ended["type"] == "task.failed" and ended["data"]["message"] == english
    assert ended["data"]["errcode"] == "KCHTASK0005E"


# -- the other groups -------------------------------------------------------------------


def test_hosts_whoami_health_and_raw_api_calls(cli: Cli, pam_users: PamUsers):
    hosts = cli.json("hosts", "list")
    assert [(h["name"], h["local"], h["state"]) for h in hosts] == [("local", True,
                                                                     "connected")]
    assert cli.json("hosts", "show", "local")["uri"] == "test:///default"
    assert [h["name"] for h in cli.json("hosts")] == ["local"]  # a group alone lists
    assert "connected" in cli("hosts", "list").stdout
    me = cli.json("whoami")
    assert me["username"] == pam_users.admin.name and me["role"] == "admin"
    assert cli.json("health")["redis"] == "up"
    assert cli.json("isos", "list") == []
    assert cli("api", "GET", "/config").returncode == 0
    assert json.loads(cli("api", "get", "config").stdout)["version"]
    # into a reader that stops early (the spec is far more than a pipe holds): quietly
    piped = subprocess.run(" ".join([*COMMAND, "api", "GET", "/openapi.json"]) + " | head -n 1",
                           shell=True, capture_output=True, text=True, timeout=60,
                           env=cli.environment())
    assert (piped.stdout, piped.stderr) == ("{\n", "")
    metrics = cli("api", "GET", "/metrics")  # not JSON: printed as it came
    assert metrics.returncode == 0 and "# TYPE " in metrics.stdout
    refused = cli("hosts", "add", "h2", "test+unix:///default?socket=/nonexistent")
    assert refused.returncode == 1 and "KCHHOST0004E" in refused.stderr


def test_scan_waits_and_lists_what_it_found(cli: Cli, tmp_path: Path):
    root = tmp_path / "isos"
    make_iso(root / "fedora" / "Fedora-39.iso", "Fedora-WS-Live-39-1-5")
    make_iso(root / "deep" / "a" / "debian-12.iso", "Debian 12.2.0 amd64 n")
    task = cli.json("scan", str(root), "--wait")
    assert task["kind"] == "iso.scan" and task["status"] == "finished"
    found = {i["path"] for i in cli.json("isos", "list") if i["found_by"] == "scan"}
    assert found == {str(root / "fedora" / "Fedora-39.iso"),
                     str(root / "deep" / "a" / "debian-12.iso")}
    people = cli("scan", str(root), "--wait")
    assert people.returncode == 0 and "debian-12.iso" in people.stdout
    missing = cli("scan", str(root / "nothere"), "--wait")
    assert missing.returncode in (1, 5) and "nothere" in missing.stderr


def test_debugreport_download_fetches_the_archive(cli: Cli, tmp_path: Path):
    if not shutil.which("sos"):
        pytest.fail("sos is not installed (.ci/run installs it)")
    r = cli("--json", "debugreport", "--download", str(tmp_path), "-q", timeout=180)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    path = Path(got["path"])
    assert path.parent == tmp_path and path.stat().st_size == got["bytes"] == got["size"]
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    with tarfile.open(path) as archive:
        assert any("sos_commands" in n for n in archive.getnames())
    listed = cli.json("debugreport", "list")
    assert got["name"] in [x["name"] for x in listed]
    again = tmp_path / "copy.tar"
    assert cli("debugreport", "download", got["name"], "-o", str(again)).returncode == 0
    assert again.read_bytes() == path.read_bytes()
    assert cli("debugreport", "delete", got["name"]).returncode == 0
    assert cli("debugreport", "download", got["name"]).returncode == 4


# -- credentials and settings -----------------------------------------------------------


def test_a_linux_account_signs_in_and_bad_or_missing_credentials_exit_3(cli: Cli):
    me = cli.json("whoami", KIMCHI_TOKEN=None, KIMCHI_USER=cli.user,
                  KIMCHI_PASSWORD=cli.password)
    assert (me["username"], me["role"]) == (cli.user, "admin")
    r = cli("--user", cli.user, "--password", "wrong-password", "vms", "list",
            KIMCHI_TOKEN=None)
    assert r.returncode == 3 and "KCHAUTH0001E" in r.stderr
    r = cli("vms", "list", KIMCHI_TOKEN=None)
    assert r.returncode == 3, r.stderr
    r = cli("vms", "list", KIMCHI_TOKEN=None, KIMCHI_USER=cli.user)  # no terminal to ask on
    assert r.returncode == 3 and "no password" in r.stderr
    r = cli("vms", "list", KIMCHI_TOKEN="kch_" + "x" * 43)
    assert r.returncode == 3, r.stderr


def test_a_token_from_tokens_create_signs_in(cli: Cli, pam_users: PamUsers):
    made = cli.json("tokens", "create", "cli-test", "--for", pam_users.user.name)
    secret = made["token"]
    me = cli.json("whoami", KIMCHI_TOKEN=secret)
    assert me["username"] == pam_users.user.name and me["role"] == "user"
    # a user is not an admin: 403 is exit 3 too
    r = cli("tokens", "list", KIMCHI_TOKEN=secret)
    assert r.returncode == 3, r.stderr
    assert cli("tokens", "revoke", made["id"]).returncode == 0
    assert cli("whoami", KIMCHI_TOKEN=secret).returncode == 3
    # the audit log shows both changes, made by the admin from this machine
    entries = cli.json("audit", "--user", cli.user, "--limit", "20")
    seen = {(e["method"], e["path"], e["status"]) for e in entries}
    assert {("POST", "/tokens", 201), ("DELETE", f"/tokens/{made['id']}", 204)} <= seen
    assert cli("audit", "--since", "yesterday").returncode == 1  # the server's 400


def test_settings_come_from_cli_toml_under_xdg_config_home(cli: Cli, daemon: Kimchi,
                                                          tmp_path: Path):
    assert daemon.auth is not None
    folder = tmp_path / "xdg" / "kimchi"
    folder.mkdir(parents=True)
    config = folder / "cli.toml"
    config.write_text(f'url = "https://nowhere.invalid:1"\n'
                      f'[profiles.lab]\nurl = "{daemon.url}"\nca_file = "{daemon.cert}"\n'
                      f'user = "{daemon.auth[0]}"\npassword = "{daemon.auth[1]}"\n')
    config.chmod(0o600)
    bare: dict[str, Any] = dict(KIMCHI_URL=None, KIMCHI_CA_FILE=None, KIMCHI_TOKEN=None,
                XDG_CONFIG_HOME=str(tmp_path / "xdg"))
    me = cli.json("--profile", "lab", "whoami", **bare)
    assert me["username"] == daemon.auth[0]
    # the top level alone: its unreachable URL is exit 6; the environment wins over it
    assert cli("whoami", **bare).returncode == 6
    assert cli.json("whoami", **{**bare, "KIMCHI_PROFILE": "lab"})["role"] == "admin"
    config.chmod(0o644)
    r = cli("--profile", "lab", "whoami", **bare)
    assert r.returncode == 0 and "chmod 600" in r.stderr  # a secret others may read
    config.write_text(config.read_text() + "colour = 1\n")
    r = cli("--profile", "lab", "whoami", **bare)
    assert r.returncode == 2 and "colour" in r.stderr


def test_the_servers_certificate_is_verified(cli: Cli, daemon: Kimchi, tmp_path: Path):
    other_ca = tmp_path / "other-ca.pem"
    other_ca.write_bytes(_self_signed_pem("not-kimchi"))
    r = cli("vms", "list", KIMCHI_CA_FILE=str(other_ca))
    assert r.returncode == 6 and "certificate" in r.stderr and "--ca-file" in r.stderr
    r = cli("vms", "list", KIMCHI_CA_FILE=None)  # the system's CAs do not know it either
    assert r.returncode == 6 and "certificate" in r.stderr
    # the right CA, given as a flag
    r = cli("--ca-file", str(daemon.cert), "vms", "list", KIMCHI_CA_FILE=str(other_ca))
    assert r.returncode == 0, r.stderr


def _self_signed_pem(name: str) -> bytes:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM)


def test_usage_errors_exit_2_and_help_is_everywhere(cli: Cli):
    assert cli("vms", "show").returncode == 2
    assert cli("vms", "frobnicate", "x").returncode == 2
    assert cli("tasks", "list", "--status", "sleeping").returncode == 2
    for args in (["--help"], ["vms", "--help"], ["vms", "create", "--help"],
                 ["tasks", "wait", "-h"], ["events", "--help"], ["debugreport", "--help"]):
        r = cli(*args)
        assert r.returncode == 0 and "Usage: kimchi" in r.stdout, args


def test_shell_completion_completes_commands_and_vm_names(cli: Cli):
    script = cli("completion", "bash")
    assert script.returncode == 0 and "_KIMCHI_COMPLETE" in script.stdout
    words = cli(_KIMCHI_COMPLETE="bash_complete", COMP_WORDS="kimchi vms st", COMP_CWORD="2")
    assert {"plain,start", "plain,stop"} <= set(words.stdout.split())
    names = cli(_KIMCHI_COMPLETE="bash_complete", COMP_WORDS="kimchi vms show te",
                COMP_CWORD="3")
    assert names.stdout.split() == ["plain,test"], names.stderr


# -- last: the daemon restarts -------------------------------------------------------


def _read_lines(proc: subprocess.Popen[str], into: list[str]) -> threading.Thread:
    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            into.append(line)

    t = threading.Thread(target=pump, daemon=True)
    t.start()
    return t


def test_events_follow_resumes_across_a_daemon_restart_with_no_gap_or_duplicate(
        cli: Cli, daemon: Kimchi, bus: SyncBus):
    cursor = daemon.get("/tasks").headers["Events-Cursor"]
    follower = cli.popen("events", "--follow", "--json", "--types", "task.*",
                         "--since", cursor)
    lines: list[str] = []
    _read_lines(follower, lines)

    def ended(task_id: str) -> bool:
        return any(e["type"] in ENDED and e["data"].get("id") == task_id
                   for e in (json.loads(x) for x in list(lines)))

    try:
        before = bus.submit("diag.progress", {"count": 20, "every": 0.01})
        wait_for(lambda: ended(before), timeout=30, what="the first task's end, followed")
        # a task running when the daemon stops: its events go on while the daemon is
        # down and after it is back (its worker is the daemon's, stopped with it, and the
        # task is taken over by the next one)
        during = bus.submit("diag.progress", {"count": 200, "every": 0.01})
        wait_for(lambda: any(json.loads(x)["type"] == "task.progress" and
                             json.loads(x)["data"].get("id") == during for x in list(lines)),
                 what="the second task under way")
        daemon.stop()
        while_down = bus.submit("diag.progress", {"count": 5, "every": 0.01})
        daemon.start()
        after = bus.submit("diag.progress", {"count": 5, "every": 0.01})
        for task_id in (during, while_down, after):
            wait_for(lambda task_id=task_id: ended(task_id), timeout=60,
                     what=f"task {task_id}'s end, followed across the restart")
    finally:
        follower.terminate()
        follower.wait(10)
    assert follower.stderr is not None
    assert "resuming after" in follower.stderr.read()  # the connection was lost, and resumed
    got = [json.loads(x)["id"] for x in lines]
    kept = [e["id"] for e in bus.events(cursor, count=100_000)
            if e["type"].startswith("task.")]
    assert got == kept[:len(got)]  # every event once, in order: no gap, no duplicate
    assert len(got) == len(set(got))
    assert {e["data"].get("id") for e in bus.events(cursor, count=100_000)
            if e["type"] == "task.created"} >= {before, during, while_down, after}
