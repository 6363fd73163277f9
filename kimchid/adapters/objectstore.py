"""Objects (templates, VM metadata) as JSON files, one per object: ``<root>/<kind>/<name>.json``.

Plain files so that people can read, back up and edit them by hand; the
store copes with that:

- Writes are atomic: a temporary file in the same directory, fsync, rename
  onto the target, fsync of the directory.  A crash leaves the old file or the
  new one, never half of one, and no temporary file behind (those left by a
  killed process are swept when a store opens, once they are an hour old).
- Writes to one object are serialised across threads *and* processes: a
  thread lock, then ``flock`` on ``<kind>/.<name>.lock``.  The daemon and the
  workers all write through this class.
- Nothing is cached: every read goes to the file, so files added, changed or
  removed by hand are seen at once.  :class:`ObjectWatcher` polls the tree for
  those who need to be told.
- A broken file (not JSON, not a JSON object, unreadable) is an object whose
  ``invalid`` field says why; it is listed with the others and never raises.

An object's ``version`` is a hash of its file's bytes, so it changes exactly
when the content does (timestamps and inode numbers can repeat within the
filesystem's timestamp granularity; a content hash cannot give a false "no
change" to optimistic concurrency).
"""

from __future__ import annotations

import builtins
import errno
import fcntl
import hashlib
import json
import os
import re
import secrets
import stat
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple, cast

from twisted.application.service import Service
from twisted.internet import defer, task, threads
from twisted.internet.interfaces import IReactorThreads, IReactorTime
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool

__all__ = [
    "Conflict",
    "Exists",
    "InvalidName",
    "InvalidObject",
    "ObjectStore",
    "ObjectWatcher",
    "StoredObject",
]

log = Logger()

SUFFIX = ".json"
FILE_MODE = 0o640
DIR_MODE = 0o750
#: Larger files are reported invalid rather than read: the watcher reads every
#: changed file, and a stray multi-gigabyte file must not stall it.
MAX_BYTES = 16 * 1024 * 1024
#: Temporary files younger than this may belong to a write in progress in
#: another process, so only older ones are swept.
STALE_TEMP_AGE = 3600.0

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,127}")
_TEMP = re.compile(r"\..+\.json\.tmp-[0-9]+-[0-9a-f]+")


class InvalidName(ValueError):
    """A kind or object name that is not allowed (it could escape its folder, or hide)."""

    def __init__(self, what: str, value: str, reason: str) -> None:
        self.what = what
        self.value = value
        self.reason = reason
        super().__init__(f"{what} {value!r} is not allowed: {reason}")


class Exists(Exception):
    """``create`` or ``rename`` onto an object that is already there."""

    def __init__(self, kind: str, name: str) -> None:
        self.kind = kind
        self.name = name
        super().__init__(f"{kind}/{name} already exists")


class Conflict(Exception):
    """``put(expect_version=...)`` found another version: someone wrote in between."""

    def __init__(self, kind: str, name: str, expected: str, found: str | None) -> None:
        self.kind = kind
        self.name = name
        self.expected = expected
        self.found = found
        now = f"is at version {found}" if found is not None else "no longer exists"
        super().__init__(f"{kind}/{name} {now}, not {expected}")


class InvalidObject(Exception):
    """``update`` of a broken file: there is no data to update (``put`` replaces it)."""

    def __init__(self, kind: str, name: str, reason: str) -> None:
        self.kind = kind
        self.name = name
        self.reason = reason
        super().__init__(f"{kind}/{name} is invalid: {reason}")


@dataclass(frozen=True)
class StoredObject:
    """One object as read from (or written to) its file.

    ``data`` is ``{}`` when ``invalid`` is set; it is a fresh dict on every
    read, the caller's to keep or change.
    """

    kind: str
    name: str
    data: dict[str, Any]
    version: str
    invalid: str | None
    path: Path


