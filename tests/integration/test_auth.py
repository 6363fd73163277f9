"""Login, roles, tokens and cross-site rules, against a real daemon and real PAM accounts."""

from __future__ import annotations

import base64
import json
import os
import re
import threading
import time

import pytest
import requests
import websocket

from tests.conftest import Kimchi, wait_for

# what anyone may reach without signing in: the login page (the UI), its files, /health,
# the UI's words in a language (the login page is translated too)
PUBLIC = {("GET", "/"), ("GET", "/ui/<path:asset>"), ("GET", "/health"), ("POST", "/login"),
          ("POST", "/logout"), ("GET", "/i18n"), ("GET", "/i18n/<lang>.json")}


@pytest.fixture
def k(kimchi_factory, redis_db) -> Kimchi:
    return kimchi_factory(redis_url=redis_db.url)


def _concrete(path: str) -> str:
    return re.sub(r"<(?:path:)?(\w+)>", lambda m: {"asset": "js/main.js"}.get(m.group(1), "x"),
                  path)


def test_every_route_but_the_public_ones_needs_a_login(k: Kimchi):
    spec = k.get("/openapi.json").json()
    routes = []
    for path, ops in spec["paths"].items():
        for method in ops:
            routes.append((method.upper(), path))
    assert len(routes) > 30
    anon = requests.Session()
    for method, path in routes:
        pattern = path.replace("{asset}", "<path:asset>").replace("{", "<").replace("}", ">")
        url = k.url + _concrete(pattern)
        r = anon.request(method, url, json={} if method in ("POST", "PUT") else None,
                         headers={"Accept": "application/json"}, timeout=10)
        if (method, pattern) in PUBLIC:
            assert r.status_code != 401, (method, path)
            continue
        assert r.status_code == 401, (method, path, r.status_code, r.text)
        assert r.json()["errcode"] == "KCHAUTH0002E"
        assert r.headers["WWW-Authenticate"].startswith("Basic realm=")
    # the page's own scripts never get the browser's Basic dialog
    r = anon.get(k.url + "/vms", headers={"X-Requested-With": "XMLHttpRequest"})
    assert r.status_code == 401 and "WWW-Authenticate" not in r.headers
    # nor the event stream, in any of its forms
    with pytest.raises(websocket.WebSocketBadStatusException) as e:
        websocket.create_connection(f"{k.ws_url}/events", timeout=10)
    assert e.value.status_code == 401
    r = anon.get(k.url + "/events", headers={"Accept": "text/event-stream"}, timeout=10)
    assert r.status_code == 401


def test_login_sets_a_strict_cookie_that_logout_ends(k: Kimchi, pam_users):
    s = requests.Session()
    bad = s.post(k.url + "/login", json={"username": pam_users.user.name, "password": "nope"})
    assert bad.status_code == 401 and bad.json()["errcode"] == "KCHAUTH0001E"
    r = s.post(k.url + "/login", json={"username": pam_users.user.name,
                                       "password": pam_users.user.password})
    assert r.status_code == 200, r.text
    assert r.json() == {"username": pam_users.user.name, "role": "user",
                        "groups": r.json()["groups"], "language": None}
    cookie = r.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie  # plain HTTP here (tls = false); see the TLS test
    assert re.match(r"\d{4}-\d\d-\d\dT", r.headers["Session-Expires-On"])
    me = s.get(k.url + "/session")
    assert me.json()["username"] == pam_users.user.name and "Session-Expires-On" in me.headers
    admin = requests.post(k.url + "/login", json={"username": pam_users.admin.name,
                                                  "password": pam_users.admin.password})
    assert admin.json()["role"] == "admin" and "kimchi-admin" in admin.json()["groups"]
    old = str(s.cookies["kimchi_session"])
    assert s.post(k.url + "/logout").status_code == 204
    r = requests.get(k.url + "/session", cookies={"kimchi_session": old})
    assert r.status_code == 401 and r.json()["errcode"] == "KCHAUTH0003E"
    # security headers on every answer, errors included
    for resp in (r, me):
        assert "frame-ancestors 'none'" in resp.headers["Content-Security-Policy"]
        assert resp.headers["X-Frame-Options"] == "DENY"
        assert resp.headers["X-Content-Type-Options"] == "nosniff"


