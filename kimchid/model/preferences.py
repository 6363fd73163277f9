"""Each person's preferences, kept with their account rather than in one browser: the UI's
language, which follows them to every browser they sign in from.

One object per account in the object store (kind ``preferences``, named after the user;
a name the store cannot take is kept under its SHA-256), read and written on threads.
"""

from __future__ import annotations

import hashlib
from typing import Any

from twisted.internet import threads

from kimchi import i18n
from kimchid.adapters.objectstore import InvalidName, ObjectStore, check_name

KIND = "preferences"
DEFAULTS: dict[str, Any] = {"language": None}  # None: the browser's languages decide


def _object_name(username: str) -> str:
    try:
        return check_name(username)
    except InvalidName:
        return "sha256-" + hashlib.sha256(username.encode()).hexdigest()


class Preferences:
    """``get`` and ``update`` a person's preferences (the reactor thread; file work on
    threads)."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store

    async def get(self, username: str) -> dict[str, Any]:
        return await threads.deferToThread(self._read, username)

    async def update(self, username: str, changes: dict[str, Any]) -> dict[str, Any]:
        """Set what ``changes`` names (validated by the route), keep the rest."""
        return await threads.deferToThread(self._write, username, changes)

    def _read(self, username: str) -> dict[str, Any]:
        try:
            data = self.store.get(KIND, _object_name(username)).data
        except KeyError:
            data = {}
        return _valid({**DEFAULTS, **{k: v for k, v in data.items() if k in DEFAULTS}})

    def _write(self, username: str, changes: dict[str, Any]) -> dict[str, Any]:
        name = _object_name(username)
        with self.store.locked(KIND, name):
            new = {**self._read(username), **changes}
            self.store.put(KIND, name, {"username": username, **new})
        return new


def _valid(prefs: dict[str, Any]) -> dict[str, Any]:
    """A file edited by hand, or a language no longer spoken, reads as the default."""
    if prefs.get("language") not in i18n.LANGUAGES:
        prefs["language"] = None
    return prefs