def check_name(value: str, what: str = "name") -> str:
    """Return ``value`` if it can name a kind or an object, else raise :class:`InvalidName`.

    The pattern alone keeps a name inside its folder (no ``/``, no NUL, no
    leading dot); the other rules keep names unambiguous to people.
    """
    if not isinstance(value, str):
        raise InvalidName(what, repr(value), "not a string")
    # fullmatch, not match with $: "$" also matches before a trailing newline.
    if not _NAME.fullmatch(value):
        raise InvalidName(what, value, "use 1 to 128 letters, digits and _ . + -, "
                                       "starting with a letter or digit")
    if ".." in value:
        raise InvalidName(what, value, "'..' is not allowed")
    if value.lower().endswith(SUFFIX):
        # x.json would be stored as x.json.json: refused so that a file's name
        # and its object's name never look alike but differ.
        raise InvalidName(what, value, f"must not end in {SUFFIX}")
    return value


def _version(raw: bytes) -> str:
    return hashlib.blake2b(raw, digest_size=12).hexdigest()


def _refuse_constant(name: str) -> Any:
    # json accepts NaN/Infinity, which are not JSON and could not be written back.
    raise ValueError(f"not valid JSON: {name} is not allowed")


def parse(raw: bytes) -> tuple[dict[str, Any], str | None]:
    """``(data, None)`` for a JSON object, else ``({}, the human reason)``."""
    try:
        text = raw.decode("utf-8-sig")  # tolerate the BOM some editors add
    except UnicodeDecodeError as e:
        return {}, f"not valid UTF-8: byte {e.start}"
    try:
        value = json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError as e:
        return {}, f"not valid JSON: line {e.lineno} column {e.colno}: {e.msg}"
    except ValueError as e:
        return {}, str(e)
    except RecursionError:
        return {}, "not valid JSON: nested too deeply"
    if not isinstance(value, dict):
        return {}, f"not a JSON object but {_json_type(value)}"
    return value, None


def _json_type(value: Any) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if value is None:
        return "null"
    return "a number"


def dump(data: dict[str, Any], max_bytes: int = MAX_BYTES) -> bytes:
    """The file's bytes for ``data``: indented, keys sorted, a final newline, for human editors."""
    if not isinstance(data, dict):
        raise TypeError(f"an object's data must be a dict, not {type(data).__name__}")
    text = json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False)
    raw = (text + "\n").encode("utf-8")
    if len(raw) > max_bytes:
        raise ValueError(f"object too large: {len(raw)} bytes, the limit is {max_bytes}")
    return raw


def _make_dir(path: Path) -> None:
    """Create ``path`` (and missing parents) as ``0o750``, whatever the umask."""
    if path.is_dir():
        return
    if not path.parent.is_dir():
        _make_dir(path.parent)
    try:
        os.mkdir(path, DIR_MODE)
    except FileExistsError:
        return  # another thread or process was first
    os.chmod(path, DIR_MODE)


def _fsync_dir(path: Path) -> None:
    # Makes the rename itself durable, not only the file's content.
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _link_unsupported(e: OSError) -> bool:
    return e.errno in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOSYS)


# -- locks --------------------------------------------------------------------------


class _Held:
    __slots__ = ("rlock", "users", "depth", "fd")

    def __init__(self) -> None:
        self.rlock = threading.RLock()
        self.users = 0  # threads holding or waiting: the entry is dropped at 0
        self.depth = 0  # re-entries by the holding thread
        self.fd = -1


class _ObjectLocks:
    """Per-object locks shared by every store of this process.

    A thread takes the thread lock, then ``flock`` on the lock file; the
    holding thread may re-enter (``put`` inside ``locked``).  Entries live only
    while someone holds or waits for them, so the table does not grow with the
    number of objects.  Lock files are never deleted: unlinking one while
    another process waits on it would let two processes hold "the" lock.
    """

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._held: dict[str, _Held] = {}

    @contextmanager
    def hold(self, lock_path: Path) -> Iterator[None]:
        key = str(lock_path)
        with self._mutex:
            entry = self._held.setdefault(key, _Held())
            entry.users += 1
        try:
            with entry.rlock:
                if entry.depth == 0:
                    entry.fd = _flock(lock_path)
                entry.depth += 1
                try:
                    yield
                finally:
                    entry.depth -= 1
                    if entry.depth == 0:
                        fd, entry.fd = entry.fd, -1
                        os.close(fd)  # releases the flock
        finally:
            with self._mutex:
                entry.users -= 1
                if entry.users == 0:
                    del self._held[key]

    def after_fork(self) -> None:
        # The child inherits neither the threads holding these locks nor any
        # reason to keep other processes waiting on the inherited flocks.
        for entry in self._held.values():
            if entry.fd >= 0:
                try:
                    os.close(entry.fd)
                except OSError:
                    pass
        self._mutex = threading.Lock()
        self._held = {}