def test_users_see_and_operate_only_their_vms(k: Kimchi, pam_users, tmp_path):
    from tests.isofactory import make_iso

    iso = make_iso(tmp_path / "f.iso", "Fedora-WS-Live-39-1-5")
    assert k.post("/templates", {"name": "t", "source_media": {
        "type": "disk", "path": str(iso)}}).status_code == 201
    wait_for(lambda: k.get("/templates/t").json()["invalid"] == {}, what="a valid template")
    for name in ("mine", "theirs"):
        task = k.post("/vms", {"template": "t", "name": name}).json()
        assert k.wait_task(task["id"])["status"] == "finished"
    r = k.http.put(k.url + "/vms/mine", json={"users": [pam_users.user.name]})
    assert r.status_code == 200, r.text
    user = requests.Session()
    user.auth = (pam_users.user.name, pam_users.user.password)
    basic = base64.b64encode(f"{pam_users.user.name}:{pam_users.user.password}".encode())
    ws = websocket.create_connection(f"{k.ws_url}/events?types=vm.*,task.*", timeout=10,
                                     header=[f"Authorization: Basic {basic.decode()}"])
    try:
        names = [v["name"] for v in user.get(k.url + "/vms").json()]
        assert names == ["mine"]
        assert user.get(k.url + "/vms/theirs").status_code == 403
        assert user.get(k.url + "/vms/theirs").json()["errcode"] == "KCHAUTH0006E"
        assert user.post(k.url + "/vms/theirs/start").status_code == 403
        assert user.get(k.url + "/vms/theirs/screenshot").status_code == 403
        assert user.post(k.url + "/vms/mine/start").json()["state"] == "running"
        # admin-only methods
        for method, path, body in (("POST", "/vms", {"template": "t"}),
                                   ("DELETE", "/vms/mine", None),
                                   ("POST", "/templates", {"name": "x", "cdrom": str(iso)}),
                                   ("DELETE", "/templates/t", None),
                                   ("POST", "/isos/scan", {"path": str(tmp_path)}),
                                   ("POST", "/tokens", {"name": "x"})):
            r = user.request(method, k.url + path, json=body)
            assert r.status_code == 403 and r.json()["errcode"] == "KCHAUTH0005E", (path, r.text)
        # the admin's tasks on other VMs are not theirs to see
        tasks = user.get(k.url + "/tasks").json()
        assert {t["target_uri"] for t in tasks} == {"/vms/mine"}
        theirs = [t for t in k.get("/tasks").json() if t["target_uri"] == "/vms/theirs"][0]
        assert user.get(k.url + f"/tasks/{theirs['id']}").status_code == 403
        assert user.delete(k.url + f"/tasks/{theirs['id']}").status_code == 403
        # events: theirs is invisible, mine is not
        k.post("/vms/theirs/start")
        user.post(k.url + "/vms/mine/poweroff")
        seen = []
        while True:
            ev = json.loads(ws.recv())
            seen.append((ev["type"], ev["data"].get("name")))
            if ev["type"] == "vm.state" and ev["data"]["state"] == "shutoff":
                break
        assert all(name != "theirs" for _t, name in seen), seen
        page = user.get(k.url + "/events?since=0").json()
        assert not [e for e in page if (e["data"] or {}).get("name") == "theirs"]
        assert [e for e in page if (e["data"] or {}).get("name") == "mine"]
        # task events too: those about their VM, none about the admin's other one
        about = {e["data"].get("target_uri") for e in page if e["type"].startswith("task.")
                 and isinstance(e["data"], dict) and e["data"].get("target_uri")}
        assert about == {"/vms/mine"}, about
        # debug reports are the admins': not even their names reach a user
        reports = k.dir / "state" / "debugreports"
        reports.mkdir(mode=0o700, exist_ok=True)
        (reports / "by-hand.tar.xz").write_bytes(b"\xfd7zXZ\x00")
        assert k.http.put(k.url + "/debugreports/by-hand", json={"name": "renamed"},
                          allow_redirects=False).status_code == 303
        assert [e["data"]["name"] for e in k.get("/events?since=0&types=debugreport.*").json()
                ] == ["renamed"]
        assert user.get(k.url + "/events?since=0&types=debugreport.*").json() == []
        assert user.get(k.url + "/debugreports").status_code == 403
        # the host is for everyone to look at
        assert user.get(k.url + "/host").json()["cpus"]["online"] == os.cpu_count()
    finally:
        ws.close()


