"""Templates from remote ISOs, through the real daemon: the ISO is served by real local
HTTP servers (with Range, and without), a few kilobytes of it are read, and servers that
are missing, unreachable or not serving ISOs are refused with codes.  And the catalogue
of remote install ISOs, /config/distros, whose entries make templates as they are.

The servers are on this host, an address kimchid does not connect to unless the
configuration allows it: the daemon here allows 127.0.0.0/8 ([outbound] allow), as an
admin allows a mirror on the private network; one without it shows the refusals.
And a local file that is not an ISO is refused without a word of its size or bytes."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from tests.conftest import Kimchi
from tests.isofactory import make_iso, make_not_iso
from tests.isoservers import FtpIsoServer, HttpIsoServer

MB = 1024 * 1024


@pytest.fixture
def kimchi(kimchi_factory: Any, redis_db: Any) -> Kimchi:
    """The daemon, allowed to connect to this host's servers."""
    return kimchi_factory(redis_url=redis_db.url, extra={"outbound": {"allow": ["127.0.0.0/8"]}})


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("served")
    make_iso(root / "f39.iso", "Fedora-WS-Live-39-1-5", size=50 * MB)
    make_iso(root / "debian.iso", "Debian 12.2.0 amd64 n", size=50 * MB)
    make_not_iso(root / "page.iso")
    return root


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stored(k: Kimchi, name: str) -> dict[str, Any]:
    return json.loads((k.dir / "objects" / "templates" / f"{name}.json").read_text())


def _response_schema(k: Kimchi, path: str, method: str = "get", status: str = "200") -> Any:
    op = k.get("/openapi.json").json()["paths"][path][method]
    return op["responses"][status]["content"]["application/json"]["schema"]


def test_template_from_a_url_reads_a_few_sectors_of_the_iso(kimchi: Kimchi, folder: Path):
    with HttpIsoServer(folder) as ranged, HttpIsoServer(folder, ranges=False) as whole:
        r = kimchi.post("/templates", {"name": "f39", "source_media": {
            "type": "disk", "path": ranged.url("f39.iso")}})
        assert r.status_code == 201, r.text
        t = r.json()
        # Kimchi 1.x's cdrom field takes a URL too; this server sends the whole file
        r2 = kimchi.post("/templates", {"name": "deb", "cdrom": whole.url("debian.iso")})
        assert r2.status_code == 201, r2.text
        time.sleep(0.2)
    assert (t["os_distro"], t["os_version"], t["bootable"]) == ("fedora", "39", True)
    assert t["source_media"] == {"type": "disk", "path": ranged.url("f39.iso"),
                                 "remote": True, "verified": True, "size": 50 * MB}
    assert t["disks"][0]["bus"] == "virtio"  # Fedora's defaults
    assert ranged.bytes_sent < 16 * 1024  # of 50 MB
    assert whole.bytes_sent < 2 * MB  # read from the start, then the connection closed
    deb = r2.json()
    assert (deb["os_distro"], deb["os_version"]) == ("debian", "12.2")
    assert deb["source_media"]["verified"] is True
    # kept as it was answered; a URL is not looked at by the integrity checks
    assert _stored(kimchi, "f39")["source_media"] == t["source_media"]
    listed = {x["name"]: x for x in kimchi.get("/templates").json()}
    assert "cdrom" not in listed["f39"]["invalid"] and "cdrom" not in listed["deb"]["invalid"]
    schema = _response_schema(kimchi, "/templates/{name}")
    Draft202012Validator(schema).validate(kimchi.get("/templates/f39").json())
    # the servers are gone: the templates stay as they are, nothing stats or fetches
    assert "cdrom" not in kimchi.get("/templates/f39").json()["invalid"]