def _flock(path: Path) -> int:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, FILE_MODE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
    except BaseException:
        os.close(fd)
        raise
    return fd


_LOCKS = _ObjectLocks()
os.register_at_fork(after_in_child=_LOCKS.after_fork)


# -- the store ----------------------------------------------------------------------


class ObjectStore:
    """JSON objects under ``root``; synchronous, for threads and worker processes alike."""

    def __init__(self, root: Path | str, *, max_bytes: int = MAX_BYTES,
                 wall_clock: Callable[[], float] = time.time) -> None:
        # One spelling of the root, so that two stores of one process share
        # their thread locks (two flocks of one thread on one file would deadlock).
        self.root = Path(root).resolve()
        self.max_bytes = max_bytes
        self.wall_clock = wall_clock  # compared with file times, hence wall time
        _make_dir(self.root)
        self.sweep_temp_files()

    # -- paths ---------------------------------------------------------------------

    def path(self, kind: str, name: str) -> Path:
        """The file of ``kind/name`` (whether or not it exists)."""
        return self.root / check_name(kind, "kind") / (check_name(name) + SUFFIX)

    def _lock_path(self, kind: str, name: str) -> Path:
        return self.root / kind / f".{name}.lock"

    # -- reading -------------------------------------------------------------------

    def kinds(self) -> list[str]:
        """The kinds that have a folder, sorted."""
        try:
            entries = list(os.scandir(self.root))
        except FileNotFoundError:
            return []
        return sorted(e.name for e in entries if _is_name(e.name, "kind") and _is_dir(e))

    def list(self, kind: str) -> list[StoredObject]:
        """Every object of ``kind``, sorted by name; broken files included, with ``invalid`` set.

        Files whose names could not be addressed (``my template.json``) are
        left out: :class:`ObjectWatcher` logs them.
        """
        check_name(kind, "kind")
        out = []
        for name, _entry in self._entries(kind):
            try:
                out.append(self._load(kind, name))
            except KeyError:
                continue  # removed since the folder was read
        return out

    def _entries(self, kind: str) -> builtins.list[tuple[str, os.DirEntry[str]]]:
        """``(name, entry)`` of the object files of ``kind``, sorted; [] if the folder is gone."""
        try:
            entries = list(os.scandir(self.root / kind))
        except (FileNotFoundError, NotADirectoryError):
            return []
        found = []
        for e in entries:
            if e.name.startswith(".") or not e.name.endswith(SUFFIX):
                continue
            name = e.name[: -len(SUFFIX)]
            if _is_name(name) and not _is_dir(e):
                found.append((name, e))
        found.sort(key=lambda pair: pair[0])
        return found

    def get(self, kind: str, name: str) -> StoredObject:
        """The object, read now; :class:`KeyError` if there is none."""
        return self._load(kind, name)

    def _load(self, kind: str, name: str) -> StoredObject:
        path = self.path(kind, name)
        try:
            raw = self._read(path)
        except FileNotFoundError:
            raise KeyError(f"{kind}/{name}") from None
        except IsADirectoryError:
            raise KeyError(f"{kind}/{name}") from None
        except _Unreadable as e:
            return StoredObject(kind, name, {}, e.version, e.reason, path)
        data, invalid = parse(raw)
        return StoredObject(kind, name, data, _version(raw), invalid, path)

    def _read(self, path: Path) -> bytes:
        try:
            st = os.stat(path)
        except OSError as e:
            if isinstance(e, FileNotFoundError | NotADirectoryError):
                raise FileNotFoundError(path) from e
            raise _Unreadable(f"cannot read: {e.strerror}", f"error-{e.errno}") from e
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(path)
        if not stat.S_ISREG(st.st_mode):
            # Never open a FIFO or a device someone named *.json: it could block or act.
            raise _unreadable(st, "not a regular file")
        if st.st_size > self.max_bytes:
            raise _unreadable(st, f"too large: {st.st_size} bytes, the limit is {self.max_bytes}")
        try:
            # O_NONBLOCK: should the file be swapped for a FIFO after the stat,
            # open must not wait for a writer.
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise
        except OSError as e:
            raise _Unreadable(f"cannot read: {e.strerror}", f"error-{e.errno}") from e
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise _unreadable(st, "not a regular file")
            chunks = []
            left = self.max_bytes + 1
            while left > 0:
                chunk = os.read(fd, min(left, 1 << 20))
                if not chunk:
                    break
                chunks.append(chunk)
                left -= len(chunk)
        except OSError as e:
            raise _Unreadable(f"cannot read: {e.strerror}", f"error-{e.errno}") from e
        finally:
            os.close(fd)
        raw = b"".join(chunks)
        if len(raw) > self.max_bytes:  # grew since the stat
            raise _unreadable(os.stat(path), f"too large: more than {self.max_bytes} bytes")
        return raw

    def _current_version(self, kind: str, name: str) -> str | None:
        try:
            return self._load(kind, name).version
        except KeyError:
            return None

    # -- writing -------------------------------------------------------------------

    @contextmanager
    def locked(self, kind: str, name: str) -> Iterator[None]:
        """Hold the object's lock: other threads and processes wait to write it.

        Re-entrant within a thread, so ``put``/``delete``/... may be called inside.
        """
        self.path(kind, name)  # validates both names
        _make_dir(self.root / kind)
        with _LOCKS.hold(self._lock_path(kind, name)):
            yield

    def put(self, kind: str, name: str, data: dict[str, Any], *,
            expect_version: str | None = None) -> StoredObject:
        """Create or replace the object atomically.

        With ``expect_version``, raise :class:`Conflict` unless the file is
        still at that version (a missing file is a conflict too).
        """
        path = self.path(kind, name)
        raw = dump(data, self.max_bytes)  # bad data fails before anything is touched
        with self.locked(kind, name):
            if expect_version is not None:
                found = self._current_version(kind, name)
                if found != expect_version:
                    raise Conflict(kind, name, expect_version, found)
            self._write(path, raw, exclusive=False)
        return self._written(kind, name, path, raw)

    def create(self, kind: str, name: str, data: dict[str, Any]) -> StoredObject:
        """Create the object; :class:`Exists` if it is there, even if made by hand or elsewhere."""
        path = self.path(kind, name)
        raw = dump(data, self.max_bytes)
        with self.locked(kind, name):
            try:
                self._write(path, raw, exclusive=True)
            except FileExistsError:
                raise Exists(kind, name) from None
        return self._written(kind, name, path, raw)

    def update(self, kind: str, name: str,
               fn: Callable[[dict[str, Any]], dict[str, Any]]) -> StoredObject:
        """Read, ``fn(data)``, write, all under the object's lock.

        :class:`KeyError` if missing, :class:`InvalidObject` if the file is broken.
        """
        path = self.path(kind, name)
        if not os.path.lexists(path):
            raise KeyError(f"{kind}/{name}")  # before locking: no lock file for nothing
        with self.locked(kind, name):
            current = self._load(kind, name)
            if current.invalid is not None:
                raise InvalidObject(kind, name, current.invalid)
            raw = dump(fn(current.data), self.max_bytes)
            self._write(path, raw, exclusive=False)
        return self._written(kind, name, path, raw)

    def delete(self, kind: str, name: str) -> None:
        """Remove the object; :class:`KeyError` if it is not there."""
        path = self.path(kind, name)
        if not os.path.lexists(path):
            raise KeyError(f"{kind}/{name}")
        with self.locked(kind, name):
            if os.path.isdir(path):
                raise KeyError(f"{kind}/{name}")
            try:
                os.unlink(path)
            except FileNotFoundError:
                raise KeyError(f"{kind}/{name}") from None
            _fsync_dir(path.parent)

    def rename(self, kind: str, old: str, new: str) -> StoredObject:
        """Give the object another name atomically; :class:`Exists` if ``new`` is taken.

        The content, hence the version, is unchanged.  Renaming to the same name
        is a no-op.
        """
        src, dst = self.path(kind, old), self.path(kind, new)
        if old == new:
            return self._load(kind, old)
        if not os.path.lexists(src):
            raise KeyError(f"{kind}/{old}")
        with ExitStack() as stack:
            for name in sorted((old, new)):  # one order for everyone: no deadlock
                stack.enter_context(self.locked(kind, name))
            if not os.path.lexists(src) or os.path.isdir(src):
                raise KeyError(f"{kind}/{old}")
            try:
                # link fails if dst exists, even if it appeared by hand just now;
                # a crash between link and unlink leaves both names, never neither.
                os.link(src, dst, follow_symlinks=False)
                os.unlink(src)
            except FileExistsError:
                raise Exists(kind, new) from None
            except OSError as e:
                if not _link_unsupported(e):
                    raise
                if os.path.lexists(dst):
                    raise Exists(kind, new) from None
                os.rename(src, dst)
            _fsync_dir(dst.parent)
            return self._load(kind, new)

    def _write(self, target: Path, raw: bytes, *, exclusive: bool) -> None:
        """Temporary file, fsync, rename (or link when ``exclusive``), fsync of the folder.

        ``exclusive`` raises :class:`FileExistsError` if ``target`` exists.
        """
        directory = target.parent
        tmp = directory / f".{target.name}.tmp-{os.getpid()}-{secrets.token_hex(6)}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW,
                     FILE_MODE)
        placed = False
        try:
            try:
                os.fchmod(fd, FILE_MODE)  # whatever the umask
                view = memoryview(raw)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            finally:
                os.close(fd)
            if exclusive:
                try:
                    os.link(tmp, target)  # atomic "create if absent", with the full content
                except FileExistsError:
                    raise
                except OSError as e:
                    if not _link_unsupported(e):
                        raise
                    # No hard links here: under our lock, only a hand edit can race.
                    if os.path.lexists(target):
                        raise FileExistsError(target) from e
                    os.replace(tmp, target)
                    placed = True
            else:
                os.replace(tmp, target)
                placed = True
            _fsync_dir(directory)
        finally:
            if not placed:
                try:
                    os.unlink(tmp)
                except FileNotFoundError:
                    pass

    def _written(self, kind: str, name: str, path: Path, raw: bytes) -> StoredObject:
        # Parsed back from the bytes, so the caller sees exactly what get() would.
        data, invalid = parse(raw)
        return StoredObject(kind, name, data, _version(raw), invalid, path)

    # -- housekeeping --------------------------------------------------------------

    def sweep_temp_files(self, max_age: float = STALE_TEMP_AGE) -> int:
        """Remove temporary files older than ``max_age`` seconds, left by killed writers."""
        removed = 0
        deadline = self.wall_clock() - max_age
        for kind in self.kinds():
            try:
                entries = list(os.scandir(self.root / kind))
            except OSError:
                continue
            for e in entries:
                if not _TEMP.fullmatch(e.name):
                    continue
                try:
                    if e.stat(follow_symlinks=False).st_mtime < deadline:
                        os.unlink(e.path)
                        removed += 1
                        log.info("removed stale temporary file {path}", path=e.path)
                except FileNotFoundError:
                    continue
                except OSError as err:
                    log.warn("cannot remove temporary file {path}: {error}", path=e.path,
                             error=err.strerror)
        return removed


