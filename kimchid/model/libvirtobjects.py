"""What the services of libvirt's objects (storage pools, networks) share."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, overload

from kimchi.bus import LOCAL_HOST
from kimchi.errors import ServiceUnavailable
from kimchid.adapters.libvirt import LibvirtConnection
from kimchid.model.events import EventHub

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
    are announced with :meth:`EventHub.publish`."""

    def __init__(self, libvirt: LibvirtConnection, events: EventHub,
                 host: str = LOCAL_HOST) -> None:
        self.libvirt = libvirt
        self.events = events
        self.host = host  # the name of the host whose objects these are

    @overload
    def tagged(self, found: list[dict[str, Any]]) -> list[dict[str, Any]]: ...

    @overload
    def tagged(self, found: dict[str, Any]) -> dict[str, Any]: ...

    def tagged(self, found: dict[str, Any] | list[dict[str, Any]]
               ) -> dict[str, Any] | list[dict[str, Any]]:
        """An object read here (or a list of them) with the host it is on."""
        if isinstance(found, list):
            return [{**x, "host": self.host} for x in found]
        return {**found, "host": self.host}

    async def _publish(self, etype: str, data: dict[str, Any]) -> None:
        """Announce a change, naming the host (``data.host``)."""
        await self.events.publish(etype, {**data, "host": self.host})

    async def _run(self, fn: Callable[[Any], T]) -> T:
        if not self.libvirt.up:
            raise ServiceUnavailable("KCHSVC0002E", error=self.libvirt.error)
        return await self.libvirt.run(fn)