def test_unreadable_urls_are_refused_with_a_code_and_quickly(kimchi: Kimchi, folder: Path):
    with HttpIsoServer(folder) as server:
        cases = [(server.url("missing.iso"), "KCHTMPL0011E", "HTTP 404"),
                 (server.url("page.iso"), "KCHTMPL0003E", "ISO-9660"),
                 (f"http://127.0.0.1:{_closed_port()}/x.iso", "KCHTMPL0011E", "refused"),
                 ("http://no-such-host.invalid/x.iso", "KCHTMPL0011E", "resolve"),
                 ("http://:8080/x.iso", "KCHTMPL0005E", "no host name")]
        for url, errcode, why in cases:
            started = time.monotonic()
            r = kimchi.post("/templates", {"name": "x", "source_media": {"type": "disk",
                                                                        "path": url}})
            assert r.status_code == 400 and r.json()["errcode"] == errcode, (url, r.text)
            assert why in r.json()["reason"] and url in r.json()["reason"]
            assert time.monotonic() - started < 5, url
    assert kimchi.get("/templates").json() == []


def test_a_url_out_of_reach_is_kept_unverified_when_the_os_is_named(kimchi: Kimchi,
                                                                    folder: Path):
    url = f"http://127.0.0.1:{_closed_port()}/alpine-virt-3.20.3-x86_64.iso"
    r = kimchi.post("/templates", {"name": "alp", "source_media": {"type": "disk", "path": url},
                                   "os_distro": "alpine", "os_version": "3.20"})
    assert r.status_code == 201, r.text
    t = r.json()
    assert (t["os_distro"], t["os_version"]) == ("alpine", "3.20")
    assert t["memory"]["current"] == 512  # Alpine's defaults all the same
    media = t["source_media"]
    assert media["remote"] is True and media["verified"] is False
    assert "refused" in media["error"] and "size" not in media
    # naming the OS does not make a wrong URL right: the server said 404
    with HttpIsoServer(folder) as server:
        r = kimchi.post("/templates", {"name": "gone", "source_media": {
            "type": "disk", "path": server.url("gone.iso")},
            "os_distro": "fedora", "os_version": "39"})
    assert r.status_code == 400 and r.json()["errcode"] == "KCHTMPL0011E"
    # a PUT of another source probes it again: verified now
    with HttpIsoServer(folder) as server:
        r = kimchi.http.put(kimchi.url + "/templates/alp", json={"source_media": {
            "type": "disk", "path": server.url("debian.iso")}})
    assert r.status_code == 200, r.text
    assert r.json()["source_media"]["verified"] is True and r.json()["os_distro"] == "debian"


def test_netboot_templates_need_no_iso(kimchi: Kimchi):
    r = kimchi.post("/templates", {"name": "pxe", "source_media": {"type": "netboot"},
                                   "os_distro": "debian", "os_version": "12"})
    assert r.status_code == 201 and r.json()["source_media"] == {"type": "netboot"}


