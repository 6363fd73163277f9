"""/users and /groups: the host's accounts, to choose from when giving a VM to people
(admins only: the host's account list is nobody else's business)."""

from __future__ import annotations

import grp
import pwd
from typing import Any

from twisted.internet import threads

from kimchid.api.routes import Call, RouteTable


def uid_min(path: str = "/etc/login.defs") -> int:
    """Where people's accounts start (UID_MIN; 1000 when not said)."""
    try:
        with open(path) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 2 and parts[0] == "UID_MIN" and parts[1].isdigit():
                    return int(parts[1])
    except OSError:
        pass
    return 1000


def people() -> list[dict[str, Any]]:
    """People's accounts: from UID_MIN up, and root.  Not judged by their shell: an account
    made for kimchi alone may well have none (PAM signs it in all the same)."""
    low = uid_min()
    out = []
    for p in pwd.getpwall():
        if p.pw_uid == 65534:
            continue
        if p.pw_uid >= low or p.pw_uid == 0:
            out.append({"name": p.pw_name, "uid": p.pw_uid,
                        "full_name": p.pw_gecos.split(",", 1)[0]})
    return sorted(out, key=lambda u: u["name"])


def groups() -> list[dict[str, Any]]:
    """Groups people are in: from GID 1000 up (users' own), or with members."""
    low = uid_min()
    return sorted(({"name": g.gr_name, "gid": g.gr_gid, "members": sorted(g.gr_mem)}
                   for g in grp.getgrall() if g.gr_gid >= low and g.gr_gid != 65534
                   or g.gr_mem), key=lambda g: g["name"])


def register(table: RouteTable) -> None:
    async def list_users(call: Call) -> list[dict[str, Any]]:
        return await threads.deferToThread(people)

    async def list_groups(call: Call) -> list[dict[str, Any]]:
        return await threads.deferToThread(groups)

    table.add("/users", "GET", list_users, "The host's people",
              "auth", response={"type": "array", "items": {
                  "type": "object", "required": ["name", "uid"],
                  "properties": {"name": {"type": "string"}, "uid": {"type": "integer"},
                                 "full_name": {"type": "string"}}}},
              description="From UID_MIN (`/etc/login.defs`) up, and root: whom a VM can "
                          "be given to (`PUT /vms/<name> {users}`).")
    table.add("/groups", "GET", list_groups, "The host's groups of people", "auth",
              response={"type": "array", "items": {
                  "type": "object", "required": ["name", "gid", "members"],
                  "properties": {"name": {"type": "string"}, "gid": {"type": "integer"},
                                 "members": {"type": "array", "items": {"type": "string"}}}}})
