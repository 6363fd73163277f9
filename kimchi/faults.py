"""Crash points, for the tests of what a crash leaves behind.

``KIMCHI_FAULT_CRASH_AT=<point>`` in a process's environment makes it kill itself with
SIGKILL when it reaches the point of that name, as a power cut or an OOM kill there
would: no handler runs, nothing is flushed.  Unset (always, outside the tests), a crash
point costs one dictionary lookup.
"""

from __future__ import annotations

import os
import signal


def crash_point(name: str) -> None:
    """Die here, at once, when the environment asks for a crash at ``name``."""
    if os.environ.get("KIMCHI_FAULT_CRASH_AT") == name:
        os.kill(os.getpid(), signal.SIGKILL)
