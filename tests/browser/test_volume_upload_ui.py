"""Uploading a volume through the storage page, in a real Chromium, into a directory pool of
the real libvirtd: the file goes up in slices, the bar reaches 100 %, the volume is listed
with its size and its bytes are the file's."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Kimchi

pytestmark = pytest.mark.browser

MiB = 1 << 20


def test_a_file_uploaded_through_the_page_becomes_a_volume(
        page: Any, kimchi_factory: Any, redis_db: Any, qemu_pool: Any, problems: Any) -> None:
    k: Kimchi = kimchi_factory(redis_url=redis_db.url, workers=0,
                               extra={"libvirt": {"uri": "qemu:///system"}})
    pool, folder = qemu_pool.name(), Path(qemu_pool.folder)
    data = os.urandom(40 * MiB + 12345)  # three slices of 16 MiB, the last one short
    page.goto(k.url + "/#/storage")
    page.wait_for_selector('#conn[data-state="live"]')
    row = page.locator(f'#pool-rows > tr[data-name="{pool}"]')
    row.get_by_role("button", name=f"Volumes of {pool}").click()
    page.locator("#volumes:not([hidden])").wait_for()

    page.set_input_files("#upload-file", files=[{
        "name": "disk.img", "mimeType": "application/octet-stream", "buffer": data}])
    assert page.get_by_label("Name of the upload").input_value() == "disk.img"
    page.get_by_label("Upload format").select_option("raw")
    page.get_by_role("button", name="Upload", exact=True).click()

    page.wait_for_function("() => document.getElementById('upload-bar').value === 100")
    text = page.locator("#upload-text").inner_text()
    assert "disk.img: 40 MiB of 40 MiB (100 %)" == text, text
    vol = page.locator('#volume-rows > tr[data-name="disk.img"]')
    vol.wait_for()
    assert "40 MiB" in vol.inner_text()
    assert vol.get_by_role("button", name="Wipe disk.img").is_visible()
    assert vol.get_by_role("button", name="Clone disk.img").is_visible()
    listed = k.get(f"/storagepools/{pool}/storagevolumes/disk.img").json()
    assert listed["capacity"] == len(data)
    assert hashlib.sha256((folder / "disk.img").read_bytes()).hexdigest() == \
        hashlib.sha256(data).hexdigest()
    assert sorted(p.name for p in folder.iterdir()) == ["disk.img"]
    assert not page.locator("#upload-error").is_visible()
