"""Tests for kimchi.isoinfo: ISO-9660 probing and volume id identification."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import time
from pathlib import Path

import pytest

from kimchi import isoinfo
from kimchi.isoinfo import IsoInfo, NotAnIso
from tests.isofactory import SECTOR_SIZE, make_iso, make_not_iso, make_truncated_iso

GENISOIMAGE = shutil.which("genisoimage")
ISOINFO_TOOL = shutil.which("isoinfo")
needs_genisoimage = pytest.mark.skipif(GENISOIMAGE is None, reason="genisoimage not installed")


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


def genisoimage(
    tmp_path: Path, volume_id: str, *, el_torito: bool, extra: tuple[str, ...] = ()
) -> Path:
    """Build a real image with genisoimage, optionally El Torito bootable."""
    src = tmp_path / f"src-{volume_id}-{el_torito}"
    src.mkdir()
    (src / "readme.txt").write_text("hello\n")
    args = [GENISOIMAGE or "genisoimage", "-quiet", "-V", volume_id, *extra]
    if el_torito:
        (src / "boot.img").write_bytes(b"\xfa\xf4\xeb\xfd".ljust(SECTOR_SIZE, b"\x00"))
        args += ["-b", "boot.img", "-c", "boot.cat", "-no-emul-boot"]
    out = tmp_path / f"{volume_id}-{el_torito}.iso"
    subprocess.run([*args, "-o", str(out), str(src)], check=True, capture_output=True)
    return out


class CountingReader:
    """read_at over a file's bytes, as an HTTP Range client would see it."""

    def __init__(self, data: bytes, max_chunk: int | None = None) -> None:
        self.data = data
        self.max_chunk = max_chunk
        self.calls: list[tuple[int, int]] = []

    def __call__(self, offset: int, length: int) -> bytes:
        self.calls.append((offset, length))
        if self.max_chunk is not None:
            length = min(length, self.max_chunk)
        return self.data[offset : offset + length]

    @property
    def bytes_read(self) -> int:
        return sum(min(n, max(0, len(self.data) - off)) for off, n in self.calls)


def patch_file(path: Path, offset: int, data: bytes) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


def catalog_sector(path: Path) -> int:
    """Sector of the boot catalog, from the factory image's boot record."""
    raw = path.read_bytes()
    for sector in range(16, 32):
        vd = raw[sector * SECTOR_SIZE : (sector + 1) * SECTOR_SIZE]
        if vd[0] == 0 and vd[1:6] == b"CD001":
            return int(struct.unpack_from("<I", vd, 71)[0])
    raise AssertionError("no boot record")


# ---------------------------------------------------------------------------
# Real images from genisoimage
# ---------------------------------------------------------------------------


@needs_genisoimage
@pytest.mark.parametrize("el_torito", [True, False])
def test_genisoimage_probe_file(tmp_path: Path, el_torito: bool) -> None:
    path = genisoimage(tmp_path, "Fedora-WS-Live-39-1-5", el_torito=el_torito)
    info = isoinfo.probe_file(path)
    assert info == IsoInfo("Fedora-WS-Live-39-1-5", "fedora", "39", el_torito)


@needs_genisoimage
def test_genisoimage_probe_fd_keeps_file_offset(tmp_path: Path) -> None:
    path = genisoimage(tmp_path, "Debian 12.2.0 amd64 n", el_torito=True)
    fd = os.open(path, os.O_RDONLY)
    try:
        os.lseek(fd, 123, os.SEEK_SET)
        info = isoinfo.probe_fd(fd)
        assert os.lseek(fd, 0, os.SEEK_CUR) == 123
    finally:
        os.close(fd)
    assert info == IsoInfo("Debian 12.2.0 amd64 n", "debian", "12.2", True)


