"""Images onto the host: volumes uploaded in chunks, downloaded from a URL (resumed after
its worker is killed), wiped and cloned, on a real libvirtd with real worker processes and
a real HTTP server."""

from __future__ import annotations

import base64
import hashlib
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from kimchi.bus.context import JobContext
from tests.conftest import Kimchi, wait_for
from tests.isoservers import HttpIsoServer
from workers.jobs import volumes

URI = "qemu:///system"
MiB = 1 << 20
# the test servers listen on 127.0.0.1: private, so allowed by name here only
ON_LIBVIRTD = {"libvirt": {"uri": URI}, "outbound": {"allow": ["127.0.0.1"]}}


def sha256(data: bytes | Path) -> str:
    return hashlib.sha256(data if isinstance(data, bytes) else data.read_bytes()).hexdigest()


def put_chunk(k: Kimchi, path: str, data: bytes, first: int, total: int) -> Any:
    return k.http.put(k.url + path, data=data, timeout=30, headers={
        "Content-Type": "application/octet-stream",
        "Content-Range": f"bytes {first}-{first + len(data) - 1}/{total}"})


def files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def drop_half_way(k: Kimchi, path: str, data: bytes, first: int, total: int) -> None:
    """A PUT whose connection is lost after half its body (a browser losing the network)."""
    assert k.auth is not None
    basic = base64.b64encode(f"{k.auth[0]}:{k.auth[1]}".encode()).decode()
    with socket.create_connection(("127.0.0.1", k.port)) as s:
        s.sendall((f"PUT {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Basic {basic}\r\n"
                   "Content-Type: application/octet-stream\r\n"
                   f"Content-Range: bytes {first}-{first + len(data) - 1}/{total}\r\n"
                   f"Content-Length: {len(data)}\r\n\r\n").encode())
        s.sendall(data[:len(data) // 2])
        time.sleep(0.2)


def test_an_upload_dropped_half_way_resumes_and_ends_byte_identical(kimchi_factory, redis_db,
                                                                    qemu_pool):
    k = kimchi_factory(redis_url=redis_db.url, extra=ON_LIBVIRTD)
    pool, folder = qemu_pool.name(), Path(qemu_pool.folder)
    data = os.urandom(3 * MiB + 4321)
    total = len(data)
    vols = f"/hosts/local/storagepools/{pool}/storagevolumes"
    r = k.post(vols, {"name": "disk.img", "capacity": total, "format": "raw", "upload": True})
    assert r.status_code == 201, r.text
    content = r.headers["Location"]
    assert content == f"{vols}/disk.img/content"
    assert r.json()["received"] == 0 and r.headers["Upload-Offset"] == "0"

    assert put_chunk(k, content, data[:MiB], 0, total).status_code == 204
    drop_half_way(k, content, data[MiB:2 * MiB], MiB, total)
    # where to go on from: the dropped chunk left nothing
    head = k.http.head(k.url + content, timeout=10)
    assert head.status_code == 200, head.text
    assert head.headers["Upload-Offset"] == str(MiB) and head.headers["Range"] == f"bytes=0-{MiB - 1}"
    assert k.get(f"/storagepools/{pool}/storagevolumes/disk.img/content").json()["received"] == MiB
    # a chunk from elsewhere is refused, naming where to go on from
    wrong = put_chunk(k, content, data[2 * MiB:3 * MiB], 2 * MiB, total)
    assert wrong.status_code == 409 and wrong.json()["errcode"] == "KCHVOL0013E", wrong.text
    assert wrong.headers["Upload-Offset"] == str(MiB)
    assert k.get(f"/storagepools/{pool}/storagevolumes/disk.img").status_code == 404

    offset = int(head.headers["Upload-Offset"])
    while offset < total:
        chunk = data[offset:offset + MiB]
        r = put_chunk(k, content, chunk, offset, total)
        assert r.status_code == 204, r.text
        offset += len(chunk)
    assert sha256(folder / "disk.img") == sha256(data)
    assert files(folder) == ["disk.img"]
    vol = k.get(f"/storagepools/{pool}/storagevolumes/disk.img").json()
    assert vol["capacity"] == total and vol["format"] == "raw", vol
    assert k.http.head(k.url + content, timeout=10).status_code == 404  # no upload any more


def test_an_uploaded_qcow2_is_checked_and_a_bad_one_leaves_nothing(kimchi_factory, redis_db,
                                                                   qemu_pool, tmp_path):
    k = kimchi_factory(redis_url=redis_db.url, extra=ON_LIBVIRTD)
    pool, folder = qemu_pool.name(), Path(qemu_pool.folder)
    img = tmp_path / "small.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(img), "64M"], check=True)
    good = img.read_bytes()
    vols = f"/storagepools/{pool}/storagevolumes"
    r = k.post(vols, {"name": "small.qcow2", "capacity": len(good), "format": "qcow2",
                      "upload": True})
    assert r.status_code == 201, r.text
    assert put_chunk(k, r.headers["Location"], good, 0, len(good)).status_code == 204
    vol = k.get(f"{vols}/small.qcow2").json()
    assert vol["format"] == "qcow2" and vol["capacity"] == 64 * MiB, vol

    junk = os.urandom(200_000)
    r = k.post(vols, {"name": "junk.qcow2", "capacity": len(junk), "format": "qcow2",
                      "upload": True})
    bad = put_chunk(k, r.headers["Location"], junk, 0, len(junk))
    assert bad.status_code == 400 and bad.json()["errcode"] == "KCHVOL0016E", bad.text
    assert files(folder) == ["small.qcow2"]
    # an upload given up leaves nothing either; a JSON body is not a chunk
    r = k.post(vols, {"name": "gone.iso", "capacity": 10 * MiB, "format": "iso", "upload": True})
    assert r.status_code == 201, r.text
    assert put_chunk(k, r.headers["Location"], b"x" * 1000, 0, 10 * MiB).status_code == 204
    as_json = k.http.put(k.url + r.headers["Location"], json={"a": 1}, timeout=10)
    assert as_json.status_code == 415 and as_json.json()["errcode"] == "KCHAPI0014E"
    assert k.delete(r.headers["Location"]).status_code == 204
    assert files(folder) == ["small.qcow2"]
    # larger than the pool's free space
    huge = k.post(vols, {"name": "huge.img", "capacity": 2 ** 49, "upload": True})
    assert huge.status_code == 400 and huge.json()["errcode"] == "KCHVOL0011E", huge.text


def test_a_download_resumes_with_range_after_its_worker_is_killed(kimchi_factory, redis_db,
                                                                  qemu_pool, tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    data = os.urandom(12 * MiB)
    (served / "image.raw").write_bytes(data)
    k = kimchi_factory(redis_url=redis_db.url, extra=ON_LIBVIRTD)
    pool, folder = qemu_pool.name(), Path(qemu_pool.folder)
    with HttpIsoServer(served, pause=0.01) as http:  # about 6 MB/s
        r = k.post(f"/storagepools/{pool}/storagevolumes",
                   {"name": "image.raw", "url": http.url("image.raw"),
                    "checksum": f"sha256:{sha256(data)}"})
        assert r.status_code == 202, r.text
        task = r.json()
        assert task["kind"] == "volume.download" and task["host"] == "local"
        # mid-way: the worker doing it is killed outright
        t = wait_for(lambda: (lambda t: t if (t["details"] or {}).get("bytes", 0) > 2 * MiB
                              else None)(k.get(f"/tasks/{task['id']}").json()),
                     timeout=20, what="the download under way")
        assert t["details"]["total"] == len(data) and 0 < t["progress"] < 100, t
        assert (folder / "image.raw.part").exists()
        os.kill(int(t["worker"].rsplit("-", 1)[1]), signal.SIGKILL)
        done = k.wait_task(task["id"], timeout=60)
        assert done["status"] == "finished", done
        assert done["attempt"] >= 2 and done["worker"] != t["worker"]
        resumed = [req for req in http.counter.requests if "bytes=" in req]
        assert resumed and int(resumed[-1].split("bytes=")[1].rstrip("-")) >= 2 * MiB, \
            http.counter.requests
        assert http.bytes_sent < 2 * len(data)  # continued, not sent again whole
    assert sha256(folder / "image.raw") == sha256(data)
    assert files(folder) == ["image.raw"]
    # the pool was refreshed: the volume is listed
    vol = wait_for(lambda: k.get(f"/storagepools/{pool}/storagevolumes/image.raw").json()
                   if k.get(f"/storagepools/{pool}/storagevolumes/image.raw").ok else None,
                   what="the volume listed")
    assert vol["capacity"] == len(data)


class _Ctx(JobContext):
    """A job context whose progress goes nowhere (the job run in the test's process)."""

    def __init__(self, attempt: str, params: dict[str, Any]) -> None:
        super().__init__(task_id="t" * 32, entry_id="0-1", attempt=attempt,
                         kind="volume.download", params=params,
                         send_progress=lambda _c, _p: 1, send_found=lambda *_a: True,
                         progress_interval=0.0)


def test_a_server_that_ignores_range_sends_the_download_again_from_0(tmp_path):
    served, pool = tmp_path / "served", tmp_path / "pool"
    served.mkdir()
    pool.mkdir()
    data = os.urandom(3 * MiB)
    (served / "a.iso").write_bytes(data)
    (pool / "a.iso.part").write_bytes(b"\xff" * MiB)  # what a killed attempt wrote
    with HttpIsoServer(served, ranges=False) as http:
        params = {"name": "a.iso", "pool": "p", "dir": str(pool), "url": http.url("a.iso"),
                  "checksum": "", "allow": ["127.0.0.1"]}
        out = volumes.download(_Ctx("2", params))
    assert out["bytes"] == len(data) and sha256(pool / "a.iso") == sha256(data)
    assert files(pool) == ["a.iso"]
    assert http.counter.requests == [f"/a.iso bytes={MiB}-"]


def test_download_refusals_are_clear_and_leave_nothing(kimchi_factory, redis_db, qemu_pool,
                                                       tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    (served / "a.img").write_bytes(os.urandom(MiB))
    with open(served / "huge.img", "wb") as f:  # sparse: 1 TiB to a reader
        f.truncate(2 ** 40)
    k = kimchi_factory(redis_url=redis_db.url, extra=ON_LIBVIRTD)
    pool, folder = qemu_pool.name(), Path(qemu_pool.folder)
    vols = f"/storagepools/{pool}/storagevolumes"

    def refused(body: dict[str, Any], errcode: str) -> None:
        r = k.post(vols, body)
        assert r.status_code == 400 and r.json()["errcode"] == errcode, (body, r.text)

    refused({"name": "x", "url": "ftp://127.0.0.1/a.img"}, "KCHAPI0006E")
    refused({"name": "x", "url": "http://10.255.255.1/a.img"}, "KCHVOL0009E")  # private
    refused({"name": "x", "url": "http://169.254.169.254/latest"}, "KCHVOL0009E")
    refused({"name": "x", "url": "http://no-such-host.invalid/a.img"}, "KCHVOL0009E")
    refused({"name": "x", "url": "http://127.0.0.1:1/a", "capacity": MiB}, "KCHAPI0006E")
    with HttpIsoServer(served) as http:
        failures = {}
        for name, url, checksum in (
                ("missing.img", http.url("missing.img"), ""),
                ("huge.img", http.url("huge.img"), ""),
                ("a.img", http.url("a.img"), "sha256:" + "0" * 64)):
            r = k.post(vols, {"name": name, "url": url,
                              **({"checksum": checksum} if checksum else {})})
            assert r.status_code == 202, r.text
            failures[name] = k.wait_task(r.json()["id"], timeout=30)
    for name, errcode, words in (("missing.img", "KCHVOL0010E", "HTTP 404"),
                                 ("huge.img", "KCHVOL0011E", "bytes free"),
                                 ("a.img", "KCHVOL0012E", "checksum")):
        t = failures[name]
        assert t["status"] == "failed" and t["message"].startswith(errcode), t
        assert words in t["message"], t["message"]
    assert files(folder) == []


def test_volume_jobs_need_a_folder_pool(kimchi: Kimchi):
    """On libvirt's test driver: a pool whose volumes are not files in a folder is refused."""
    k = kimchi
    r = k.post("/storagepools", {"name": "lv", "type": "logical",
                                 "source": {"devices": ["/dev/vdz"]}})
    if r.status_code != 201:
        pytest.skip(f"the test driver makes no logical pool here: {r.text}")
    body = {"name": "x", "url": "http://93.184.216.34/x.img"}
    r = k.post("/storagepools/lv/storagevolumes", body)
    assert r.status_code == 400 and r.json()["errcode"] == "KCHVOL0008E", r.text


def _raw_volume(k: Kimchi, pool: str, folder: Path, name: str, mib: int) -> bytes:
    data = os.urandom(mib * MiB)
    r = k.post(f"/storagepools/{pool}/storagevolumes", {"name": name, "capacity": len(data),
                                                        "format": "raw", "upload": True})
    assert r.status_code == 201, r.text
    for at in range(0, len(data), 8 * MiB):
        assert put_chunk(k, r.headers["Location"], data[at:at + 8 * MiB], at,
                         len(data)).status_code == 204
    return data


def _messages(k: Kimchi, task_id: str) -> list[str]:
    return [e["data"].get("message", "") for e in
            k.get(f"/events?since=0&task={task_id}").json()]


def test_a_clone_copies_a_volume_and_a_cancelled_one_leaves_nothing(kimchi_factory, redis_db,
                                                                    qemu_pool):
    # a clone copies at 8 MiB/s at most ([workers] copy_limit_mib): slow enough to cancel
    k = kimchi_factory(redis_url=redis_db.url,
                       extra={**ON_LIBVIRTD, "workers": {"copy_limit_mib": 8}})
    pool, folder = qemu_pool.name(), Path(qemu_pool.folder)
    data = _raw_volume(k, pool, folder, "src.img", 4)
    r = k.post(f"/storagepools/{pool}/storagevolumes/src.img/clone", {"name": "copy.img"})
    assert r.status_code == 202, r.text
    done = k.wait_task(r.json()["id"], timeout=30)
    assert done["status"] == "finished" and done["kind"] == "volume.clone", done
    assert sha256(folder / "copy.img") == sha256(data)
    assert any(m.startswith("Cloning src.img to copy.img") for m in _messages(k, done["id"]))
    vol = wait_for(lambda: k.get(f"/storagepools/{pool}/storagevolumes/copy.img").json()
                   if k.get(f"/storagepools/{pool}/storagevolumes/copy.img").ok else None,
                   what="the clone listed")
    assert vol["capacity"] == len(data)
    taken = k.post(f"/storagepools/{pool}/storagevolumes/src.img/clone", {"name": "copy.img"})
    assert taken.status_code == 400 and taken.json()["errcode"] == "KCHVOL0001E"

    _raw_volume(k, pool, folder, "big.img", 48)
    r = k.post(f"/storagepools/{pool}/storagevolumes/big.img/clone", {"name": "big2.img"})
    task = r.json()
    wait_for(lambda: (folder / "big2.img.part").exists(), what="the copy under way")
    assert k.delete(f"/tasks/{task['id']}").status_code in (200, 202)
    assert k.wait_task(task["id"])["status"] == "cancelled"
    wait_for(lambda: "big2.img.part" not in files(folder), what="the .part removed")
    assert files(folder) == ["big.img", "copy.img", "src.img"]


def test_a_wipe_writes_zeros_with_progress_and_can_be_cancelled(kimchi_factory, redis_db,
                                                                qemu_pool):
    # each 1 MiB step of a job's loop pauses 0.1 s: a wipe of 16 MiB takes 1.6 s
    k = kimchi_factory(redis_url=redis_db.url, extra=ON_LIBVIRTD,
                       env={"KIMCHI_FAULT_SLOW_REPORTS": "0.1"})
    pool, folder = qemu_pool.name(), Path(qemu_pool.folder)
    _raw_volume(k, pool, folder, "a.img", 4)
    r = k.post(f"/storagepools/{pool}/storagevolumes/a.img/wipe")
    assert r.status_code == 202, r.text
    done = k.wait_task(r.json()["id"], timeout=30)
    assert done["status"] == "finished" and done["kind"] == "volume.wipe", done
    assert (folder / "a.img").read_bytes() == bytes(4 * MiB)
    steps = [m for m in _messages(k, done["id"]) if m.startswith("Wiping a.img")]
    assert steps and steps[-1] == "Wiping a.img: 4.0 MiB of 4.0 MiB", steps

    _raw_volume(k, pool, folder, "b.img", 16)
    task = k.post(f"/storagepools/{pool}/storagevolumes/b.img/wipe").json()
    wait_for(lambda: k.get(f"/tasks/{task['id']}").json()["progress"] or 0 > 0,
             what="the wipe under way")
    assert k.delete(f"/tasks/{task['id']}").status_code in (200, 202)
    assert k.wait_task(task["id"])["status"] == "cancelled"
    assert (folder / "b.img").stat().st_size == 16 * MiB  # the volume stays, part-wiped


def test_an_upload_to_another_hosts_pool_goes_through_libvirts_stream(kimchi_factory,
                                                                       redis_db, qemu_pool):
    """The local host is libvirt's test driver; "h2" is the machine's libvirtd, reached
    through the daemon's connection to it, as a host elsewhere would be."""
    k = kimchi_factory(redis_url=redis_db.url)
    r = k.http.post(k.url + "/hosts", json={"name": "h2", "uri": URI}, timeout=30)
    assert r.status_code == 201, r.text
    pool, folder = qemu_pool.name(), Path(qemu_pool.folder)
    data = os.urandom(2 * MiB + 77)
    vols = f"/hosts/h2/storagepools/{pool}/storagevolumes"
    r = k.post(vols, {"name": "far.img", "capacity": len(data), "upload": True})
    assert r.status_code == 201, r.text
    content = r.headers["Location"]
    assert put_chunk(k, content, data[:MiB], 0, len(data)).status_code == 204
    assert k.http.head(k.url + content, timeout=10).headers["Upload-Offset"] == str(MiB)
    assert put_chunk(k, content, data[MiB:], MiB, len(data)).status_code == 204
    assert sha256(folder / "far.img") == sha256(data)
    vol = k.get(f"{vols}/far.img").json()
    assert vol["capacity"] == len(data) and vol["host"] == "h2", vol


def test_a_cancelled_download_leaves_nothing(kimchi_factory, redis_db, qemu_pool, tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    (served / "slow.img").write_bytes(os.urandom(8 * MiB))
    k = kimchi_factory(redis_url=redis_db.url, extra=ON_LIBVIRTD)
    pool, folder = qemu_pool.name(), Path(qemu_pool.folder)
    with HttpIsoServer(served, pause=0.02) as http:  # about 3 MB/s
        task = k.post(f"/storagepools/{pool}/storagevolumes",
                      {"name": "slow.img", "url": http.url("slow.img")}).json()
        wait_for(lambda: (folder / "slow.img.part").exists(), what="the download under way")
        assert k.delete(f"/tasks/{task['id']}").status_code in (200, 202)
        assert k.wait_task(task["id"])["status"] == "cancelled"
    wait_for(lambda: files(folder) == [], what="the .part removed")
    assert k.get(f"/storagepools/{pool}/storagevolumes/slow.img").status_code == 404