class _Unreadable(Exception):
    """A file there but not readable as an object: ``reason`` for people, ``version`` for diffs."""

    def __init__(self, reason: str, version: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.version = version


def _unreadable(st: os.stat_result, reason: str) -> _Unreadable:
    # No content to hash: the stat stands in, so a change of the file is still a new version.
    return _Unreadable(reason, f"stat-{st.st_mtime_ns}-{st.st_size}-{st.st_ino}")


def _is_name(value: str, what: str = "name") -> bool:
    try:
        check_name(value, what)
    except InvalidName:
        return False
    return True


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False


# -- watching -----------------------------------------------------------------------

Change = Literal["added", "changed", "removed"]
OnChange = Callable[[str, str, Change, StoredObject | None], None]
RunInThread = Callable[[Callable[[], Any]], "defer.Deferred[Any]"]

#: Files changed this recently may change again within the filesystem's
#: timestamp granularity without their stat changing ("racy git"), so they are
#: re-read on every scan until they are older.
RACY_SECONDS = 2.0


class _Seen(NamedTuple):
    sig: tuple[int, int, int, int]  # mtime_ns, size, ino, ctime_ns
    obj: StoredObject
    settled: bool  # old enough for its stat to be trusted


class _Scan(NamedTuple):
    seen: dict[tuple[str, str], _Seen]
    changes: list[tuple[Change, str, str, StoredObject | None]]
    bad_names: set[str]  # files whose names cannot be objects
    errors: dict[str, str]  # kind folder -> why it could not be read


def scan(store: ObjectStore, previous: Mapping[tuple[str, str], _Seen]) -> _Scan:
    """Compare the tree with ``previous``; read only files whose stat changed (or are racy)."""
    started = store.wall_clock()
    seen: dict[tuple[str, str], _Seen] = {}
    changes: list[tuple[Change, str, str, StoredObject | None]] = []
    bad: set[str] = set()
    errors: dict[str, str] = {}
    try:
        kinds = [e.name for e in os.scandir(store.root) if not e.name.startswith(".")
                 and _is_dir(e)]
    except FileNotFoundError:
        kinds = []
    except OSError as e:
        # An unreadable root is not "everything was deleted": keep what we knew.
        return _Scan(dict(previous), [], bad, {str(store.root): e.strerror or str(e)})
    for kind in sorted(kinds):
        if not _is_name(kind, "kind"):
            bad.add(f"{kind}/")
            continue
        try:
            entries = list(os.scandir(store.root / kind))
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError as e:
            errors[f"{store.root / kind}"] = e.strerror or str(e)
            seen.update((k, v) for k, v in previous.items() if k[0] == kind)
            continue
        for entry in sorted(entries, key=lambda entry: entry.name):
            if (entry.name.startswith(".") or not entry.name.endswith(SUFFIX)
                    or _is_dir(entry)):
                continue
            name = entry.name[: -len(SUFFIX)]
            if not _is_name(name):
                bad.add(f"{kind}/{entry.name}")
                continue
            try:
                st = entry.stat()  # before reading: the content is at least this new
            except FileNotFoundError:
                continue
            except OSError:  # a symlink loop, say: get() reports it as invalid
                try:
                    st = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
            sig = (st.st_mtime_ns, st.st_size, st.st_ino, st.st_ctime_ns)
            key = (kind, name)
            before = previous.get(key)
            if before is not None and before.sig == sig and before.settled:
                seen[key] = before
                continue
            try:
                obj = store.get(kind, name)
            except KeyError:
                continue
            settled = max(st.st_mtime_ns, st.st_ctime_ns) / 1e9 < started - RACY_SECONDS
            seen[key] = _Seen(sig, obj, settled)
            if before is None:
                changes.append(("added", kind, name, obj))
            elif before.obj.version != obj.version:
                changes.append(("changed", kind, name, obj))
    # Removals first: a rename then reads as "a went, b came", and a consumer
    # keeping some field unique never sees both at once.
    removed: list[tuple[Change, str, str, StoredObject | None]] = [
        ("removed", kind, name, None) for kind, name in sorted(previous.keys() - seen.keys())]
    return _Scan(seen, removed + changes, bad, errors)


class ObjectWatcher(Service):
    """Polls the store's tree and calls ``on_change(kind, name, change, obj)`` for each difference.

    ``change`` is ``added``, ``changed`` (the version differs) or ``removed``
    (``obj`` is None); removals come first in each scan.  The first scan
    reports every object as ``added``, so a consumer can build its view from
    this one stream with no gap between a ``list()`` and the first poll.  Our
    own writes are reported too; a rename is a removal and an addition.
    Broken files are logged once per version, with their reason.

    The scan runs on a thread (``run_in_thread``, by default a one-thread pool
    owned by the watcher on ``clock``, which must then provide
    :class:`IReactorThreads`), one scan at a time.  Polling rather than
    inotify: it sees writes made on other hosts of a shared folder too, and
    costs one ``stat`` per file per interval.
    """

    name = "object-watcher"  # type: ignore[assignment]

    def __init__(self, store: ObjectStore, clock: IReactorTime, interval: float = 1.0,
                 on_change: OnChange | None = None, *,
                 run_in_thread: RunInThread | None = None) -> None:
        self.store = store
        self.clock = clock
        self.interval = interval
        self.on_change = on_change
        self._pool: ThreadPool | None = None
        if run_in_thread is None:
            if not IReactorThreads.providedBy(clock):
                raise TypeError("ObjectWatcher needs run_in_thread, or a clock that is a "
                                "reactor providing IReactorThreads")
            pool = self._pool = ThreadPool(0, 1, name="object-watcher")
            reactor = cast(IReactorThreads, clock)
            run_in_thread = lambda f: threads.deferToThreadPool(reactor, pool, f)  # noqa: E731
        self.run_in_thread = run_in_thread
        self.seen: dict[tuple[str, str], _Seen] = {}
        self._bad_names: set[str] = set()
        self._errors: dict[str, str] = {}
        self._loop: task.LoopingCall | None = None
        self._done: defer.Deferred[Any] | None = None

    def startService(self) -> None:
        super().startService()
        if self._pool is not None:
            self._pool.start()
        self._loop = task.LoopingCall(self._tick)
        self._loop.clock = self.clock
        self._done = self._loop.start(self.interval, now=True)

    def stopService(self) -> defer.Deferred[None]:
        super().stopService()
        return defer.Deferred.fromCoroutine(self._stop())

    async def _stop(self) -> None:
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        if self._done is not None:
            await self._done  # fires once the scan in flight, if any, is over
        if self._pool is not None:
            self._pool.stop()  # idle now: joins at once

    async def _tick(self) -> None:
        # Never let an error end the loop: the next poll may well succeed.
        try:
            result: _Scan = await self.run_in_thread(lambda: scan(self.store, self.seen))
        except Exception:
            log.failure("scanning objects in {root} failed", root=self.store.root)
            return
        self._apply(result)

    def _apply(self, result: _Scan) -> None:
        """On the reactor thread: log, remember, then tell the consumer."""
        before, self.seen = self.seen, result.seen
        for path in sorted(result.bad_names - self._bad_names):
            log.warn("ignoring {path} in {root}: its name cannot be an object's name",
                     path=path, root=self.store.root)
        self._bad_names = result.bad_names
        for path, error in result.errors.items():
            if self._errors.get(path) != error:
                log.warn("cannot read {path}: {error}", path=path, error=error)
        self._errors = result.errors
        for change, kind, name, obj in result.changes:
            was = before.get((kind, name))
            if obj is not None and obj.invalid is not None:
                log.warn("object {kind}/{name} is invalid: {reason}", kind=kind, name=name,
                         reason=obj.invalid, path=str(obj.path))
            elif obj is not None and was is not None and was.obj.invalid is not None:
                log.info("object {kind}/{name} is valid again", kind=kind, name=name)
            if self.on_change is None:
                continue
            try:
                self.on_change(kind, name, change, obj)
            except Exception:
                log.failure("object change handler failed on {kind}/{name} ({change})",
                            kind=kind, name=name, change=change)
