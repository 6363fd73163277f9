"""libvirtd killed and restarted while requests are in flight: kimchid reads everything again.

The libvirtd here is the test's own (its own sockets, no hypervisor drivers, only
libvirt's test driver), never the machine's: ``kill -9`` and a new start lose the
test driver's state, as a real restart loses VMs that were made while it ran.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter
from typing import Any

import libvirt
import pytest
import pytest_twisted
import requests
from twisted.internet import defer, reactor, task

from kimchi.errors import ServiceUnavailable
from kimchid.adapters.libvirt import LibvirtConnection
from tests.conftest import Kimchi, RedisServer, wait_for
from tests.libvirtd_private import PrivateLibvirtd, own_libvirtd  # noqa: F401  (a fixture)
from tests.loadthreads import LoadThreads

pytestmark = pytest.mark.slow

DOMAIN = """<domain type='test'><name>{name}</name><uuid>{uuid}</uuid>
<memory>65536</memory><vcpu>1</vcpu><os><type>hvm</type></os></domain>"""


class Load(LoadThreads):
    """Threads that send requests without pause and keep every answer's status."""

    def __init__(self, k: Kimchi, requests_: list[tuple[str, str]], threads: int = 4) -> None:
        super().__init__()
        self.k = k
        self.requests = requests_
        self.seen: list[tuple[str, str, int, str]] = []  # (method, path, status, errcode)
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True)
                        for i in range(threads)]

    def _run(self, i: int) -> None:
        http = requests.Session()
        http.auth = self.k.auth
        n = i
        while not self.stop.is_set():
            method, path = self.requests[n % len(self.requests)]
            n += 1
            try:
                r = http.request(method, self.k.url + path, timeout=10)
            except requests.RequestException as e:
                self.seen.append((method, path, 0, type(e).__name__))
                continue
            code = ""
            if r.status_code >= 400:
                try:
                    code = r.json().get("errcode", "")
                except ValueError:
                    pass
            self.seen.append((method, path, r.status_code, code))
            time.sleep(0.01)

    def statuses(self) -> Counter[int]:
        return Counter(s for _m, _p, s, _c in list(self.seen))


def names_in_libvirt(uri: str) -> list[str]:
    return sorted(d.name() for d in libvirt.open(uri).listAllDomains(0))


def names_listed(k: Kimchi) -> list[str] | None:
    r = k.get("/vms")
    return sorted(v["name"] for v in r.json()) if r.status_code == 200 else None


def test_a_libvirtd_killed_and_restarted_under_load_is_read_again_everywhere(
        kimchi_factory: Any, redis_db: RedisServer,
        own_libvirtd: PrivateLibvirtd) -> None:  # noqa: F811 (the fixture)
    uri = own_libvirtd.uri
    k: Kimchi = kimchi_factory(redis_url=redis_db.url, extra={"libvirt": {"uri": uri}})
    wait_for(lambda: k.get("/health").json()["status"] == "ok", timeout=20,
             what="kimchid connected, its default pool made")
    doomed = f"doomed-{uuid.uuid4().hex[:6]}"  # lives only in the libvirtd that is killed
    libvirt.open(uri).defineXML(DOMAIN.format(name=doomed, uuid=uuid.uuid4()))
    wait_for(lambda: k.get(f"/vms/{doomed}").status_code == 200, what="the VM listed")

    # GET /health asks libvirt itself, whether it is up or not: the request that finds
    # libvirtd back first must not open a connection that skips the re-reading
    with Load(k, [("GET", "/health"), ("GET", "/vms"), ("GET", f"/vms/{doomed}"),
                  ("GET", "/vms/test"),
                  ("POST", f"/vms/{doomed}/start"), ("POST", f"/vms/{doomed}/poweroff"),
                  ("POST", "/vms/test/suspend"), ("POST", "/vms/test/resume")]) as load:
        time.sleep(0.5)
        own_libvirtd.kill()
        wait_for(lambda: load.statuses()[503] >= 3, timeout=15,
                 what="requests to be told 503 while libvirtd is away")
        time.sleep(0.5)
        own_libvirtd.start()

        # Within a few seconds, still under load: the view is libvirt's again.
        wait_for(lambda: names_listed(k) == names_in_libvirt(uri), timeout=8,
                 what=f"GET /vms to list what libvirt has: {names_in_libvirt(uri)}")
        assert doomed not in names_in_libvirt(uri)  # the restart lost it
        r = k.post(f"/vms/{doomed}/start")
        assert r.status_code == 404, r.text
        assert k.get(f"/vms/{doomed}").status_code == 404
        time.sleep(0.5)  # the load goes on a little after the recovery

    errors = [s for s in load.seen if s[2] >= 500 and s[2] != 503 or s[2] == 0]
    assert not errors, f"answers other than 503 among the 5xx: {Counter(errors)}"
    assert all(c == "KCHSVC0002E" for _m, _p, s, c in load.seen if s == 503)
    assert load.statuses()[200] > 0

    def recovered() -> bool:
        events = [e for e in k.get("/events?since=0&types=service.*").json()
                  if e["data"].get("component") == "libvirt"]
        down = [i for i, e in enumerate(events) if e["data"].get("status") == "down"]
        return bool(down) and any(e["type"] == "service.recovered" for e in events[down[-1]:])

    wait_for(recovered, timeout=8, what="service.recovered for libvirt after its outage")
    assert k.get("/health").json()["status"] == "ok"
    # one connection before, one after, and the VMs read once on each
    records = [json.loads(ln) for ln in k.log_text().splitlines() if ln.startswith("{")]
    connects = [r["message"] for r in records if r["logger"] == "kimchid.adapters.libvirt"
                and r["level"] == "info" and r["message"].endswith("connected")]
    reads = [r["message"] for r in records if "virtual machines known" in r["message"]]
    assert len(connects) == len(reads) == 2, "\n".join(connects + reads)


async def until(predicate: Any, timeout: float = 10.0) -> None:
    for _ in range(int(timeout / 0.02)):
        if predicate():
            return
        await task.deferLater(reactor, 0.02)
    raise AssertionError("condition not met in time")


@pytest_twisted.ensureDeferred
async def test_each_connection_runs_the_connect_listeners_once_whoever_asks_for_it(
        own_libvirtd: PrivateLibvirtd) -> None:  # noqa: F811 (the fixture)
    lv = LibvirtConnection(own_libvirtd.uri, reactor)
    connects: list[bool] = []
    downs: list[str] = []
    lv.connect_listeners.append(lambda: connects.append(lv.up))
    lv.down_listeners.append(downs.append)
    lv.startService()
    try:
        await until(lambda: connects)
        own_libvirtd.kill()
        await until(lambda: downs)
        with pytest.raises(ServiceUnavailable):
            await lv.run(lambda c: c.getLibVersion())
        own_libvirtd.start()
        # Calls keep coming, several at once, as requests do: the first that finds
        # libvirtd back must not open a connection of its own that skips the listeners.
        answers: list[Any] = []
        while not any(isinstance(a, int) for a in answers):
            got = await defer.DeferredList(
                [defer.Deferred.fromCoroutine(lv.run(lambda c: c.getLibVersion()))
                 for _ in range(6)], consumeErrors=True)
            answers += [r if ok else r.value for ok, r in got]
            await task.deferLater(reactor, 0.05)
        refused = [a for a in answers if not isinstance(a, int)]
        assert all(isinstance(a, ServiceUnavailable) for a in refused), refused
        assert connects == [True, True]  # once per connection, up when told
        assert len(downs) == 1  # once per outage
    finally:
        lv.stopService()
