"""The audit log (GET /auditlog) against a real daemon, real Redis and real PAM accounts:
a create and a delete by an admin and by a user who may not, a failed login, a logout,
a 202 task whose end is recorded, the filters and pages, and who may read it.

One daemon serves the whole module (no workers: the VM is made by the daemon's own job
runner); the tests run in order on what the first ones did.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from kimchid.api.audit import summarise, target_of
from kimchid.api.routes import Route
from tests.conftest import Kimchi, RedisServer, wait_for
from tests.isofactory import make_iso


@pytest.fixture(scope="module")
def k(redis_server: RedisServer, pam_users: Any,
      tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kimchi]:
    redis_server.emptied()
    work = tmp_path_factory.mktemp("audit")
    admin = pam_users.admin
    daemon = Kimchi(work / "kimchi", redis_url=redis_server.url, workers=0,
                    auth=(admin.name, admin.password), extra={"audit": {"max_len": 100}})
    try:
        daemon.start()
        yield daemon
    finally:
        daemon.stop()


@pytest.fixture(scope="module")
def iso(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_iso(tmp_path_factory.mktemp("iso") / "fedora.iso", "Fedora-WS-Live-39-1-5")


@pytest.fixture(scope="module")
def user(k: Kimchi, pam_users: Any) -> requests.Session:
    """The non-admin, signed in as a browser is (a session cookie)."""
    s = requests.Session()
    r = s.post(k.url + "/login", json={"username": pam_users.user.name,
                                       "password": pam_users.user.password}, timeout=20)
    assert r.status_code == 200, r.text
    return s


def audit(k: Kimchi, **query: Any) -> list[dict[str, Any]]:
    r = k.get("/auditlog", params=query)
    assert r.status_code == 200, r.text
    return list(r.json())


def entry(k: Kimchi, method: str, path: str, **where: Any) -> dict[str, Any]:
    """The newest entry of ``method`` on ``path`` (and ``where``), waited for: it is
    recorded once the answer has gone out."""
    def found() -> dict[str, Any] | None:
        for e in audit(k, limit=1000):
            if e["method"] == method and e["path"] == path and all(
                    e.get(f) == v for f, v in where.items()):
                return e
        return None
    got: dict[str, Any] = wait_for(found, timeout=10, what=f"the entry of {method} {path}")
    return got


def test_an_admins_create_and_delete_and_a_users_refused_delete_are_recorded(
        k: Kimchi, iso: Path, user: requests.Session, pam_users: Any) -> None:
    admin, plain = pam_users.admin.name, pam_users.user.name
    before = time.time()
    made = k.post("/templates", {"name": "f39", "memory": {"current": 256},
                                 "source_media": {"type": "disk", "path": str(iso)}})
    assert made.status_code == 201, made.text
    wait_for(lambda: k.get("/templates/f39").json()["invalid"] == {}, what="template usable")

    e = entry(k, "POST", "/templates")
    assert (e["user"], e["address"], e["status"], e["errcode"]) == (admin, "127.0.0.1", 201,
                                                                     None)
    assert e["kind"] == "request" and e["route"] == "/templates"
    assert e["target"] == "/templates/f39"  # the answer's Location
    assert e["summary"] == {"name": "f39", "fields": ["memory", "source_media"]}
    assert before - 1 <= _epoch(e["time"]) <= time.time() + 1

    # a task: its request, then its end
    r = k.post("/vms", {"template": "f39", "name": "audited"})
    assert r.status_code == 202, r.text
    task = r.json()["id"]
    assert k.wait_task(task)["status"] == "finished"
    ended = entry(k, "POST", "/vms", kind="task.end")
    assert ended["task"] == task and ended["task_status"] == "finished"
    assert (ended["user"], ended["target"]) == (admin, "/vms/audited")
    asked = entry(k, "POST", "/vms", kind="request")
    assert (asked["status"], asked["task"], asked["target"]) == (202, task, "/vms/audited")
    assert asked["task_status"] == "finished"  # shown beside the request too
    assert asked["summary"] == {"template": "f39", "name": "audited"}
    assert _epoch(ended["time"]) >= _epoch(asked["time"])

    # the user may use the VM, not delete it: both recorded under the user's name
    assert k.http.put(k.url + "/vms/audited", json={"users": [plain]}, timeout=10).ok
    assert entry(k, "PUT", "/vms/audited")["summary"] == {"users": [plain]}
    assert user.post(k.url + "/vms/audited/start", timeout=10).status_code == 200
    refused = user.delete(k.url + "/vms/audited", timeout=10)
    assert refused.status_code == 403
    started = entry(k, "POST", "/vms/audited/start")
    assert (started["user"], started["status"], started["target"]) == (plain, 200,
                                                                       "/vms/audited")
    assert started["route"] == "/vms/<name>/start"
    e = entry(k, "DELETE", "/vms/audited", user=plain)
    assert (e["status"], e["errcode"], e["route"]) == (403, "KCHAUTH0005E", "/vms/<name>")

    assert k.post("/vms/audited/poweroff").status_code == 200
    assert k.delete("/vms/audited").status_code == 204
    e = entry(k, "DELETE", "/vms/audited", user=admin)
    assert (e["status"], e["errcode"], e["target"], e["task"]) == (204, None, "/vms/audited",
                                                                   None)
    # newest first
    listed = [x["id"] for x in audit(k)]
    assert listed.index(e["id"]) < listed.index(started["id"])

    # one line each in the daemon's log too
    wait_for(lambda: f"{admin} from 127.0.0.1: DELETE /vms/audited -> 204" in k.log_text(),
             timeout=5, what="the audit line of the delete in the log")
    assert f"{plain} from 127.0.0.1: DELETE /vms/audited -> 403 KCHAUTH0005E" in k.log_text()
    assert f"task {task} of POST /vms ended: finished" in k.log_text()


def test_logins_failed_logins_and_logouts_are_recorded_without_the_password(
        k: Kimchi, pam_users: Any) -> None:
    plain = pam_users.user
    wrong = "not-the-password-" + plain.password[:4]
    anon = requests.Session()
    bad = anon.post(k.url + "/login", json={"username": plain.name, "password": wrong},
                    timeout=20)
    assert bad.status_code == 401
    failed = entry(k, "POST", "/login", status=401)
    assert (failed["user"], failed["errcode"]) == (plain.name, "KCHAUTH0001E")
    assert failed["summary"] == {"username": plain.name, "fields": ["password"]}
    # wrong Basic credentials on any route: recorded under the name they gave
    r = requests.post(k.url + "/vms/x/start", auth=(plain.name, wrong), timeout=20)
    assert r.status_code == 401
    basic = entry(k, "POST", "/vms/x/start", status=401)
    assert (basic["user"], basic["errcode"]) == (plain.name, "KCHAUTH0001E")

    good = anon.post(k.url + "/login", json={"username": plain.name,
                                             "password": plain.password}, timeout=20)
    assert good.status_code == 200
    assert entry(k, "POST", "/login", status=200)["user"] == plain.name
    assert anon.post(k.url + "/logout", timeout=10).status_code == 204
    out = entry(k, "POST", "/logout")
    assert (out["user"], out["status"]) == (plain.name, 204)  # from the session it ended

    everything = k.get("/auditlog?limit=1000").text + k.log_text()
    for secret in (wrong, plain.password, pam_users.admin.password):
        assert secret not in everything


def test_filters_by_user_and_time_and_pages(k: Kimchi, pam_users: Any) -> None:
    plain = pam_users.user.name
    everything = audit(k, limit=1000)
    assert len(everything) >= 10
    mine = audit(k, user=plain)
    assert mine and {e["user"] for e in mine} == {plain}
    assert [e["id"] for e in mine] == [e["id"] for e in everything if e["user"] == plain]
    assert audit(k, user="nobody-at-all") == []

    # a window of time: both ends included, ISO 8601 or epoch seconds
    middle = everything[len(everything) // 2]
    at = _epoch(middle["time"])
    since = audit(k, since=middle["time"], limit=1000)
    assert since and all(_epoch(e["time"]) >= at - 0.001 for e in since)
    assert middle["id"] in [e["id"] for e in since]
    until = audit(k, until=f"{at + 0.001:.3f}", limit=1000)
    assert until and all(_epoch(e["time"]) <= at + 0.002 for e in until)
    assert len(since) + len(until) >= len(everything)
    assert audit(k, since="2000-01-01", until="2000-01-02T00:00:00+02:00") == []

    # pages: limit, then the Link to the next page, no entry twice and none missed
    seen: list[str] = []
    url = "/auditlog?limit=3"
    while url:
        r = k.get(url)
        assert r.status_code == 200 and len(r.json()) <= 3
        seen += [e["id"] for e in r.json()]
        url = r.links.get("next", {}).get("url", "")
    assert seen[:len(everything)] == [e["id"] for e in everything]
    assert len(seen) == len(set(seen))

    # bad filters: a clear 400
    r = k.get("/auditlog?since=2024-02-30")
    assert r.status_code == 400 and r.json()["errcode"] == "KCHAUDIT0001E"
    for bad in ("since=yesterday", "until=2024-13-01", "before=abc", "limit=0", "who=x"):
        r = k.get(f"/auditlog?{bad}")
        assert r.status_code == 400 and r.json()["errcode"] in ("KCHAPI0008E",), bad


def test_only_admins_read_it(k: Kimchi, user: requests.Session) -> None:
    r = user.get(k.url + "/auditlog", timeout=10)
    assert r.status_code == 403 and r.json()["errcode"] == "KCHAUTH0005E"
    assert requests.get(k.url + "/auditlog", timeout=10).status_code == 401
    spec = k.get("/openapi.json").json()["paths"]["/auditlog"]["get"]
    assert {p["name"] for p in spec["parameters"]} == {"user", "since", "until", "before",
                                                       "limit"}


def test_the_log_is_bounded(k: Kimchi, redis_server: RedisServer) -> None:
    """``[audit] max_len = 100`` here: Redis trims whole blocks of 100 entries, so the
    stream holds between 100 and 200 of the 300 changes, the newest among them."""
    for i in range(300):
        assert k.post(f"/vms/nosuch-{i}/start").status_code == 404
    wait_for(lambda: audit(k, limit=1)[0]["path"] == "/vms/nosuch-299/start",
             what="the last change recorded")
    kept = int(redis_server.client().xlen("kimchi:audit"))
    assert 100 <= kept <= 200, kept
    listed = audit(k, limit=1000)
    assert len(listed) == kept and listed[-1]["path"] != "/templates"


def test_the_summary_keeps_names_never_secrets() -> None:
    body = (b'{"name": "web", "password": "hunter2", "cloud_init": {"password": "x"}, '
            b'"url": "https://u:p@example.com/a.iso", "users": ["ann"], "token": "kch_1"}')
    got = summarise(body, "application/json", False)
    assert got == {"name": "web", "users": ["ann"],
                   "fields": ["cloud_init", "password", "token", "url"]}
    assert summarise(b"x" * 10, "application/octet-stream", True) == {"bytes": 10}
    assert summarise(b"", None, False) is None
    assert summarise(b"[1]", "application/json", False) == {"bytes": 3}


def _route(path: str, method: str = "POST") -> Route:
    async def handler(call: Any) -> None:
        return None
    return Route(path, method, handler, "", "")


def test_the_target_is_the_object_changed() -> None:
    assert target_of(_route("/vms"), "/vms", {}, {"name": "a"}) == "/vms/a"
    assert target_of(_route("/vms/<name>/start"), "/vms/a/start", {"name": "a"},
                     None) == "/vms/a"
    assert target_of(_route("/vms/<name>", "DELETE"), "/vms/a", {"name": "a"}, None) == "/vms/a"
    assert target_of(_route("/isos/scan"), "/isos/scan", {}, {"path": "/x"}) == "/isos/scan"


def _epoch(iso: str) -> float:
    from datetime import datetime
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