def test_api_tokens_are_shown_once_work_and_can_be_revoked(k: Kimchi, pam_users):
    r = k.post("/tokens", {"name": "ci", "username": pam_users.user.name, "expires_in": 3600})
    assert r.status_code == 201, r.text
    token = r.json()
    secret = token.pop("token")
    assert token["username"] == pam_users.user.name and token["expires"]
    listed = k.get("/tokens").json()
    assert [t["id"] for t in listed] == [token["id"]]
    assert secret not in json.dumps(listed)
    bearer = {"Authorization": f"Bearer {secret}"}
    me = requests.get(k.url + "/session", headers=bearer)
    assert me.status_code == 200 and me.json()["role"] == "user"
    # a token is not a browser credential: no Origin check applies to it
    r = requests.post(k.url + "/vms/test/poweroff", headers={**bearer, "Origin": "http://evil"})
    assert r.status_code == 403 and r.json()["errcode"] == "KCHAUTH0006E"  # not their VM
    assert k.post("/tokens", {"name": "x", "username": "no-such-user-kc"}).json()[
        "errcode"] == "KCHAUTH0012E"
    assert k.delete(f"/tokens/{token['id']}").status_code == 204
    r = requests.get(k.url + "/session", headers=bearer)
    assert r.status_code == 401 and r.json()["errcode"] == "KCHAUTH0004E"


def test_cross_site_requests_riding_on_the_cookie_are_refused(k: Kimchi):
    cookie = {"kimchi_session": k.login_cookie()}
    evil = {"Origin": "http://evil.example"}
    r = requests.post(k.url + "/vms/test/poweroff", cookies=cookie, headers=evil)
    assert r.status_code == 403 and r.json()["errcode"] == "KCHAUTH0007E"
    assert k.get("/vms/test").json()["state"] == "running"  # nothing happened
    same = {"Origin": k.url}
    assert requests.post(k.url + "/vms/test/suspend", cookies=cookie,
                         headers=same).status_code == 200
    # a read is fine from anywhere (the browser will not let the other site see it)
    assert requests.get(k.url + "/vms", cookies=cookie, headers=evil).status_code == 200
    # WebSocket: the session and our own origin are both needed
    hdr = [f"Cookie: kimchi_session={cookie['kimchi_session']}"]
    with pytest.raises(websocket.WebSocketBadStatusException) as e:
        websocket.create_connection(f"{k.ws_url}/events", timeout=10, header=hdr,
                                    origin="http://evil.example")
    assert e.value.status_code == 403
    ws = websocket.create_connection(f"{k.ws_url}/events?since=0", timeout=10, header=hdr,
                                     origin=k.url)
    assert json.loads(ws.recv())["id"]
    ws.close()
    # and login itself cannot be done from another site (login CSRF)
    r = requests.post(k.url + "/login", json={"username": "a", "password": "b"}, headers=evil)
    assert r.status_code == 403


def test_failed_logins_are_throttled_without_slowing_anyone_else(k: Kimchi, pam_users):
    name = pam_users.user.name
    got: list[tuple[int, float]] = []

    def guess(i: int) -> None:
        t0 = time.monotonic()
        # each a different guess: the same one sent at once is one check (and one failure)
        r = requests.post(k.url + "/login", json={"username": name, "password": f"wrong{i}"},
                          timeout=30)
        got.append((r.status_code, time.monotonic() - t0))
        if r.status_code == 429:
            assert r.json()["errcode"] == "KCHAUTH0008E"
            waits.append(int(r.headers["Retry-After"]))

    waits: list[int] = []
    guesses = [threading.Thread(target=guess, args=(i,)) for i in range(8)]  # guessing fast
    for t in guesses:
        t.start()
    for t in guesses:
        t.join()
    codes = sorted(code for code, _s in got)
    assert codes == [401] * 5 + [429] * 3, codes  # 5 free attempts, then waits
    assert max(s for code, s in got if code == 429) < 1.0  # refused at once, no PAM
    assert min(waits) >= 1
    # once the wait is over, the right password gets in (and clears the count)
    time.sleep(max(waits))
    r = requests.post(k.url + "/login", json={"username": name,
                                              "password": pam_users.user.password})
    assert r.status_code == 200, r.text
    start = time.monotonic()
    assert requests.get(k.url + "/health").status_code == 200
    assert time.monotonic() - start < 1.0


