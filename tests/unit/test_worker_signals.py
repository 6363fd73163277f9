"""A worker's signal handler takes no lock: a second SIGTERM that comes while the first
one's work holds a lock cannot hang the worker (seen in the chaos test: kimchid killed,
its embedded workers got the parent-death SIGTERM and a stop together, and one waited
for ever inside ``Event.set``)."""

from __future__ import annotations

import subprocess
import sys

PROGRAM = r"""
import signal
from kimchi.bus.worker import Worker
from kimchi.config import Config

w = Worker(Config(), "unix:///nonexistent/redis.sock", {})  # never connects
# The main thread interrupted inside Event.set, holding the Event's lock: a signal's
# handler runs right there, on the same thread.
with w.stopping._cond:
    w.on_signal(signal.SIGTERM, None)
    w.on_signal(signal.SIGTERM, None)
assert w.signalled and not w.stopping.is_set()
assert w._must_stop() and w.stopping.is_set()  # the main loop acts on it
print("ok")
"""


def test_a_signal_while_the_stop_holds_its_lock_returns_at_once() -> None:
    done = subprocess.run([sys.executable, "-c", PROGRAM], capture_output=True, text=True,
                          timeout=30)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_the_handlers_are_the_flag() -> None:
    import signal

    from kimchi.bus.worker import Worker, install_signal_handlers
    from kimchi.config import Config

    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    w = Worker(Config(), "unix:///nonexistent/redis.sock", {})
    try:
        install_signal_handlers(w)
        assert signal.getsignal(signal.SIGTERM) == w.on_signal
        assert signal.getsignal(signal.SIGINT) == w.on_signal
    finally:
        signal.signal(signal.SIGTERM, before[0])
        signal.signal(signal.SIGINT, before[1])
