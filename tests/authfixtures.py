"""Real Linux accounts for the login tests: a user and an admin that PAM really checks.

The ``pam_users`` fixture (one per test session) creates two accounts with random
passwords (``useradd``, ``chpasswd``), the admin in ``kimchi-admin``, installs the
package's PAM service file as ``/etc/pam.d/kimchi`` when there is none, and removes all
it created at the end.  The suite runs as root.  Plug it in with
``from tests.authfixtures import pam_users``.
"""

from __future__ import annotations

import grp
import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

PAM_SOURCE = ROOT / "etc" / "pam.d" / "kimchi"
PAM_TARGET = Path("/etc/pam.d/kimchi")
ADMIN_GROUP = "kimchi-admin"


@dataclass(frozen=True)
class PamUser:
    name: str
    password: str


@dataclass(frozen=True)
class PamUsers:
    user: PamUser  # in no admin group
    admin: PamUser  # in kimchi-admin
    service: str  # the PAM service to check them with
    admin_group: str


def _run(*cmd: str, stdin: str | None = None) -> None:
    binary = shutil.which(cmd[0]) or f"/usr/sbin/{cmd[0]}"
    r = subprocess.run([binary, *cmd[1:]], input=stdin, text=True, capture_output=True,
                       timeout=30)
    assert r.returncode == 0, f"{' '.join(cmd)}: {r.stderr.strip()}"


def _group_exists(name: str) -> bool:
    try:
        grp.getgrnam(name)
        return True
    except KeyError:
        return False


@pytest.fixture(scope="session")
def pam_users() -> Iterator[PamUsers]:
    if os.geteuid() != 0:
        pytest.fail("the PAM tests create Linux accounts: run the suite as root")
    if not PAM_TARGET.exists():
        shutil.copyfile(PAM_SOURCE, PAM_TARGET)
        PAM_TARGET.chmod(0o644)
    if not _group_exists(ADMIN_GROUP):
        _run("groupadd", ADMIN_GROUP)
    # the pid keeps a parallel or half-cleaned earlier run from colliding with this one
    tag = f"{os.getpid()}{secrets.token_hex(2)}"  # a killed earlier run may have left its own
    user = PamUser(f"kctest{tag}", secrets.token_urlsafe(12))
    admin = PamUser(f"kcadmin{tag}", secrets.token_urlsafe(12))
    made: list[str] = []
    try:
        for who, extra in ((user, []), (admin, ["-G", ADMIN_GROUP])):
            _run("useradd", "--no-create-home", "--shell", "/usr/sbin/nologin",
                 "--user-group", *extra, who.name)
            made.append(who.name)
        _run("chpasswd", stdin="".join(f"{u.name}:{u.password}\n" for u in (user, admin)))
        yield PamUsers(user, admin, "kimchi", ADMIN_GROUP)
    finally:
        for name in made:
            _run("userdel", "--force", name)
            if _group_exists(name):  # userdel keeps it when USERGROUPS_ENAB is off
                _run("groupdel", name)
        # The group and the PAM file stay: the package installs both anyway, and another
        # test session running at the same time may be using them.
