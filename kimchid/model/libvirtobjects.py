"""What the services of libvirt's objects (storage pools, networks) share."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from twisted.logger import Logger

from kimchid.adapters.libvirt import LibvirtConnection
from kimchid.errors import ServiceUnavailable
from kimchid.model.events import EventHub

log = Logger()
T = TypeVar("T")


def lv() -> Any:
    """The libvirt module, imported where it is used (the API tests run without it)."""
    import libvirt

    return libvirt


def why(e: Exception) -> str:
    """libvirt's own message, without the function name it puts in front."""
    get = getattr(e, "get_error_message", None)
    return str((get() if get else None) or e)


class LibvirtObjects:
    """Reads and changes go to libvirt's threads; a 503 while libvirtd is away; changes
    are announced as events (lost, with a warning, while Redis is away)."""

    def __init__(self, libvirt: LibvirtConnection, events: EventHub) -> None:
        self.libvirt = libvirt
        self.events = events

    async def _run(self, fn: Callable[[Any], T]) -> T:
        if not self.libvirt.up:
            raise ServiceUnavailable("KCHSVC0002E", error=self.libvirt.error)
        return await self.libvirt.run(fn)

    async def _emit(self, etype: str, data: dict[str, Any]) -> None:
        try:
            await self.events.emit(etype, data)
        except Exception as e:  # Redis away: done in libvirt, the event is lost
            log.warn("cannot publish {type}: {e}", type=etype, e=str(e))
