"""kimchi.diskio: the disk is asked to start on each piece of a big file once it is in the
file (a real file; libc's sync_file_range recorded on its way)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from kimchi import diskio

MIB = 2**20


def test_each_whole_piece_is_started_once_after_it_reached_the_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = diskio._sync_file_range
    assert real is not None  # Linux
    asked: list[tuple[int, int, int]] = []  # offset, length, the file's size then

    def recording(fd: int, offset: int, length: int, flags: int) -> None:
        asked.append((offset, length, os.fstat(fd).st_size))
        real(fd, offset, length, flags)

    monkeypatch.setattr(diskio, "_sync_file_range", recording)
    path = tmp_path / "big.img"
    with path.open("wb") as f:
        disk = diskio.Writeback(f, piece=8 * MIB)
        done = 0
        for _ in range(20):
            f.write(b"\1" * MIB)  # buffered: the piece is flushed before it is started
            done += MIB
            disk.written(done)
        f.flush()
        os.fsync(f.fileno())
    assert [(o, n) for o, n, _size in asked] == [(0, 8 * MIB), (8 * MIB, 8 * MIB)]
    assert all(size >= o + n for o, n, size in asked)
    assert path.stat().st_size == 20 * MIB


def test_a_file_that_takes_no_writeback_is_written_all_the_same(tmp_path: Path) -> None:
    r, w = os.pipe()  # sync_file_range refuses pipes (ESPIPE): the fsync does it all then
    try:
        diskio.start_writeback(w, 0, MIB)
    finally:
        os.close(r)
        os.close(w)


def test_a_writeback_failure_that_means_lost_data_is_not_hidden(
        monkeypatch: pytest.MonkeyPatch) -> None:
    def failing(*_args: Any) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(diskio, "_sync_file_range", failing)
    with pytest.raises(OSError):
        diskio.start_writeback(0, 0, MIB)