def test_the_distro_catalogue_lists_remote_isos_ready_for_templates(kimchi: Kimchi,
                                                                    folder: Path):
    r = kimchi.get("/config/distros")
    assert r.status_code == 200
    entries = r.json()
    Draft202012Validator(_response_schema(kimchi, "/config/distros")).validate(entries)
    assert len(entries) >= 10 and entries == sorted(entries, key=lambda e: e["name"])
    assert {"debian", "ubuntu", "fedora", "alpine", "opensuse", "rocky",
            "almalinux"} <= {e["os_distro"] for e in entries}
    assert all(e["path"].startswith(("https://", "http://", "ftp://")) for e in entries)
    assert all(e["origin"] == "kimchi" for e in entries)

    debian = kimchi.get("/config/distros?os_distro=debian").json()
    assert debian and {e["os_distro"] for e in debian} == {"debian"}
    assert kimchi.get("/config/distros?os_distro=plan9").json() == []
    assert kimchi.get("/config/distros?nope=1").json()["errcode"] == "KCHAPI0008E"

    # an admin adds an entry (here: a local mirror) and replaces a shipped one
    mine = kimchi.dir / "objects" / "distros"
    mine.mkdir(parents=True, exist_ok=True)
    with HttpIsoServer(folder) as server:
        (mine / "fedora-39-mirror.json").write_text(json.dumps({
            "os_distro": "fedora", "os_version": "39", "path": server.url("f39.iso")}))
        (mine / "debian-12.8-netinst.json").write_text(json.dumps({
            "os_distro": "debian", "os_version": "12.2", "os_arch": "x86_64",
            "path": server.url("debian.iso")}))
        (mine / "broken.json").write_text(json.dumps({"os_distro": "x", "path": "/local.iso"}))
        entries = {e["name"]: e for e in kimchi.get("/config/distros").json()}
        assert "broken" not in entries
        assert entries["fedora-39-mirror"] == {
            "name": "fedora-39-mirror", "os_distro": "fedora", "os_version": "39",
            "os_arch": "x86_64", "path": server.url("f39.iso"), "origin": "local"}
        assert entries["debian-12.8-netinst"]["path"] == server.url("debian.iso")

        # each entry is a template source as it is
        e = entries["fedora-39-mirror"]
        r = kimchi.post("/templates", {"name": e["name"], "os_distro": e["os_distro"],
                                       "os_version": e["os_version"],
                                       "source_media": {"type": "disk", "path": e["path"]}})
        assert r.status_code == 201, r.text
        assert r.json()["source_media"]["verified"] is True

    # a shipped entry too (this host may have no internet: then it is kept unverified)
    shipped = next(e for e in kimchi.get("/config/distros?os_distro=alpine").json()
                   if e["origin"] == "kimchi")
    r = kimchi.post("/templates", {"name": shipped["name"], "os_distro": shipped["os_distro"],
                                   "os_version": shipped["os_version"],
                                   "source_media": {"type": "disk", "path": shipped["path"]}},
                    timeout=30)
    assert r.status_code == 201, r.text
    t = r.json()
    assert (t["os_distro"], t["os_version"]) == (shipped["os_distro"], shipped["os_version"])
    assert t["source_media"]["path"] == shipped["path"]
    assert t["source_media"]["verified"] or t["source_media"]["error"]


def test_addresses_that_are_not_public_are_refused_unless_allowed(kimchi_factory: Any,
                                                                   redis_db: Any,
                                                                   folder: Path):
    # allowed: the mirror at 127.0.0.2 (standing for one on the private network), not this
    # host's other addresses nor the metadata service
    strict = kimchi_factory("strict", redis_url=redis_db.url,
                            extra={"outbound": {"allow": ["127.0.0.2"]}})
    with HttpIsoServer(folder) as local, FtpIsoServer(folder) as ftp, \
            HttpIsoServer(folder, host="127.0.0.2", redirect_to=local.origin) as mirror:
        cases = [(local.url("f39.iso"), "127.0.0.1, a loopback address"),
                 (ftp.url("f39.iso"), "127.0.0.1, a loopback address"),
                 (f"http://localhost:{local.port}/f39.iso", "(127.0.0.1), a loopback address"),
                 ("http://169.254.169.254/latest/meta-data/", "a link-local address"),
                 ("http://[fe80::1%25lo]/x.iso", "fe80::1, a link-local address"),
                 ("http://10.0.0.1/x.iso", "10.0.0.1, a private address"),
                 ("http://[fd00::1]/x.iso", "fd00::1, a private address"),
                 ("http://[::ffff:127.0.0.1]:1/x.iso", "a loopback address"),
                 (mirror.url("redirect/f39.iso"), "127.0.0.1, a loopback address")]
        for url, why in cases:
            for named in ({}, {"os_distro": "fedora", "os_version": "39"}):
                started = time.monotonic()
                r = strict.post("/templates", {"name": "x", **named, "source_media": {
                    "type": "disk", "path": url}})
                # refused even with the OS named: never kept as an unverified template
                assert r.status_code == 400, (url, r.text)
                answer = r.json()
                assert answer["errcode"] == "KCHTMPL0012E", (url, r.text)
                assert why in answer["reason"] and url in answer["reason"], answer
                assert "[outbound] allow" in answer["reason"]
                assert time.monotonic() - started < 2, url  # nothing was waited for
        assert local.counter.requests == [] and ftp.counter.requests == []
        assert [r.split(" ")[0] for r in mirror.counter.requests] == [
            "/redirect/f39.iso"] * 2  # it redirected, twice; the target was never asked
        r = strict.post("/templates", {"name": "m", "cdrom": mirror.url("f39.iso")})
        assert r.status_code == 201 and r.json()["source_media"]["verified"] is True, r.text
    assert [t["name"] for t in strict.get("/templates").json()] == ["m"]


