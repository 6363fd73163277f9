"""GET /vms as a browser gets it: the cached listing, gzip-compressed when the client
accepts it, never stale after a change."""

from __future__ import annotations

import gzip
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
import requests

from kimchid.api.app import takes_gzip
from tests.conftest import Kimchi, RedisServer, wait_for


def node_xml(n: int) -> str:
    doms = "".join(
        f"<domain type='test'><name>vm{i:03d}</name><uuid>{uuid.UUID(int=i + 1)}</uuid>"
        f"<memory>1048576</memory><vcpu>2</vcpu><os><type>hvm</type></os></domain>"
        for i in range(n))
    return f"<node>{doms}</node>"


@pytest.fixture
def many(kimchi_factory: Any, redis_db: RedisServer, tmp_path: Path) -> Kimchi:
    node = tmp_path / "node.xml"
    node.write_text(node_xml(40))
    k = kimchi_factory(redis_url=redis_db.url, workers=0,
                       extra={"libvirt": {"uri": f"test://{node}"}})
    wait_for(lambda: len(k.get("/vms").json()) == 40, what="the 40 VMs listed")
    return k


def raw(k: Kimchi, accept: str) -> tuple[requests.Response, bytes]:
    """The answer and its body as sent (not decoded)."""
    r = k.http.get(k.url + "/vms", headers={"Accept-Encoding": accept}, stream=True)
    return r, r.raw.read(decode_content=False)


def test_the_listing_goes_compressed_to_a_client_that_takes_gzip(many: Kimchi) -> None:
    plain, plain_body = raw(many, "identity")
    assert plain.status_code == 200 and "Content-Encoding" not in plain.headers
    assert plain.headers["Vary"] == "Accept-Encoding"
    listed = json.loads(plain_body)
    assert len(listed) == 40

    for accept in ("gzip", "gzip, deflate, br", "br;q=1, gzip;q=0.5", "*"):
        packed, body = raw(many, accept)
        assert packed.headers["Content-Encoding"] == "gzip", accept
        assert len(body) < len(plain_body) / 4
        assert json.loads(gzip.decompress(body)) == listed
    for accept in ("gzip;q=0", "deflate", "*;q=0", "br, *;q=0"):
        assert "Content-Encoding" not in raw(many, accept)[0].headers, accept


def test_a_change_is_in_the_next_compressed_listing(many: Kimchi) -> None:
    before = json.loads(gzip.decompress(raw(many, "gzip")[1]))
    assert {v["name"]: v["state"] for v in before}["vm007"] == "running"
    assert many.post("/vms/vm007/poweroff").status_code == 200

    def state() -> str:
        listed = json.loads(gzip.decompress(raw(many, "gzip")[1]))
        return {v["name"]: v["state"] for v in listed}["vm007"]

    wait_for(lambda: state() == "shutoff", what="the compressed listing to show the change")


@pytest.mark.parametrize("accept,takes", [
    (None, False), ("", False), ("gzip", True), ("GZIP", True), ("x-gzip", True),
    ("deflate, gzip;q=0.1", True), ("gzip;q=0", False), ("gzip;q=0.0", False),
    ("gzip;q=bad", False), ("*", True), ("*;q=0", False), ("gzip;q=0, *", False),
    ("identity", False), ("br", False),
])
def test_accept_encoding(accept: str | None, takes: bool) -> None:
    assert takes_gzip(accept) is takes