@needs_genisoimage
@pytest.mark.parametrize(
    ("el_torito", "extra"),
    [
        (True, ()),
        (False, ()),
        (True, ("-J", "-udf")),  # Joliet SVD + UDF bridge descriptors
        (False, ("-J", "-R")),
    ],
)
def test_genisoimage_probe_reader_few_reads(
    tmp_path: Path, el_torito: bool, extra: tuple[str, ...]
) -> None:
    path = genisoimage(tmp_path, "Ubuntu 22.04.3 LTS amd64", el_torito=el_torito, extra=extra)
    reader = CountingReader(path.read_bytes())
    info = isoinfo.probe_reader(reader)
    assert info == IsoInfo("Ubuntu 22.04.3 LTS amd64", "ubuntu", "22.04", el_torito)
    assert info == isoinfo.probe_file(path)
    # One read for the descriptor set, one for the boot catalog.
    assert len(reader.calls) == (2 if el_torito else 1)
    assert reader.bytes_read <= 4 * SECTOR_SIZE + 64


@needs_genisoimage
def test_probe_reader_tolerates_short_reads(tmp_path: Path) -> None:
    path = genisoimage(tmp_path, "CentOS 7 x86_64", el_torito=True)
    reader = CountingReader(path.read_bytes(), max_chunk=1000)
    assert isoinfo.probe_reader(reader) == IsoInfo("CentOS 7 x86_64", "centos", "7", True)


@needs_genisoimage
def test_probe_reader_size_detects_truncation(tmp_path: Path) -> None:
    path = genisoimage(tmp_path, "TRUNC", el_torito=True)
    data = path.read_bytes()
    assert isoinfo.probe_reader(CountingReader(data), size=len(data)).bootable
    with pytest.raises(NotAnIso, match="truncated"):
        isoinfo.probe_reader(CountingReader(data), size=len(data) - SECTOR_SIZE)


@needs_genisoimage
@pytest.mark.parametrize("bootable", [True, False, None])
def test_factory_matches_genisoimage(tmp_path: Path, bootable: bool | None) -> None:
    real = genisoimage(tmp_path, "SLE-15-SP4-Full-x86_64", el_torito=bool(bootable))
    fake = make_iso(tmp_path / "fake.iso", "SLE-15-SP4-Full-x86_64", bootable=bootable)
    expected = IsoInfo("SLE-15-SP4-Full-x86_64", "sles", "15sp4", bool(bootable))
    assert isoinfo.probe_file(real) == isoinfo.probe_file(fake) == expected


