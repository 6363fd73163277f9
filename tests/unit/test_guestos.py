"""Which OS an image holds: os-release files as distributions write them, and images with
each kind of partition table read with the real tools (qemu-storage-daemon, debugfs)."""

from __future__ import annotations

from pathlib import Path

import pytest

from kimchid.model import guestos
from tests.systemdisk import make_system_disk


@pytest.mark.parametrize(("text", "found"), [
    ('PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\n'
     'VERSION_ID="12"\nVERSION="12 (bookworm)"\nID=debian\n', ("debian", "12")),
    ('NAME="Ubuntu"\nVERSION_ID="22.04"\nID=ubuntu\nID_LIKE=debian\n', ("ubuntu", "22.04")),
    ('NAME="Rocky Linux"\nID="rocky"\nID_LIKE="rhel centos fedora"\nVERSION_ID="9.3"\n',
     ("rocky", "9")),
    ('NAME="Red Hat Enterprise Linux"\nID="rhel"\nVERSION_ID="9.2"\n', ("rhel", "9.2")),
    ('NAME="openSUSE Leap"\nID="opensuse-leap"\nVERSION_ID="15.5"\n', ("opensuse", "15.5")),
    ('NAME="Linux Mint"\nID=linuxmint\nID_LIKE="ubuntu debian"\nVERSION_ID="21.2"\n',
     ("ubuntu", "21.2")),
    ('NAME="Arch Linux"\nID=arch\nBUILD_ID=rolling\n', ("arch", "latest")),
    ("# no ID at all\nNAME=Something\n", None),
])
def test_os_release_names_the_distribution_and_version(text: str, found: object) -> None:
    assert guestos.parse_os_release(text) == found


@pytest.mark.parametrize(("table", "fmt"), [("gpt", "qcow2"), ("mbr", "raw"),
                                            ("none", "qcow2")])
def test_the_os_is_read_from_the_images_root_file_system(tmp_path: Path, table: str,
                                                         fmt: str) -> None:
    image = make_system_disk(tmp_path / f"disk.{fmt}",
                             'NAME="Fedora Linux"\nID=fedora\nVERSION_ID=39\n', table, fmt)
    assert guestos.identify(str(image), fmt) == ("fedora", "39")
    with open("/proc/self/mountinfo") as f:
        assert "kimchi-inspect-" not in f.read()  # the FUSE view is gone


def test_an_image_without_a_readable_system_says_nothing(tmp_path: Path) -> None:
    blank = tmp_path / "blank.raw"
    blank.write_bytes(b"\0" * (1 << 20))
    assert guestos.identify(str(blank), "raw") is None
    broken = tmp_path / "broken.qcow2"
    broken.write_bytes(b"QFI\xfbnot really")
    assert guestos.identify(str(broken), "qcow2") is None