def test_a_local_file_that_is_not_an_iso_is_refused_without_its_size(kimchi: Kimchi,
                                                                     tmp_path: Path):
    small = tmp_path / "secret.txt"
    small.write_bytes(b"root:$6$salt$hash:19000:0:99999:7:::\n" * 33)  # 1,221 bytes
    large = tmp_path / "big.bin"
    large.write_bytes(bytes(range(256)) * 200)  # 51,200 bytes, no ISO signature
    cut = make_iso(tmp_path / "cut.iso", "Fedora-WS-Live-39-1-5", size=4 * MB)
    with open(cut, "r+b") as f:
        f.truncate(MB)
    reasons = {}
    for path in [small, large, tmp_path, Path("/etc/shadow")]:
        r = kimchi.post("/templates", {"name": "x", "source_media": {"type": "disk",
                                                                    "path": str(path)}})
        assert r.status_code == 400 and r.json()["errcode"] == "KCHTMPL0003E", r.text
        reasons[path] = r.json()["reason"].replace(str(path), "<path>")
    # the same words for a small file, a big one and a folder; /etc/shadow too (or, when
    # kimchid may not read it, the system's reason): nothing tells them apart
    assert reasons[small] == reasons[large] == reasons[tmp_path] == (
        "KCHTMPL0003E: <path> is not a readable ISO-9660 image: not an ISO-9660 image")
    assert reasons[Path("/etc/shadow")] in (reasons[small], (
        "KCHTMPL0003E: <path> is not a readable ISO-9660 image: Permission denied"))
    r = kimchi.post("/templates", {"name": "x", "cdrom": str(tmp_path / "none.iso")})
    assert r.json()["reason"].endswith("none.iso is not a readable ISO-9660 image: no such file")
    # an ISO that is damaged is still described: that helps, and says nothing of other files
    r = kimchi.post("/templates", {"name": "x", "cdrom": str(cut)})
    assert "truncated image (1048576 of 4194304 bytes)" in r.json()["reason"], r.text


def test_a_vm_is_not_made_from_a_url_the_policy_no_longer_allows(kimchi: Kimchi,
                                                                  folder: Path):
    """QEMU reads the ISO itself when the VM boots: its address is judged again then."""
    with HttpIsoServer(folder) as server:
        r = kimchi.post("/templates", {"name": "f39", "cdrom": server.url("f39.iso")})
        assert r.status_code == 201, r.text
        # the admin takes this host's addresses out of [outbound] allow
        kimchi.stop()
        kimchi.config.write_text(kimchi.config.read_text().replace(
            'allow = ["127.0.0.0/8"]', "allow = []"))
        kimchi.start()
        before, asked = kimchi.get("/tasks").json(), len(server.counter.requests)
        r = kimchi.post("/vms", {"name": "vm1", "template": "f39"})
        assert r.status_code == 400, r.text
        answer = r.json()
        assert answer["errcode"] == "KCHTMPL0012E", r.text
        assert "127.0.0.1, a loopback address" in answer["reason"]
        assert kimchi.get("/tasks").json() == before  # no task, nothing made
        assert "vm1" not in {v["name"] for v in kimchi.get("/vms").json()}
        assert len(server.counter.requests) == asked  # judged before any connection