@pytest.mark.skipif(ISOINFO_TOOL is None, reason="isoinfo not installed")
@pytest.mark.parametrize("bootable", [True, False])
def test_factory_output_accepted_by_isoinfo_tool(tmp_path: Path, bootable: bool) -> None:
    path = make_iso(tmp_path / "x.iso", "KIMCHI_TEST", bootable=bootable, volume_set_id="SET")
    out = subprocess.run(
        [ISOINFO_TOOL or "isoinfo", "-d", "-i", str(path)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert "Volume id: KIMCHI_TEST" in out
    assert "Volume set id: SET" in out
    assert ("Bootid 88 (bootable)" in out) is bootable
    listing = subprocess.run(
        [ISOINFO_TOOL or "isoinfo", "-l", "-i", str(path)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert "BOOT.CAT;1" in listing


# ---------------------------------------------------------------------------
# Factory images
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(("bootable", "expected"), [(True, True), (False, False), (None, False)])
def test_factory_bootable_flag(tmp_path: Path, bootable: bool | None, expected: bool) -> None:
    path = make_iso(tmp_path / "a.iso", "Rocky-9-2-x86_64-dvd", bootable=bootable)
    assert isoinfo.probe_file(path) == IsoInfo("Rocky-9-2-x86_64-dvd", "rocky", "9.2", expected)
    assert path.stat().st_size < 64 * 1024


def test_factory_sparse_big_image(tmp_path: Path) -> None:
    size = 8 * 1024**3
    path = make_iso(tmp_path / "big.iso", "AlmaLinux-9-2-x86_64-dvd", size=size)
    st = path.stat()
    assert st.st_size == size
    assert st.st_blocks * 512 < 1024 * 1024  # sparse: no real disk used
    assert isoinfo.probe_file(path) == IsoInfo("AlmaLinux-9-2-x86_64-dvd", "almalinux", "9.2", True)


def test_factory_size_below_minimum_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        make_iso(tmp_path / "x.iso", "X", size=SECTOR_SIZE)


def test_descriptors_beyond_first_read(tmp_path: Path) -> None:
    # The boot record lands at sector 23: past the first 4-sector read.
    path = make_iso(tmp_path / "many.iso", "MANY", extra_descriptors=6)
    reader = CountingReader(path.read_bytes())
    assert isoinfo.probe_reader(reader).bootable is True
    assert len(reader.calls) == 3
    assert isoinfo.probe_file(path).bootable is True


def test_not_an_iso(tmp_path: Path) -> None:
    with pytest.raises(NotAnIso, match="signature"):
        isoinfo.probe_file(make_not_iso(tmp_path / "noise.iso"))


def test_truncated_inside_pvd(tmp_path: Path) -> None:
    with pytest.raises(NotAnIso):
        isoinfo.probe_file(make_truncated_iso(tmp_path / "cut.iso"))
    # Same through probe_reader, where the size is unknown.
    with pytest.raises(NotAnIso):
        isoinfo.probe_reader(CountingReader((tmp_path / "cut.iso").read_bytes()))


def test_truncated_after_descriptors(tmp_path: Path) -> None:
    path = make_iso(tmp_path / "partial.iso", "PARTIAL", size=100 * SECTOR_SIZE)
    os.truncate(path, 50 * SECTOR_SIZE)  # an interrupted download
    with pytest.raises(NotAnIso, match="truncated"):
        isoinfo.probe_file(path)


def test_truncated_inside_descriptor_set(tmp_path: Path) -> None:
    path = make_iso(tmp_path / "cut.iso", "CUT", extra_descriptors=6)
    data = path.read_bytes()[: 20 * SECTOR_SIZE]  # PVD present, no terminator
    with pytest.raises(NotAnIso, match="truncated"):
        isoinfo.probe_reader(CountingReader(data))


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.iso"
    path.touch()
    with pytest.raises(NotAnIso):
        isoinfo.probe_file(path)
    with pytest.raises(NotAnIso):
        isoinfo.probe_reader(CountingReader(b""))


def test_smaller_than_17_sectors(tmp_path: Path) -> None:
    path = tmp_path / "small.iso"
    path.write_bytes(b"\x00" * (17 * SECTOR_SIZE - 1))
    with pytest.raises(NotAnIso, match="too small"):
        isoinfo.probe_file(path)
    with pytest.raises(NotAnIso, match="too small"):
        isoinfo.probe_reader(CountingReader(path.read_bytes()))


def test_wrong_ident_and_version(tmp_path: Path) -> None:
    path = make_iso(tmp_path / "a.iso", "A")
    patch_file(path, 16 * SECTOR_SIZE + 1, b"CD002")
    with pytest.raises(NotAnIso):
        isoinfo.probe_file(path)
    path = make_iso(tmp_path / "b.iso", "B")
    patch_file(path, 16 * SECTOR_SIZE + 6, b"\x02")
    with pytest.raises(NotAnIso, match="version"):
        isoinfo.probe_file(path)


def test_missing_pvd(tmp_path: Path) -> None:
    path = make_iso(tmp_path / "a.iso", "A")
    patch_file(path, 16 * SECTOR_SIZE, b"\x02")  # PVD turned into an SVD
    with pytest.raises(NotAnIso, match="primary"):
        isoinfo.probe_file(path)


@pytest.mark.parametrize(
    ("offset", "data"),
    [
        (0, b"\x02"),  # validation header id
        (30, b"\x00"),  # key byte 0x55
        (31, b"\x00"),  # key byte 0xAA
        (28, b"\x00\x00"),  # checksum
        (32, b"\x44"),  # boot indicator neither 0x88 nor 0x00
    ],
)
def test_malformed_catalog_is_not_bootable(tmp_path: Path, offset: int, data: bytes) -> None:
    path = make_iso(tmp_path / "a.iso", "A")
    patch_file(path, catalog_sector(path) * SECTOR_SIZE + offset, data)
    info = isoinfo.probe_file(path)
    assert info.volume_id == "A"
    assert info.bootable is False


def test_catalog_beyond_end_of_file(tmp_path: Path) -> None:
    path = make_iso(tmp_path / "a.iso", "A")
    patch_file(path, 17 * SECTOR_SIZE + 71, struct.pack("<I", 10_000))
    assert isoinfo.probe_file(path).bootable is False
    patch_file(path, 17 * SECTOR_SIZE + 71, struct.pack("<I", 3))  # system area
    assert isoinfo.probe_file(path).bootable is False


def test_boot_record_with_other_boot_system_is_ignored(tmp_path: Path) -> None:
    path = make_iso(tmp_path / "a.iso", "A")
    patch_file(path, 17 * SECTOR_SIZE + 7, b"SOMETHING ELSE")
    assert isoinfo.probe_file(path).bootable is False


def test_red_hat_volume_set_fallback(tmp_path: Path) -> None:
    path = make_iso(tmp_path / "rh.iso", "RED_HAT", volume_set_id="RHEL-9-2-0-BaseOS-x86_64")
    assert isoinfo.probe_file(path) == IsoInfo("RED_HAT", "rhel", "9.2", True)


def test_padded_and_non_ascii_volume_id(tmp_path: Path) -> None:
    path = make_iso(tmp_path / "a.iso", "  MY DISC")
    assert isoinfo.probe_file(path).volume_id == "MY DISC"
    patch_file(path, 16 * SECTOR_SIZE + 40, "CAFÉ".encode() + b"\x00" * 4)
    assert isoinfo.probe_file(path).volume_id == "CAFÉ"


def test_special_files(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.iso"
    os.mkfifo(fifo)
    with pytest.raises(NotAnIso, match="regular"):
        isoinfo.probe_file(fifo)  # must not block
    with pytest.raises(NotAnIso, match="regular"):
        isoinfo.probe_file(tmp_path)
    with pytest.raises(FileNotFoundError):
        isoinfo.probe_file(tmp_path / "missing.iso")


def test_scan_of_many_images_is_fast(tmp_path: Path) -> None:
    paths = [
        make_iso(tmp_path / f"d{i % 10}" / f"img{i}.iso", f"Fedora-S-dvd-x86_64-{30 + i % 10}")
        for i in range(200)
    ]
    start = time.perf_counter()
    infos = [isoinfo.probe_file(p) for p in paths]
    elapsed = time.perf_counter() - start
    assert all(i.os_distro == "fedora" and i.bootable for i in infos)
    assert elapsed < 5.0  # ~10 ms in practice; generous for loaded CI hosts


# ---------------------------------------------------------------------------
# identify_volume
# ---------------------------------------------------------------------------

VOLUME_IDS: list[tuple[str, str, str]] = [
    # Fedora
    ("Fedora-WS-Live-39-1-5", "fedora", "39"),
    ("Fedora-S-dvd-x86_64-38", "fedora", "38"),
    ("Fedora 20 x86_64", "fedora", "20"),
    ("Fedora-Everything-netinst-x86_64-40", "fedora", "40"),
    ("Fedora-E-dvd-aarch64-39", "fedora", "39"),
    ("Fedora-KDE-Live-x86_64-39", "fedora", "39"),
    ("Fedora-Live-Workstation-x86_64-23-10", "fedora", "23"),
    ("Fedora-S-dvd-ppc64le-37", "fedora", "37"),
    ("Fedora-WS-Live-rawh-20231120-n-0", "fedora", "rawhide"),
    # CentOS
    ("CentOS 7 x86_64", "centos", "7"),
    ("CentOS-Stream-9-BaseOS-x86_64", "centos", "9"),
    ("CentOS-Stream-8-x86_64-dvd", "centos", "8"),
    ("CentOS_5.5_Final", "centos", "5.5"),
    ("CentOS_6.10_Final", "centos", "6.10"),
    ("CentOS-8-2-2004-x86_64-dvd", "centos", "8.2"),
    ("CentOS-8-BaseOS-x86_64", "centos", "8"),
    # RHEL
    ("RHEL-9-2-0-BaseOS-x86_64", "rhel", "9.2"),
    ("RHEL-10-0-BaseOS-x86_64", "rhel", "10.0"),
    ("RHEL-8.6 Server.x86_64", "rhel", "8.6"),
    ("RHEL_7.9 Server.x86_64", "rhel", "7.9"),
    ("RHEL_6.10 x86_64 Disc 1", "rhel", "6.10"),
    ("RHEL/5.5 x86_64 DVD", "rhel", "5.5"),
    ("RHEL/4-U8", "rhel", "4.8"),
    ("RED_HAT", "rhel", "unknown"),
    # Rocky, Alma, Oracle
    ("Rocky-9-2-x86_64-dvd", "rocky", "9.2"),
    ("Rocky-8-8-x86_64-dvd1", "rocky", "8.8"),
    ("AlmaLinux-9-2-x86_64-dvd", "almalinux", "9.2"),
    ("AlmaLinux-8-9-x86_64-dvd", "almalinux", "8.9"),
    ("OL-9-2-0-BaseOS-x86_64", "ol", "9.2"),
    # Debian
    ("Debian 12.2.0 amd64 n", "debian", "12.2"),
    ("Debian 11.0.0 amd64 1", "debian", "11.0"),
    ("Debian 7.0.0 amd64 1", "debian", "7.0"),
    ("d-live 12.2.0 gn amd64", "debian", "12.2"),
    ("Debian testing amd64 n", "debian", "unknown"),
    # Ubuntu and flavours
    ("Ubuntu 22.04.3 LTS amd64", "ubuntu", "22.04"),
    ("Ubuntu-Server 20.04.6 LTS amd64", "ubuntu", "20.04"),
    ("Ubuntu-Server 24.04 LTS amd64", "ubuntu", "24.04"),
    ("Ubuntu 13.10 amd64", "ubuntu", "13.10"),
    ("Kubuntu 22.04.3 LTS amd64", "ubuntu", "22.04"),
    ("Ubuntu-MATE 23.10 amd64", "ubuntu", "23.10"),
    ("Linux Mint 21.2 Cinnamon 64-bit", "linuxmint", "21.2"),
    # SUSE
    ("openSUSE-Leap-15.5-DVD-x86_64", "opensuse", "15.5"),
    ("openSUSE-Leap-42.3-DVD-x86_64", "opensuse", "42.3"),
    ("openSUSE-Tumbleweed-DVD-x86_64", "opensuse", "tumbleweed"),
    ("openSUSE 12.3", "opensuse", "12.3"),
    ("SLE-15-SP4-Full-x86_64", "sles", "15sp4"),
    ("SLE-15-Installer-DVD-x86_64", "sles", "15"),
    ("SLES-11-SP4-DVD-x86_64", "sles", "11sp4"),
    ("SLE-12-SP5-Server-DVD-x86_64", "sles", "12sp5"),
    ("SUSE_SLES-11-0-0", "sles", "11"),
    ("SLES10", "sles", "10"),
    # Windows (labels are ambiguous; see isoinfo.py)
    ("CCCOMA_X64FRE_EN-US_DV9", "windows", "10"),
    ("CCCOMA_A64FRE_EN-GB_DV9", "windows", "10"),
    ("CPBA_X64FRE_EN-US_DV5", "windows", "10"),
    ("CCSA_X64FRE_EN-US_DV5", "windows", "10"),
    ("J_CCSA_X64FRE_EN-US_DV5", "windows", "10"),
    ("CENA_X64FREV_EN-US_DV9", "windows", "10"),
    ("SSS_X64FREE_EN-US_DV9", "windows", "2022"),
    ("IR3_SSS_X64FREE_EN-US_DV9", "windows", "2012r2"),
    ("IRM_SSS_X64FREE_EN-US_DV5", "windows", "2012r2"),
    ("HRM_SSS_X64FREV_EN-US_DV5", "windows", "2012"),
    ("IR5_CCSA_X64FRE_EN-US_DV5", "windows", "8.1"),
    ("HRM_CCSA_X64FRE_EN-US_DV5", "windows", "8"),
    ("GRMCULFRER_EN_DVD", "windows", "7"),
    ("GSP1RMCPRXFRER_EN_DVD", "windows", "7"),
    ("GRMSXVOL_EN_DVD", "windows", "2008r2"),
    ("KRMSXVOL_EN_DVD", "windows", "2008"),
    ("LRMCFRE_EN_DVD", "windows", "vista"),
    ("CRMEFPP_EN", "windows", "2003r2"),
    ("ARMEVOL_EN", "windows", "2003"),
    ("WXPFPP_EN", "windows", "xp"),
    ("VRMPOEM_EN", "windows", "xp"),
    ("W2AFPP_EN", "windows", "2000"),
    # Others
    ("ARCH_202311", "arch", "2023.11"),
    ("ARCH_201301", "arch", "2013.01"),
    ("alpine-virt 3.18.4 x86_64", "alpine", "3.18"),
    ("alpine-std 3.19.0 x86_64", "alpine", "3.19"),
    ("alpine-extended 3.18.4 x86_64", "alpine", "3.18"),
    ("13_2_RELEASE_AMD64_CD", "freebsd", "13.2"),
    ("14_0_RELEASE_AMD64_DVD", "freebsd", "14.0"),
    ("14_0_RELEASE_AMD64_BO", "freebsd", "14.0"),
    ("FreeBSD_Install", "freebsd", "unknown"),
    ("OpenBSD/amd64   7.4 Install CD", "openbsd", "7.4"),
    ("OpenBSD/i386    6.9 Install CD", "openbsd", "6.9"),
    ("Gentoo Linux amd64 20231105", "gentoo", "20231105"),
    ("NETBSD_93", "netbsd", "9.3"),
    ("NETBSD_100", "netbsd", "10.0"),
    # Unknown
    ("CDROM", "unknown", "unknown"),
    ("", "unknown", "unknown"),
    ("MY_BACKUP_2023", "unknown", "unknown"),
    ("Centipede 64", "unknown", "unknown"),
]


@pytest.mark.parametrize(("volume_id", "distro", "version"), VOLUME_IDS)
def test_identify_volume(volume_id: str, distro: str, version: str) -> None:
    assert isoinfo.identify_volume(volume_id) == (distro, version)


@pytest.mark.parametrize(
    ("volume_id", "volume_set_id", "expected"),
    [
        ("RED_HAT", "RHEL-9-2-0-BaseOS-x86_64", ("rhel", "9.2")),
        ("RED_HAT", "", ("rhel", "unknown")),
        ("MYDISC", "Fedora-S-dvd-x86_64-38", ("fedora", "38")),
        # The volume id wins when it already has a version.
        ("Fedora-S-dvd-x86_64-38", "Debian 12.2.0 amd64 n", ("fedora", "38")),
        # A different distro in the set id does not override a known distro.
        ("RED_HAT", "Debian 12.2.0 amd64 n", ("rhel", "unknown")),
        ("CDROM", "CDROM", ("unknown", "unknown")),
    ],
)
def test_identify_volume_set_fallback(
    volume_id: str, volume_set_id: str, expected: tuple[str, str]
) -> None:
    assert isoinfo.identify_volume(volume_id, volume_set_id) == expected


def test_iso_info_is_frozen() -> None:
    info = IsoInfo("X", "unknown", "unknown", False)
    with pytest.raises(AttributeError):
        info.bootable = True  # type: ignore[misc]
    assert not hasattr(info, "__dict__")


def test_not_an_iso_has_short_reason(tmp_path: Path) -> None:
    with pytest.raises(NotAnIso) as excinfo:
        isoinfo.probe_file(make_not_iso(tmp_path / "x.iso"))
    assert 0 < len(str(excinfo.value)) < 80
