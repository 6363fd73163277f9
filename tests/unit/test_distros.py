"""The shipped catalogue of remote install ISOs: every entry is a usable template source."""

from __future__ import annotations

import json
from pathlib import Path

from kimchi import isoinfo
from kimchid.model import osinfo
from kimchid.model.templates import distro_problem

CATALOGUE = Path(__file__).resolve().parents[2] / "kimchid" / "data" / "distros.json"


def test_every_shipped_entry_is_complete_and_named_once():
    entries = json.loads(CATALOGUE.read_text())
    assert len(entries) >= 10
    for e in entries:
        assert distro_problem(e) is None, e
        assert set(e) == {"name", "os_distro", "os_version", "os_arch", "path"}, e
        assert isoinfo.is_remote(e["path"]) and e["path"].endswith(".iso"), e
    names = [e["name"] for e in entries]
    assert len(set(names)) == len(names)


def test_entries_are_releases_kimchi_gives_virtio_defaults():
    for e in json.loads(CATALOGUE.read_text()):
        assert osinfo.is_modern(e["os_distro"], e["os_version"]), e


def test_entry_problems_are_named():
    good = {"name": "x", "os_distro": "debian", "os_version": "12", "os_arch": "x86_64",
            "path": "https://h/x.iso"}
    assert distro_problem(good) is None
    assert "name" in distro_problem({**good, "name": "../x"})
    assert "os_version" in distro_problem({**good, "os_version": ""})
    assert "path" in distro_problem({**good, "path": "/srv/x.iso"})