def test_a_flood_of_bad_logins_never_stalls_other_requests(kimchi_factory, redis_db, pam_users):
    k = kimchi_factory(redis_url=redis_db.url, extra={"auth": {"throttle_free_attempts": 1000}})
    results: list[tuple[int, float]] = []

    def bad_login(i: int) -> None:
        t0 = time.monotonic()
        r = requests.post(k.url + "/login", json={"username": pam_users.user.name,
                                                  "password": f"wrong{i}"}, timeout=60)
        results.append((r.status_code, time.monotonic() - t0))

    threads = [threading.Thread(target=bad_login, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    health: list[float] = []
    while any(t.is_alive() for t in threads):
        t0 = time.monotonic()
        assert requests.get(k.url + "/health", timeout=10).status_code == 200
        health.append(time.monotonic() - t0)
        time.sleep(0.05)
    for t in threads:
        t.join()
    assert sorted({code for code, _ in results}) == [401]
    slowest_login = max(s for _c, s in results)
    assert slowest_login > 2.0  # PAM's failure delay really happened, on its own threads
    assert len(health) >= 10 and max(health) < 0.5, (max(health), slowest_login)


def test_https_by_default_with_a_certificate_of_its_own(kimchi_factory, redis_db, pam_users):
    import socket
    import ssl

    from tests.conftest import free_port

    https_port = free_port()
    k = kimchi_factory(redis_url=redis_db.url,
                       extra={"server": {"tls": True, "https_port": https_port}})
    cert = k.dir / "state" / "tls"
    files = sorted(p.name for p in cert.iterdir())
    assert len(files) == 2 and oct((cert / [f for f in files if "key" in f][0]).stat().st_mode
                                   & 0o777) == "0o600"
    ctx = ssl.create_default_context(cafile=str(cert / [f for f in files if "key" not in f][0]))
    with socket.create_connection(("127.0.0.1", https_port)) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
            assert tls.version() in ("TLSv1.2", "TLSv1.3")
            assert tls.getpeercert()["subjectAltName"]
    base = f"https://localhost:{https_port}"
    s = requests.Session()
    ca = str(cert / [f for f in files if "key" not in f][0])  # per call: env CA bundles win
    r = s.post(base + "/login", verify=ca, json={"username": pam_users.admin.name,
                                                 "password": pam_users.admin.password})
    assert r.status_code == 200, r.text
    assert "Secure" in r.headers["Set-Cookie"]
    assert r.headers["Strict-Transport-Security"].startswith("max-age=")
    assert s.get(base + "/vms", verify=ca).status_code == 200
    # the plain port sends everyone to HTTPS (and serves nothing else but /health, /ui)
    r = requests.get(k.url + "/vms?state=running", allow_redirects=False)
    assert r.status_code == 301
    assert r.headers["Location"] == f"https://127.0.0.1:{https_port}/vms?state=running"
    r = requests.post(k.url + "/login", json={}, allow_redirects=False)
    assert r.status_code == 308
    assert requests.get(k.url + "/health").status_code == 200


def test_daemons_sharing_a_redis_share_sessions(kimchi_factory, redis_db, pam_users):
    a = kimchi_factory("a", redis_url=redis_db.url)
    b = kimchi_factory("b", redis_url=redis_db.url)
    cookie = {"kimchi_session": a.login_cookie()}
    r = requests.get(b.url + "/session", cookies=cookie)  # behind one address, either answers
    assert r.status_code == 200 and r.json()["username"] == pam_users.admin.name
    assert requests.post(b.url + "/logout", cookies=cookie).status_code == 204
    assert requests.get(a.url + "/session", cookies=cookie).status_code == 401


@pytest.mark.parametrize("authorization, errcode", [
    ("Basic !!!", "KCHAUTH0001E"),  # not base64
    ("Basic " + base64.b64encode(b"no-colon").decode(), "KCHAUTH0001E"),
    ("Bearer", "KCHAUTH0004E"),  # no token
    ("Foo x", "KCHAUTH0002E"),  # a scheme we do not take
])
def test_a_malformed_authorization_header_is_refused_even_with_a_cookie(
        k: Kimchi, pam_users, authorization: str, errcode: str):
    s = requests.Session()
    r = s.post(k.url + "/login", json={"username": pam_users.admin.name,
                                       "password": pam_users.admin.password})
    assert r.status_code == 200, r.text
    assert s.get(k.url + "/vms").status_code == 200  # the cookie alone
    r = s.get(k.url + "/vms", headers={"Authorization": authorization})
    assert r.status_code == 401, (r.status_code, r.text)
    assert r.json()["errcode"] == errcode
    assert s.get(k.url + "/vms").status_code == 200  # the session is still good
