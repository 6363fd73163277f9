"""A pool or a volume libvirt cannot describe never hides the others (Kimchi's #1279)."""

from __future__ import annotations

from typing import Any

import libvirt

from kimchid.model.storage import _broken_pool, _safely, pool_info, volume_info


class Broken:
    def name(self) -> str:
        return "nfs-down"

    def info(self) -> Any:
        raise libvirt.libvirtError("cannot stat /mnt/nfs-down: Stale file handle")


def test_a_pool_libvirt_cannot_describe_is_listed_with_the_reason() -> None:
    conn = libvirt.open("test:///default")
    good = conn.storagePoolLookupByName("default-pool")
    out = [_safely(pool_info, p, _broken_pool) for p in (good, Broken())]
    assert out[0]["name"] == "default-pool" and out[0]["state"] == "active"
    assert out[1]["name"] == "nfs-down" and out[1]["state"] == "inaccessible"
    assert "Stale file handle" in out[1]["error"]


def test_an_unreadable_volume_is_left_out() -> None:
    class Gone:
        def info(self) -> Any:
            raise libvirt.libvirtError("Storage volume not found")

    assert _safely(volume_info, Gone(), lambda _v, _e: None) is None
