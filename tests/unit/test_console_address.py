"""Where kimchid connects for a VM's screen: on this machine, or at a host elsewhere."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from kimchi.errors import InvalidOperation
from kimchid.api.console import reachable_vnc, vnc_address


def _host(uri: str, local: bool = False) -> object:
    return SimpleNamespace(name="h2", uri=uri, local=local)


XML = ("<domain><devices><graphics type='vnc' port='5901' listen='{}'/></devices>"
       "</domain>")


def test_the_vnc_server_of_a_running_domain() -> None:
    assert vnc_address(XML.format("0.0.0.0")) == ("0.0.0.0", 5901)
    assert vnc_address("<domain><devices><graphics type='vnc' port='5900'/></devices>"
                       "</domain>") == ("127.0.0.1", 5900)
    assert vnc_address("<domain><devices><graphics type='vnc' port='-1'/></devices>"
                       "</domain>") is None
    assert vnc_address("<domain><devices/></domain>") is None


@pytest.mark.parametrize(("uri", "local", "listen", "expected"), [
    ("qemu:///system", True, "127.0.0.1", ("127.0.0.1", 5901)),
    ("qemu:///system", True, "0.0.0.0", ("127.0.0.1", 5901)),
    # a host reached through a socket of this machine is this machine
    ("test+unix:///default?socket=/run/h2/libvirt-sock", False, "127.0.0.1",
     ("127.0.0.1", 5901)),
    ("qemu+tcp://localhost/system", False, "::", ("127.0.0.1", 5901)),
    # a host elsewhere: at its address when its server listens on every address...
    ("qemu+ssh://root@h2.example.org/system", False, "0.0.0.0",
     ("h2.example.org", 5901)),
    ("qemu+tcp://10.0.0.7/system", False, "::", ("10.0.0.7", 5901)),
    # ... or on the address it names
    ("qemu+tls://h2.example.org/system", False, "10.0.0.7", ("10.0.0.7", 5901)),
])
def test_where_the_console_connects(uri: str, local: bool, listen: str,
                                    expected: tuple[str, int]) -> None:
    assert reachable_vnc((listen, 5901), _host(uri, local), "web") == expected  # type: ignore[arg-type]


def test_a_screen_on_the_loopback_of_a_host_elsewhere_is_refused_with_the_reason() -> None:
    with pytest.raises(InvalidOperation) as e:
        reachable_vnc(("127.0.0.1", 5901), _host("qemu+ssh://h2.example.org/system"),  # type: ignore[arg-type]
                      "web")
    assert e.value.errcode == "KCHVM0032E"
    assert "h2" in str(e.value) and "127.0.0.1" in str(e.value)
