"""API conventions on every route: JSON errors with stable codes for every kind of bad input."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from kimchi.bus.sync import SyncBus, connect
from tests.conftest import Kimchi, wait_for

ERRCODE = re.compile(r"^KCH[A-Z]+[0-9]{4}[EW]$")


def _assert_error(r, status: int, errcode: str | None = None) -> dict:
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["Content-Type"].startswith("application/json")
    body = r.json()
    assert set(body) == {"code", "reason", "errcode"}
    assert body["code"].startswith(str(status))
    assert ERRCODE.match(body["errcode"])
    assert body["reason"].startswith(body["errcode"] + ": ")
    if errcode:
        assert body["errcode"] == errcode, body
    return body


@pytest.fixture
def routes(kimchi: Kimchi) -> list[tuple[str, str, dict]]:
    spec = kimchi.get("/openapi.json").json()
    out = []
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            schemas = {p["name"]: p["schema"] for p in op["parameters"] if p["in"] == "path"}

            def value(m: re.Match[str], schemas: dict = schemas) -> str:
                # a name that looks like a file, where the parameter's schema admits one
                for v in ("0" * 32 if m[1] == "id" else "x.css", "x1"):
                    if Draft202012Validator(schemas[m[1]]).is_valid(v):
                        return v
                raise AssertionError(f"no value for {m[1]}")

            out.append((method.upper(), re.sub(r"\{(\w+)\}", value, path), path))
    return out


def test_every_route_answers_bad_input_with_a_json_error(kimchi: Kimchi, routes):
    assert len(routes) >= 8
    paths = kimchi.get("/openapi.json").json()["paths"]
    for method, path, spec_path in routes:
        # an Accept header that admits nothing we serve
        _assert_error(kimchi.http.request(method, kimchi.url + path,
                                          headers={"Accept": "application/x-nothing"}), 406, "KCHAPI0003E")
        # a query parameter the route does not know
        _assert_error(kimchi.http.request(method, kimchi.url + path + "?nonsense=1"), 400,
                      "KCHAPI0008E")
        body = paths[spec_path][method.lower()].get("requestBody") or {}
        if "application/octet-stream" in body.get("content", {}):  # bytes, not JSON
            for ctype in ("application/x-www-form-urlencoded", "application/json"):
                _assert_error(kimchi.http.request(method, kimchi.url + path, data="{}",
                              headers={"Content-Type": ctype}), 415, "KCHAPI0014E")
        elif method in ("POST", "PUT"):
            _assert_error(kimchi.http.request(method, kimchi.url + path, data="path=/x",
                          headers={"Content-Type": "application/x-www-form-urlencoded"}),
                          415, "KCHAPI0004E")
            _assert_error(kimchi.http.request(method, kimchi.url + path, data="{not json",
                          headers={"Content-Type": "application/json"}), 400, "KCHAPI0005E")
            _assert_error(kimchi.http.request(method, kimchi.url + path, json=[1, 2]), 400,
                          "KCHAPI0006E")
            _assert_error(kimchi.http.request(method, kimchi.url + path,
                                              json={"surely_unknown": 1}), 400)
        # a method the path does not have
        other = next(m for m in ("PATCH", "PUT", "DELETE", "POST")
                     if m.lower() not in paths[spec_path])
        r = kimchi.http.request(other, kimchi.url + path)
        _assert_error(r, 405, "KCHAPI0002E")
    _assert_error(kimchi.get("/no/such/thing"), 404, "KCHAPI0001E")


@pytest.mark.parametrize("path, errcode", [
    ("relative/dir", "KCHISO0001E"),
    ("", None),
    ("/does/not/exist", "KCHISO0002E"),
    ("/proc", "KCHISO0004E"),
    ("/sys/kernel", "KCHISO0004E"),
])
def test_scan_path_is_validated(kimchi: Kimchi, path: str, errcode: str | None):
    _assert_error(kimchi.post("/isos/scan", {"path": path}), 400, errcode)


def test_scan_of_a_file_or_missing_field_or_wrong_type(kimchi: Kimchi, tmp_path: Path):
    f = tmp_path / "file.txt"
    f.write_text("x")
    _assert_error(kimchi.post("/isos/scan", {"path": str(f)}), 400, "KCHISO0002E")
    _assert_error(kimchi.post("/isos/scan", {}), 400, "KCHAPI0006E")
    _assert_error(kimchi.post("/isos/scan", {"path": 42}), 400, "KCHAPI0006E")
    _assert_error(kimchi.post("/isos/scan", {"path": "/tmp", "depth": 3}), 400, "KCHAPI0007E")
    assert kimchi.get("/tasks").json() == []  # nothing was queued by bad requests


def test_tasks_lookup_cancel_and_filters(kimchi: Kimchi, redis_db, tmp_path: Path):
    _assert_error(kimchi.get("/tasks/" + "f" * 32), 404, "KCHTASK0001E")
    _assert_error(kimchi.get("/tasks/../../etc"), 404)
    _assert_error(kimchi.delete("/tasks/" + "f" * 32), 404, "KCHTASK0001E")
    _assert_error(kimchi.get("/tasks?status=sleeping"), 400, "KCHAPI0008E")
    _assert_error(kimchi.get("/tasks?target_uri=(unclosed"), 400, "KCHAPI0008E")

    bus = SyncBus(connect(redis_db.url))
    long = bus.submit("diag.sleep", {"seconds": 30}, target_uri="/vms/a")
    failing = bus.submit("diag.fail", {"error": "disk on fire"}, target_uri="/vms/b")
    failed = kimchi.wait_task(failing)
    assert failed["status"] == "failed"
    assert "disk on fire" in failed["message"] and failed["message"].startswith("KCHTASK0005E")

    wait_for(lambda: kimchi.get(f"/tasks/{long}").json()["attempt"] == 1, what="start")
    t0 = time.monotonic()
    r = kimchi.delete(f"/tasks/{long}")
    assert r.status_code == 202 and r.headers["Location"] == f"/tasks/{long}"
    done = kimchi.wait_task(long, timeout=5)
    took = time.monotonic() - t0
    assert done["status"] == "cancelled"
    assert took < 2.0, f"cancellation took {took:.2f}s"
    _assert_error(kimchi.delete(f"/tasks/{long}"), 400, "KCHTASK0002E")

    assert [t["id"] for t in kimchi.get("/tasks?status=failed").json()] == [failing]
    assert [t["id"] for t in kimchi.get("/tasks?target_uri=^/vms/a$").json()] == [long]
    assert {t["id"] for t in kimchi.get("/tasks?kind=diag.sleep").json()} == {long}
    assert len(kimchi.get("/tasks?limit=1").json()) == 1


def test_cancel_before_a_worker_starts_it(kimchi_factory, redis_db):
    k = kimchi_factory(redis_url=redis_db.url, workers=0)
    bus = SyncBus(connect(redis_db.url))
    queued = bus.submit("diag.sleep", {"seconds": 30})
    r = k.delete(f"/tasks/{queued}")
    assert r.status_code == 202
    assert r.json()["status"] == "cancelled"  # never started: cancelled at once
    assert r.json()["attempt"] == 0


def test_config_health_and_openapi(kimchi: Kimchi):
    cfg = kimchi.get("/config").json()
    assert {"version", "http_port", "https_port", "auth", "features"} <= set(cfg)
    assert cfg["http_port"] == kimchi.port
    health = kimchi.get("/health").json()
    assert health["redis"] == "up" and health["libvirt"] == "up"
    wait_for(lambda: kimchi.get("/health").json()["workers"] == 2, what="2 workers")
    spec = kimchi.get("/openapi.json").json()
    assert spec["openapi"].startswith("3.1")
    scan = spec["paths"]["/isos/scan"]["post"]
    assert scan["requestBody"]["content"]["application/json"]["schema"]["required"] == ["path"]
    assert "202" in scan["responses"]
    assert "/events" in spec["paths"] and "/tasks/{id}" in spec["paths"]
    assert "KCHTASK0003E" in spec["components"]["x-error-codes"]


def test_ui_is_served_for_browsers_and_an_index_for_json_clients(kimchi: Kimchi):
    html = kimchi.get("/", headers={"Accept": "text/html"})
    assert html.status_code == 200 and html.headers["Content-Type"].startswith("text/html")
    assert "Content-Security-Policy" in html.headers
    index = kimchi.get("/", headers={"Accept": "application/json"}).json()
    assert index["openapi"] == "/openapi.json"
    _assert_error(kimchi.get("/ui/../kimchi/config.py"), 404)
    _assert_error(kimchi.get("/ui/%2e%2e/pyproject.toml"), 404)
    # the UI's ES modules, at any depth: a browser runs a module only with a JavaScript type
    page = html.text
    assert '<script type="module" src="/ui/js/main.js">' in page
    for module in ("js/main.js", "js/core/dispatch.js", "js/pages/vms.js"):
        r = kimchi.get(f"/ui/{module}")
        assert r.status_code == 200, module
        assert r.headers["Content-Type"].split(";")[0] in ("text/javascript",
                                                           "application/javascript"), module
        assert "script-src 'self'" in r.headers["Content-Security-Policy"]
        assert r.headers["X-Content-Type-Options"] == "nosniff"


def test_bad_configuration_stops_the_start_naming_the_key(tmp_path: Path):
    import subprocess
    import sys

    cfg = tmp_path / "bad.toml"
    cfg.write_text('[server]\nhttp_port = "eighty"\n[workers]\nembeded = 2\n[nosuch]\nx = 1\n')
    r = subprocess.run([sys.executable, "-m", "kimchid.main", "--config", str(cfg)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2
    assert "server.http_port" in r.stderr and "workers.embeded" in r.stderr
    assert "nosuch" in r.stderr
    r = subprocess.run([sys.executable, "-m", "kimchid.main", "--config", str(cfg)],
                       capture_output=True, text=True, timeout=30,
                       env={"PATH": "/usr/bin:/bin", "KIMCHI_SERVER_HTTP_PORT": "99999"})
    assert r.returncode == 2


def test_a_port_taken_by_another_program_stops_the_start_naming_it(tmp_path: Path,
                                                                   redis_db) -> None:
    import socket
    import subprocess
    import sys

    from tests.conftest import Kimchi

    k = Kimchi(tmp_path / "k", redis_db.url, workers=0, tls=True)
    for taken in (k.port, int(k.config.read_text().split("http_port = ")[1].split()[0])):
        with socket.socket() as other:
            other.bind(("127.0.0.1", taken))
            other.listen()
            r = subprocess.run([sys.executable, "-m", "kimchid.main", "--config",
                                str(k.config), "--log-format", "json"], capture_output=True,
                               text=True, timeout=60, env=k.env, cwd=k.dir)
        assert r.returncode == 1, r.stdout[-2000:]  # it stopped, rather than run without it
        said = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
        (fatal,) = [e for e in said if e["level"] == "critical"]
        assert f"cannot listen on {'https' if taken == k.port else 'http'} port {taken}" in \
            fatal["message"], fatal
        assert not [e for e in said if "kimchid ready" in e["message"]]
