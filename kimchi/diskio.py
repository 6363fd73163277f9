"""Big files written in pieces (uploads, downloads, wipes): the disk starts on each piece as
soon as it is written, instead of on the whole file at the closing ``fsync``.

A file smaller than the kernel's dirty-page threshold (10 % of RAM by default) otherwise
stays in memory until that ``fsync``, which then writes all of it while the user waits:
1 GiB uploaded spent as long again in its final ``fsync`` as in its transfer.  Started
piece by piece, the disk writes while the next bytes arrive, and the closing ``fsync`` has
only the last piece left.
"""

from __future__ import annotations

import ctypes
import errno
import os
from collections.abc import Callable
from typing import IO

PIECE = 8 * 1024 * 1024  # bytes written before the disk is asked to start on them
_SYNC_FILE_RANGE_WRITE = 2  # <linux/fs.h>


def _libc_sync_file_range() -> Callable[[int, int, int, int], None] | None:
    """glibc's ``sync_file_range`` (Python's ``os`` has none), raising ``OSError``."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        call = libc.sync_file_range
    except (OSError, AttributeError):
        return None
    call.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
    call.restype = ctypes.c_int

    def sync_file_range(fd: int, offset: int, length: int, flags: int) -> None:
        if call(fd, offset, length, flags) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))

    return sync_file_range


_sync_file_range = _libc_sync_file_range()


def start_writeback(fd: int, offset: int, length: int) -> None:
    """Ask the kernel to start writing ``length`` bytes at ``offset`` of ``fd`` to the disk,
    without waiting for them (``sync_file_range(SYNC_FILE_RANGE_WRITE)``).  Durability is
    still the closing ``fsync``'s: this only starts early what it would do."""
    if _sync_file_range is None:
        return
    try:
        _sync_file_range(fd, offset, length, _SYNC_FILE_RANGE_WRITE)
    except OSError as e:  # not every file system takes it: the fsync does it all then
        if e.errno not in (errno.EINVAL, errno.ESPIPE, errno.ENOSYS, errno.EOPNOTSUPP):
            raise


class Writeback:
    """Follows a file written from ``start`` onwards and starts the disk on every
    :data:`PIECE` of it (:func:`start_writeback`)."""

    def __init__(self, file: IO[bytes], start: int = 0, piece: int = PIECE) -> None:
        self.file = file
        self.started = start  # the disk has been asked for everything before this
        self.piece = piece

    def written(self, upto: int) -> None:
        """Everything before offset ``upto`` has been written to the file."""
        if upto - self.started >= self.piece:
            self.file.flush()
            start_writeback(self.file.fileno(), self.started, upto - self.started)
            self.started = upto
