"""/users and /groups: the host's people and their groups, for the access dialog."""

from __future__ import annotations

import grp
import pwd
from typing import Any

import requests

from tests.conftest import Kimchi


def test_the_hosts_people_and_groups(kimchi: Kimchi, pam_users: Any) -> None:
    users = {u["name"]: u for u in kimchi.get("/users").json()}
    # the test's own accounts are people (with no shell: kimchi needs none); system
    # accounts are not
    assert pam_users.user.name in users and pam_users.admin.name in users
    assert users[pam_users.user.name]["uid"] == pwd.getpwnam(pam_users.user.name).pw_uid
    assert "nobody" not in users and "daemon" not in users and "root" in users
    groups = {g["name"]: g for g in kimchi.get("/groups").json()}
    assert pam_users.admin.name in groups["kimchi-admin"]["members"]
    assert groups["kimchi-admin"]["gid"] == grp.getgrnam("kimchi-admin").gr_gid
    # not for users to read
    r = requests.get(kimchi.url + "/users", timeout=20,
                     auth=(pam_users.user.name, pam_users.user.password))
    assert r.status_code == 403
