"""``python -m kimchi.orphan_guard CMD...``: exec CMD so it dies with its parent.

The daemon starts its embedded redis-server and workers through this: should
kimchid be killed outright, the kernel sends them SIGTERM (PR_SET_PDEATHSIG),
so no orphan keeps the state directory's socket or runs jobs unsupervised.
Redis then shuts down cleanly (its append-only file is complete) and a worker
hands its job back.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def main() -> None:
    argv = sys.argv[1:]
    if argv[:1] == ["--"]:
        argv = argv[1:]
    if not argv:
        sys.exit("usage: orphan_guard CMD [ARG...]")
    parent = os.getppid()
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before prctl took effect
        sys.exit(1)
    os.execvp(argv[0], argv)


if __name__ == "__main__":
    main()
