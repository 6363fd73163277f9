"""Templates over REST: OS-aware defaults from the ISO, merges, renames, clones, hand edits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import Kimchi, wait_for
from tests.isofactory import make_iso


@pytest.fixture
def isos(tmp_path: Path) -> dict[str, Path]:
    out = {"fedora": tmp_path / "iso" / "fedora.iso", "win": tmp_path / "iso" / "win.iso",
           "old": tmp_path / "iso" / "old.iso"}
    make_iso(out["fedora"], "Fedora-WS-Live-39-1-5")
    make_iso(out["win"], "CCCOMA_X64FRE_EN-US_DV9")
    make_iso(out["old"], "CentOS_5.5_Final")
    return out


def _objects(k: Kimchi) -> Path:
    return k.dir / "objects" / "templates"


def test_template_from_an_iso_gets_the_os_and_its_defaults(kimchi: Kimchi, isos):
    r = kimchi.post("/templates", {"name": "f39", "source_media": {"type": "disk",
                                                                   "path": str(isos["fedora"])}})
    assert r.status_code == 201, r.text
    assert r.headers["Location"] == "/templates/f39"
    t = r.json()
    assert (t["os_distro"], t["os_version"]) == ("fedora", "39")
    assert t["disks"][0]["bus"] == "virtio" and t["nic_model"] == "virtio"
    assert t["memory"] == {"current": 2048, "maxmemory": 2048}
    assert t["networks"] == ["default"]
    # libvirt's test driver comes with a pool "default-pool"; kimchid made "default" at start
    wait_for(lambda: kimchi.get("/templates/f39").json()["invalid"] == {}, what="no problem")
    # kept as a JSON file, one per template
    stored = json.loads((_objects(kimchi) / "f39.json").read_text())
    assert stored["os_distro"] == "fedora"

    old = kimchi.post("/templates", {"cdrom": str(isos["old"])}).json()  # Kimchi 1.x field
    assert (old["os_distro"], old["disks"][0]["bus"], old["nic_model"]) == ("centos", "ide",
                                                                           "e1000")
    assert old["name"] == "centos5.5"  # unnamed: after its OS
    win = kimchi.post("/templates", {"name": "w", "source_media": {
        "type": "disk", "path": str(isos["win"])}, "memory": {"current": 2048}}).json()
    assert win["os_distro"] == "windows" and win["memory"] == {"current": 2048,
                                                                "maxmemory": 4096}
    events = kimchi.get("/events?since=0&types=template.*").json()
    assert [e["data"]["name"] for e in events] == ["f39", "centos5.5", "w"]


def test_update_merges_renames_with_303_clones_and_deletes(kimchi: Kimchi, isos):
    src = {"type": "disk", "path": str(isos["fedora"])}
    kimchi.post("/templates", {"name": "a", "source_media": src})
    r = kimchi.http.put(kimchi.url + "/templates/a", json={"cpu_info": {"vcpus": 2,
                                                                         "maxvcpus": 4}})
    assert r.status_code == 200 and r.json()["cpu_info"] == {"vcpus": 2, "maxvcpus": 4}
    assert r.json()["memory"]["current"] == 2048  # untouched fields stay
    r = kimchi.http.put(kimchi.url + "/templates/a", json={"name": "b"}, allow_redirects=False)
    assert r.status_code == 303 and r.headers["Location"] == "/templates/b"
    assert kimchi.get("/templates/a").status_code == 404
    assert kimchi.get("/templates/b").json()["cpu_info"]["vcpus"] == 2
    c1 = kimchi.post("/templates/b/clone")
    c2 = kimchi.post("/templates/b/clone")
    assert (c1.status_code, c1.json()["name"], c2.json()["name"]) == (201, "b-clone1",
                                                                      "b-clone2")
    assert kimchi.delete("/templates/b").status_code == 204
    assert sorted(t["name"] for t in kimchi.get("/templates").json()) == ["b-clone1",
                                                                          "b-clone2"]


@pytest.mark.parametrize("body, errcode", [
    ({"name": "x", "source_media": {"type": "disk", "path": "relative.iso"}}, "KCHTMPL0004E"),
    ({"name": "x", "source_media": {"type": "disk", "path": "/no/such.iso"}}, "KCHTMPL0003E"),
    ({"name": "x", "source_media": {"type": "disk", "path": "http://:8080/x.iso"}}, "KCHTMPL0005E"),
    ({"name": "x", "source_media": {"type": "floppy"}}, "KCHAPI0006E"),
    ({"name": "../x", "source_media": {"type": "netboot"}}, "KCHAPI0006E"),
    ({"name": "x", "source_media": {"type": "netboot"}, "memory": {"current": 4096,
                                                                   "maxmemory": 1024}},
     "KCHTMPL0006E"),
    ({"name": "x", "source_media": {"type": "netboot"}, "vcpus": 2}, "KCHAPI0007E"),
    ({"name": "x"}, "KCHTMPL0013E"),  # no source
])
def test_bad_templates_are_refused_and_nothing_is_written(kimchi: Kimchi, body, errcode):
    r = kimchi.post("/templates", body)
    assert r.status_code == 400 and r.json()["errcode"] == errcode, r.text
    assert kimchi.get("/templates").json() == []


def test_duplicates_missing_isos_and_files_edited_by_hand(kimchi: Kimchi, isos, tmp_path):
    src = {"type": "disk", "path": str(isos["fedora"])}
    assert kimchi.post("/templates", {"name": "f", "source_media": src}).status_code == 201
    r = kimchi.post("/templates", {"name": "f", "source_media": src})
    assert r.json()["errcode"] == "KCHTMPL0001E"
    isos["fedora"].unlink()
    assert kimchi.get("/templates/f").json()["invalid"]["cdrom"] == [str(isos["fedora"])]

    # an admin drops a file in the folder: it appears, with an event, without a restart
    folder = _objects(kimchi)
    (folder / "dropped.json").write_text(json.dumps({
        "source_media": {"type": "netboot"}, "os_distro": "debian", "os_version": "12",
        "memory": {"current": 1024, "maxmemory": 1024}, "networks": ["default"],
        "disks": [{"index": 0, "size": 8}], "cpu_info": {"vcpus": 1, "maxvcpus": 1}}))
    wait_for(lambda: kimchi.get("/templates/dropped").status_code == 200, what="hand-made")
    wait_for(lambda: any(e["data"].get("by") == "file" for e in
                         kimchi.get("/events?since=0&types=template.created").json()),
             what="the template.created event of the hand-made file")
    (folder / "broken.json").write_text("{ not json")
    broken = wait_for(lambda: next((t for t in kimchi.get("/templates").json()
                                    if t["name"] == "broken"), None), what="broken listed")
    assert "not valid JSON" in broken["invalid"]["file"]
    assert kimchi.get("/templates/dropped").json()["os_distro"] == "debian"  # others unharmed
    (folder / "dropped.json").unlink()
    wait_for(lambda: kimchi.get("/templates/dropped").status_code == 404, what="removal")


def test_each_change_is_published_once(kimchi: Kimchi, isos):
    src = {"type": "disk", "path": str(isos["fedora"])}
    kimchi.post("/templates", {"name": "one", "source_media": src})
    kimchi.http.put(kimchi.url + "/templates/one", json={"name": "two"}, allow_redirects=False)
    kimchi.delete("/templates/two")
    import time

    time.sleep(2.5)  # the folder watcher looks every second: give it time to (not) repeat
    events = [(e["type"], e["data"]["name"]) for e in
              kimchi.get("/events?since=0&types=template.*").json()]
    assert events == [("template.created", "one"), ("template.updated", "two"),
                      ("template.deleted", "two")]


def test_asking_for_more_raises_a_default_maximum_but_not_a_given_one(kimchi: Kimchi, isos):
    src = {"type": "disk", "path": str(isos["fedora"])}
    t = kimchi.post("/templates", {"name": "big", "source_media": src,
                                   "cpu_info": {"vcpus": 4}, "memory": {"current": 8192}}).json()
    assert t["cpu_info"] == {"vcpus": 4, "maxvcpus": 4}
    assert t["memory"] == {"current": 8192, "maxmemory": 8192}
    r = kimchi.post("/templates", {"name": "bad", "source_media": src,
                                   "cpu_info": {"vcpus": 4, "maxvcpus": 2}})
    assert r.json()["errcode"] == "KCHTMPL0007E"
