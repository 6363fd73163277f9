"""Whether libvirtd answers: a queue of slow calls is not silence, a stopped libvirtd is
(a libvirtd of its own serving the test driver, stopped with SIGSTOP)."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import defer, reactor

from kimchi.errors import ServiceUnavailable
from kimchid.adapters.libvirt import LibvirtConnection
from tests.libvirtd_private import PrivateLibvirtd


@pytest.fixture
def own_libvirtd(tmp_path: Path) -> Iterator[PrivateLibvirtd]:
    d = PrivateLibvirtd(tmp_path)
    d.start()
    try:
        yield d
    finally:
        if d.proc is not None:
            d.proc.send_signal(signal.SIGCONT)
        d.kill()


@pytest_twisted.ensureDeferred
async def test_slow_calls_in_the_queue_are_not_libvirtd_silent_but_a_stopped_one_is(
        own_libvirtd: PrivateLibvirtd) -> None:
    conn = LibvirtConnection(own_libvirtd.uri, reactor, pool_size=2)
    conn.startService()
    try:
        await conn.answering(1.0)
        # both of the connection's threads busy for 3 s (a host's every VM read at once)
        busy = [defer.ensureDeferred(conn.run(lambda c: time.sleep(3))) for _ in range(2)]
        started = time.monotonic()
        await conn.answering(1.0)
        assert time.monotonic() - started < 1.0
        await defer.gatherResults(busy)

        assert own_libvirtd.proc is not None
        own_libvirtd.proc.send_signal(signal.SIGSTOP)
        try:
            with pytest.raises(ServiceUnavailable) as refused:
                await conn.answering(1.0)
            assert refused.value.errcode == "KCHSVC0002E"
            assert "no answer within 1 s" in refused.value.reason
            # asked again and again meanwhile: they wait for the question still in flight,
            # none holds a thread of its own
            pool = reactor.getThreadPool()  # type: ignore[attr-defined]
            asked = [defer.ensureDeferred(conn.answering(1.0)) for _ in range(5)]
            assert len(pool.working) == 1
            for d in asked:
                with pytest.raises(ServiceUnavailable):
                    await d
        finally:
            own_libvirtd.proc.send_signal(signal.SIGCONT)
        await conn.answering(5.0)  # back
    finally:
        conn.stopService()
