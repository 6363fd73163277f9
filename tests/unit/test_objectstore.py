"""The JSON object store: atomic, serialised writes; hand edits seen; broken files reported, not fatal.

Real files in ``tmp_path``; the watcher runs on ``task.Clock`` with its scans
run synchronously.  The cross-process lock test is in
``tests/integration/test_objectstore_processes.py``.
"""

from __future__ import annotations

import fcntl
import json
import os
import stat
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    rule,
    run_state_machine_as_test,
)
from twisted.internet import defer, task
from twisted.logger import capturedLogs

from kimchid.adapters import objectstore
from kimchid.adapters.objectstore import (
    Conflict,
    Exists,
    InvalidName,
    InvalidObject,
    ObjectStore,
    ObjectWatcher,
    StoredObject,
)


@pytest.fixture
def store(tmp_path: Path) -> ObjectStore:
    return ObjectStore(tmp_path / "objects")


@pytest.fixture
def no_fsync(monkeypatch: pytest.MonkeyPatch) -> None:
    """For tests of many writes: ~6 ms per fsync on ext4 would make them slow, not better."""
    monkeypatch.setattr(os, "fsync", lambda fd: None)


def files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def write_by_hand(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


# -- the basics -----------------------------------------------------------------------


def test_create_get_list_put_update_rename_delete(store: ObjectStore):
    made = store.create("templates", "fedora", {"memory": 1024, "cpus": 1})
    assert made.data == {"memory": 1024, "cpus": 1} and made.invalid is None
    assert store.get("templates", "fedora") == made
    assert store.kinds() == ["templates"]

    store.put("templates", "debian", {"memory": 512})
    assert [o.name for o in store.list("templates")] == ["debian", "fedora"]

    replaced = store.put("templates", "fedora", {"memory": 2048})
    assert replaced.version != made.version
    assert store.get("templates", "fedora").data == {"memory": 2048}

    updated = store.update("templates", "fedora", lambda d: {**d, "cpus": 4})
    assert store.get("templates", "fedora") == updated
    assert updated.data == {"memory": 2048, "cpus": 4}

    moved = store.rename("templates", "fedora", "fedora-40")
    assert moved.data == updated.data and moved.version == updated.version  # same content
    with pytest.raises(KeyError):
        store.get("templates", "fedora")

    store.delete("templates", "fedora-40")
    assert [o.name for o in store.list("templates")] == ["debian"]
    assert store.list("vms") == [] and store.kinds() == ["templates"]


def test_files_are_indented_sorted_and_end_with_a_newline_for_human_editors(store: ObjectStore):
    obj = store.put("templates", "t", {"b": [1, 2], "a": "é"})
    assert obj.path == store.root / "templates" / "t.json"
    assert obj.path.read_text("utf-8") == '{\n  "a": "é",\n  "b": [\n    1,\n    2\n  ]\n}\n'


def test_files_and_folders_have_their_modes_whatever_the_umask(tmp_path: Path):
    old = os.umask(0o077)
    try:
        store = ObjectStore(tmp_path / "objects")
        obj = store.put("vms", "v1", {})
    finally:
        os.umask(old)
    assert stat.S_IMODE(obj.path.stat().st_mode) == 0o640
    assert stat.S_IMODE(obj.path.parent.stat().st_mode) == 0o750
    assert stat.S_IMODE(store.root.stat().st_mode) == 0o750
    assert obj.path.stat().st_uid == os.getuid()


def test_missing_objects_raise_key_error(store: ObjectStore):
    store.put("vms", "there", {})
    for call in (lambda: store.get("vms", "gone"), lambda: store.delete("vms", "gone"),
                 lambda: store.update("vms", "gone", dict),
                 lambda: store.rename("vms", "gone", "other"), lambda: store.get("nokind", "x")):
        with pytest.raises(KeyError):
            call()
    assert files(store.root / "vms") == [".there.lock", "there.json"]  # none for "gone"


def test_data_that_is_not_a_json_object_is_refused_before_anything_is_written(store: ObjectStore):
    store.put("vms", "v", {"ok": 1})
    with pytest.raises(TypeError):
        store.put("vms", "v", [1, 2])  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        store.put("vms", "v", {"x": float("nan")})
    with pytest.raises(TypeError):
        store.update("vms", "v", lambda d: None)  # type: ignore[arg-type,return-value]
    assert store.get("vms", "v").data == {"ok": 1}
    assert files(store.root / "vms") == [".v.lock", "v.json"]


# -- Exists and Conflict --------------------------------------------------------------


def test_create_refuses_an_object_that_exists_even_one_made_by_hand(store: ObjectStore):
    store.create("templates", "a", {"v": 1})
    with pytest.raises(Exists):
        store.create("templates", "a", {"v": 2})
    write_by_hand(store.root / "templates" / "b.json", '{"v": "hand"}')
    with pytest.raises(Exists):
        store.create("templates", "b", {"v": 2})
    assert store.get("templates", "a").data == {"v": 1}
    assert store.get("templates", "b").data == {"v": "hand"}


def test_rename_onto_an_existing_name_is_refused_and_changes_nothing(store: ObjectStore):
    store.put("vms", "a", {"v": "a"})
    store.put("vms", "b", {"v": "b"})
    with pytest.raises(Exists):
        store.rename("vms", "a", "b")
    assert store.get("vms", "a").data == {"v": "a"} and store.get("vms", "b").data == {"v": "b"}
    assert store.rename("vms", "a", "a").data == {"v": "a"}  # to itself: nothing to do


def test_put_with_a_stale_version_is_a_conflict(store: ObjectStore):
    first = store.put("vms", "v", {"n": 1})
    second = store.put("vms", "v", {"n": 2}, expect_version=first.version)
    with pytest.raises(Conflict) as e:
        store.put("vms", "v", {"n": 3}, expect_version=first.version)
    assert e.value.found == second.version
    assert store.get("vms", "v").data == {"n": 2}
    store.delete("vms", "v")
    with pytest.raises(Conflict):
        store.put("vms", "v", {"n": 4}, expect_version=second.version)


def test_a_version_follows_the_content_including_hand_edits(store: ObjectStore):
    a = store.put("vms", "v", {"n": 1})
    assert store.put("vms", "v", {"n": 1}).version == a.version  # same bytes, same version
    write_by_hand(a.path, '{"n": 2}')
    with pytest.raises(Conflict):
        store.put("vms", "v", {"n": 3}, expect_version=a.version)


# -- names ----------------------------------------------------------------------------

BAD_NAMES = ["../x", "a/b", ".hidden", "x\x00", "", "x" * 200, "..", "a..b", "/etc", "a\\b",
             "x\n", " x", "-x", "x.json", "X.JSON", "é"]


@pytest.mark.parametrize("bad", BAD_NAMES)
def test_names_that_could_escape_or_hide_are_refused(tmp_path: Path, bad: str):
    store = ObjectStore(tmp_path / "objects")
    calls: list[Callable[[], Any]] = [
        lambda: store.get("vms", bad), lambda: store.put("vms", bad, {}),
        lambda: store.create("vms", bad, {}), lambda: store.delete("vms", bad),
        lambda: store.update("vms", bad, dict), lambda: store.rename("vms", "ok", bad),
        lambda: store.rename("vms", bad, "ok"), lambda: store.locked("vms", bad).__enter__(),
        lambda: store.put(bad, "ok", {}), lambda: store.list(bad),
    ]
    store.put("vms", "ok", {})
    before = files(tmp_path)
    for call in calls:
        with pytest.raises(InvalidName):
            call()
    assert files(tmp_path) == before


@pytest.mark.parametrize("good", ["a", "Fedora-40", "win_2022.x+1", "9", "x" * 128])
def test_ordinary_names_are_accepted(store: ObjectStore, good: str):
    assert store.put(good, good, {}).name == good
    assert store.get(good, good).kind == good


# -- broken files ---------------------------------------------------------------------


def test_broken_files_are_listed_flagged_and_do_not_hide_the_others(store: ObjectStore):
    store.put("templates", "good", {"ok": True})
    folder = store.root / "templates"
    write_by_hand(folder / "broken.json", '{\n  "a": 1,\n  "b" 2\n}\n')
    write_by_hand(folder / "array.json", "[1, 2]\n")
    listed = {o.name: o for o in store.list("templates")}
    assert list(listed) == ["array", "broken", "good"]
    assert listed["good"].invalid is None and listed["good"].data == {"ok": True}
    assert listed["broken"].invalid == "not valid JSON: line 3 column 7: Expecting ':' delimiter"
    assert listed["array"].invalid is not None
    assert listed["array"].invalid.startswith("not a JSON object")
    assert listed["broken"].data == {} and listed["array"].data == {}
    assert store.get("templates", "broken") == listed["broken"]


def test_a_broken_file_cannot_be_updated_but_can_be_replaced(store: ObjectStore):
    write_by_hand(store.root / "vms" / "v.json", "{oops")
    with pytest.raises(InvalidObject):
        store.update("vms", "v", lambda d: {**d, "x": 1})
    assert (store.root / "vms" / "v.json").read_text() == "{oops"
    assert store.put("vms", "v", {"x": 1}).invalid is None


@pytest.mark.parametrize("content, reason", [
    (b"", "not valid JSON: line 1 column 1: Expecting value"),
    (b'{"x": NaN}', "not valid JSON: NaN is not allowed"),
    (b'{"x": "\xff"}', "not valid UTF-8: byte 7"),
    (b'"text"', "not a JSON object but a string"),
    (b"null", "not a JSON object but null"),
    (b"[" * 100_000, "not valid JSON: nested too deeply"),
    (b'\xef\xbb\xbf{"bom": 1}', None),
], ids=["empty", "nan", "latin-1", "string", "null", "deep", "bom"])
def test_each_kind_of_broken_file_says_why(store: ObjectStore, content: bytes, reason: str | None):
    path = store.root / "vms" / "v.json"
    path.parent.mkdir()
    path.write_bytes(content)
    assert store.get("vms", "v").invalid == reason


def test_odd_files_are_never_fatal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    store = ObjectStore(tmp_path / "objects", max_bytes=100)
    folder = store.root / "vms"
    folder.mkdir()
    os.mkfifo(folder / "fifo.json")  # reading it would block for ever
    (folder / "big.json").write_text('{"x": "' + "y" * 200 + '"}')
    (folder / "dir.json").mkdir()
    (folder / "loop.json").symlink_to(folder / "loop.json")
    (folder / "my template.json").write_text("{}")  # no object can have this name
    (folder / "notes.txt").write_text("not an object")
    (folder / "unreadable.json").write_text("{}")
    real_open = os.open

    def open_refusing(path: Any, *args: Any) -> int:
        if str(path).endswith("unreadable.json"):  # chmod 0 would not stop root
            raise PermissionError(13, "Permission denied")
        return real_open(path, *args)

    monkeypatch.setattr(os, "open", open_refusing)
    listed = {o.name: o.invalid for o in store.list("vms")}
    assert listed["fifo"] == "not a regular file"
    assert listed["big"] is not None and listed["big"].startswith("too large")
    assert listed["loop"] is not None and listed["loop"].startswith("cannot read")
    assert "dir" not in listed and "my template" not in listed
    assert listed["unreadable"] == "cannot read: Permission denied"
    with pytest.raises(ValueError):
        store.put("vms", "v", {"x": "y" * 200})


# -- atomic writes --------------------------------------------------------------------


def test_a_crash_mid_write_leaves_the_old_file_and_no_temporary_file(
        store: ObjectStore, monkeypatch: pytest.MonkeyPatch):
    store.put("vms", "v", {"n": 1})

    def crash(*args: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        store.put("vms", "v", {"n": 2})
    with pytest.raises(OSError):
        store.update("vms", "v", lambda d: {"n": 3})
    monkeypatch.undo()
    assert store.get("vms", "v").data == {"n": 1}
    assert files(store.root / "vms") == [".v.lock", "v.json"]


@pytest.mark.parametrize("failing", ["fsync", "write", "link"])
def test_any_failure_while_writing_leaves_no_temporary_file(
        store: ObjectStore, monkeypatch: pytest.MonkeyPatch, failing: str):
    store.put("vms", "v", {"n": 1})

    def fail(*args: Any, **kwargs: Any) -> Any:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, failing, fail)
    with pytest.raises(OSError):
        if failing == "link":  # create() links the full temporary file into place
            store.create("vms", "w", {})
        else:
            store.put("vms", "v", {"n": 2})
    monkeypatch.undo()
    assert [f for f in files(store.root / "vms") if not f.endswith(".lock")] == ["v.json"]
    assert store.get("vms", "v").data == {"n": 1}


def test_the_file_is_synced_before_the_rename_and_the_folder_after(
        store: ObjectStore, monkeypatch: pytest.MonkeyPatch):
    calls: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        calls.append("fsync dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "fsync file")
        real_fsync(fd)

    def replace(src: Any, dst: Any) -> None:
        calls.append("replace")
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    store.put("vms", "v", {})
    assert calls == ["fsync file", "replace", "fsync dir"]


def test_stale_temporary_files_are_swept_when_a_store_opens(tmp_path: Path):
    folder = tmp_path / "objects" / "vms"
    folder.mkdir(parents=True)
    old = folder / ".v.json.tmp-123-abcdef"
    fresh = folder / ".w.json.tmp-456-012345"  # maybe a write in progress elsewhere
    for p in (old, fresh):
        p.write_text("{")
    two_hours_ago = time.time() - 7200
    os.utime(old, (two_hours_ago, two_hours_ago))
    store = ObjectStore(tmp_path / "objects")
    assert files(folder) == [fresh.name]
    assert store.list("vms") == []  # temporary files are never objects


# -- locks and concurrency ------------------------------------------------------------


def test_locked_holds_an_flock_that_other_processes_see(store: ObjectStore):
    lock_file = store.root / "vms" / ".v.lock"

    def try_flock() -> bool:
        fd = os.open(lock_file, os.O_RDWR)  # another open file description, as in another process
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False
        finally:
            os.close(fd)

    with store.locked("vms", "v"):
        assert not try_flock()
        store.put("vms", "v", {"n": 1})  # re-entrant for the holder
        assert not try_flock()
    assert try_flock()


def test_another_thread_waits_for_the_lock(store: ObjectStore):
    events: list[str] = []
    started = threading.Event()

    def note_write(data: dict[str, Any]) -> dict[str, Any]:
        events.append("other thread writes")
        return data

    def writer() -> None:
        started.set()
        store.update("vms", "v", note_write)

    store.put("vms", "v", {})
    with store.locked("vms", "v"):
        t = threading.Thread(target=writer)
        t.start()
        started.wait()
        time.sleep(0.05)
        events.append("holder releases")
    t.join(5)
    assert events == ["holder releases", "other thread writes"]


def test_8_threads_updating_one_object_lose_no_increment(store: ObjectStore, no_fsync: None):
    store.put("counters", "c", {"n": 0})

    def bump() -> None:
        for _ in range(200):
            store.update("counters", "c", lambda d: {"n": d["n"] + 1})

    threads = [threading.Thread(target=bump) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert store.get("counters", "c").data == {"n": 1600}
    assert files(store.root / "counters") == [".c.lock", "c.json"]


def test_threads_racing_to_create_one_object_have_one_winner(store: ObjectStore, no_fsync: None):
    results: list[str] = []
    barrier = threading.Barrier(8)

    def create(i: int) -> None:
        barrier.wait()
        try:
            store.create("vms", "v", {"by": i})
            results.append("created")
        except Exists:
            results.append("exists")

    threads = [threading.Thread(target=create, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert sorted(results) == ["created"] + ["exists"] * 7


def test_two_stores_on_one_folder_share_the_lock(tmp_path: Path):
    a = ObjectStore(tmp_path / "objects")
    b = ObjectStore(str(tmp_path / "x" / ".." / "objects"))  # another spelling of the root
    with a.locked("vms", "v"):
        b.put("vms", "v", {})  # same thread: re-entrant, not a self-deadlock
    assert a.get("vms", "v").data == {}


# -- the watcher ----------------------------------------------------------------------


def run_now(f: Callable[[], Any]) -> defer.Deferred[Any]:
    return defer.maybeDeferred(f)


class Recorder:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str, str | None]] = []

    def __call__(self, kind: str, name: str, change: str, obj: StoredObject | None) -> None:
        self.seen.append((change, kind, name, obj.invalid if obj else None))

    def take(self) -> list[tuple[str, str, str, str | None]]:
        got, self.seen = self.seen, []
        return got


@pytest.fixture
def watching(store: ObjectStore) -> Iterator[tuple[task.Clock, Recorder, ObjectWatcher]]:
    clock, rec = task.Clock(), Recorder()
    watcher = ObjectWatcher(store, clock, 1.0, rec, run_in_thread=run_now)
    watcher.startService()
    yield clock, rec, watcher
    watcher.stopService()


def test_the_first_scan_reports_what_is_there(store: ObjectStore):
    store.put("templates", "t", {})
    store.put("vms", "v", {})
    rec = Recorder()
    ObjectWatcher(store, task.Clock(), 1.0, rec, run_in_thread=run_now).startService()
    assert rec.take() == [("added", "templates", "t", None), ("added", "vms", "v", None)]


def test_the_watcher_sees_hand_edits_added_changed_and_removed(store: ObjectStore, watching):
    clock, rec, _ = watching
    path = store.root / "templates" / "t.json"
    write_by_hand(path, '{"memory": 1024}')
    clock.advance(1)
    assert rec.take() == [("added", "templates", "t", None)]
    clock.advance(1)
    assert rec.take() == []  # nothing new, nothing said

    write_by_hand(path, '{"memory": 2048}')
    clock.advance(1)
    assert rec.take() == [("changed", "templates", "t", None)]

    path.unlink()
    clock.advance(1)
    assert rec.take() == [("removed", "templates", "t", None)]


def test_the_watcher_reports_our_own_writes_and_renames(store: ObjectStore, watching):
    clock, rec, _ = watching
    store.put("vms", "a", {})
    clock.advance(1)
    store.rename("vms", "a", "b")
    clock.advance(1)
    assert rec.take() == [("added", "vms", "a", None), ("removed", "vms", "a", None),
                          ("added", "vms", "b", None)]


def test_a_rewrite_with_the_same_content_is_not_a_change(store: ObjectStore, watching):
    clock, rec, _ = watching
    store.put("vms", "v", {"n": 1})
    clock.advance(1)
    store.put("vms", "v", {"n": 1})
    clock.advance(1)
    assert rec.take() == [("added", "vms", "v", None)]


def test_a_broken_file_is_logged_once_with_its_reason_then_seen_fixed(store: ObjectStore,
                                                                       watching):
    clock, rec, _ = watching
    path = store.root / "templates" / "t.json"
    with capturedLogs() as logs:
        write_by_hand(path, '{"memory": }')
        for _ in range(5):
            clock.advance(1)
    reason = "not valid JSON: line 1 column 12: Expecting value"
    assert rec.take() == [("added", "templates", "t", reason)]
    warnings = [e for e in logs if e.get("log_format", "").startswith("object {kind}/{name} is")]
    assert len(warnings) == 1
    assert warnings[0]["reason"] == reason and warnings[0]["name"] == "t"

    with capturedLogs() as logs:
        write_by_hand(path, '{"memory": 512}')
        clock.advance(1)
    assert rec.take() == [("changed", "templates", "t", None)]
    assert [e["log_format"] for e in logs] == ["object {kind}/{name} is valid again"]


def test_an_unaddressable_file_name_is_logged_once(store: ObjectStore, watching):
    clock, rec, _ = watching
    with capturedLogs() as logs:
        write_by_hand(store.root / "vms" / "my vm.json", "{}")
        for _ in range(3):
            clock.advance(1)
    assert rec.take() == []
    assert [e["path"] for e in logs if "ignoring" in e["log_format"]] == ["vms/my vm.json"]


def test_a_failing_handler_or_scan_does_not_stop_the_watching(store: ObjectStore):
    clock, calls = task.Clock(), []
    fail_scan = [True]

    def handler(kind: str, name: str, change: str, obj: StoredObject | None) -> None:
        calls.append(name)
        raise RuntimeError("consumer bug")

    def flaky(f: Callable[[], Any]) -> defer.Deferred[Any]:
        if fail_scan.pop() if fail_scan else False:
            return defer.fail(OSError("scan failed"))
        return defer.maybeDeferred(f)

    watcher = ObjectWatcher(store, clock, 1.0, handler, run_in_thread=flaky)
    with capturedLogs() as logs:
        watcher.startService()  # the first scan fails
        store.put("vms", "a", {})
        clock.advance(1)
        store.put("vms", "b", {})
        clock.advance(1)
    assert calls == ["a", "b"]
    assert sum(1 for e in logs if e.get("log_failure")) == 3
    watcher.stopService()


def test_stopping_waits_for_the_scan_in_flight(store: ObjectStore):
    pending: list[tuple[defer.Deferred[Any], Callable[[], Any]]] = []

    def later(f: Callable[[], Any]) -> defer.Deferred[Any]:
        d: defer.Deferred[Any] = defer.Deferred()
        pending.append((d, f))
        return d

    clock = task.Clock()
    watcher = ObjectWatcher(store, clock, 1.0, run_in_thread=later)
    watcher.startService()
    stopped = watcher.stopService()
    assert not stopped.called and len(pending) == 1  # one scan at a time, still running
    d, f = pending.pop()
    d.callback(f())
    assert stopped.called
    clock.advance(10)
    assert pending == []  # no scan after the stop


def test_only_one_scan_runs_at_a_time(store: ObjectStore):
    pending: list[defer.Deferred[Any]] = []

    def never_done(f: Callable[[], Any]) -> defer.Deferred[Any]:
        pending.append(defer.Deferred())
        return pending[-1]

    clock = task.Clock()
    watcher = ObjectWatcher(store, clock, 1.0, run_in_thread=never_done)
    watcher.startService()
    clock.advance(5)
    assert len(pending) == 1


def test_the_watcher_needs_threads_from_somewhere(store: ObjectStore):
    with pytest.raises(TypeError):
        ObjectWatcher(store, task.Clock())


def test_recent_files_are_reread_on_each_scan_and_settled_ones_are_not(
        store: ObjectStore, monkeypatch: pytest.MonkeyPatch):
    store.put("vms", "v", {})
    reads: list[str] = []
    real_get = store.get

    def counting_get(kind: str, name: str) -> StoredObject:
        reads.append(name)
        return real_get(kind, name)

    monkeypatch.setattr(store, "get", counting_get)
    objectstore.scan(store, objectstore.scan(store, {}).seen)
    # Just written: a same-size rewrite within the timestamp granularity would
    # not change its stat, so only its content can be trusted.
    assert reads == ["v", "v"]
    reads.clear()
    monkeypatch.setattr(store, "wall_clock", lambda: time.time() + 60)
    objectstore.scan(store, objectstore.scan(store, {}).seen)
    assert reads == ["v"]


# -- a model check --------------------------------------------------------------------

NAMES = st.sampled_from(["a", "b", "c"])
DATA = st.dictionaries(st.sampled_from(["x", "y"]), st.integers(-3, 3), max_size=2)


class StoreMatchesADict(RuleBasedStateMachine):
    """Any sequence of put/create/delete/rename keeps list() equal to a plain dict."""

    def __init__(self) -> None:
        super().__init__()
        self.tmp = tempfile.TemporaryDirectory()
        self.store = ObjectStore(self.tmp.name)
        self.model: dict[str, dict[str, int]] = {}

    def teardown(self) -> None:
        self.tmp.cleanup()

    @rule(name=NAMES, data=DATA)
    def put(self, name: str, data: dict[str, int]) -> None:
        self.store.put("vms", name, data)
        self.model[name] = data

    @rule(name=NAMES, data=DATA)
    def create(self, name: str, data: dict[str, int]) -> None:
        try:
            self.store.create("vms", name, data)
        except Exists:
            assert name in self.model
        else:
            assert name not in self.model
            self.model[name] = data

    @rule(name=NAMES)
    def delete(self, name: str) -> None:
        try:
            self.store.delete("vms", name)
        except KeyError:
            assert name not in self.model
        else:
            del self.model[name]

    @rule(old=NAMES, new=NAMES)
    def rename(self, old: str, new: str) -> None:
        try:
            self.store.rename("vms", old, new)
        except KeyError:
            assert old not in self.model
        except Exists:
            assert old != new and new in self.model
        else:
            self.model[new] = self.model.pop(old)

    @invariant()
    def listing_matches(self) -> None:
        listed = self.store.list("vms")
        assert {o.name: o.data for o in listed} == self.model
        assert all(o.invalid is None for o in listed)
        folder = Path(self.tmp.name) / "vms"
        assert not [p for p in folder.glob(".*") if ".tmp-" in p.name]


def test_any_sequence_of_writes_keeps_list_equal_to_a_dict(no_fsync: None) -> None:
    run_state_machine_as_test(StoreMatchesADict, settings=settings(
        max_examples=40, stateful_step_count=25, deadline=None))


def test_json_round_trips_through_the_file(store: ObjectStore):
    data = {"nested": {"list": [1, "two", None, True, 3.5]}, "unicode": "日本"}
    assert store.put("vms", "v", data).data == json.loads(json.dumps(data))
    assert store.get("vms", "v").data == data
