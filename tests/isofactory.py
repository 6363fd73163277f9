"""Write small synthetic, valid ISO-9660 images fast (pure Python).

Tests and benchmarks build trees with hundreds of ISOs; running genisoimage
for each would dominate their run time.  These images hold just enough to be
real ISO-9660 volumes (isoinfo(1) lists them, Linux can mount them): system
area, Primary Volume Descriptor, optional El Torito boot record, terminator,
path tables, a root directory and, when bootable, a boot catalog and a
one-sector boot image.  Output is deterministic (fixed dates, seeded noise).

Layout (2048-byte sectors)::

    0-15   system area (zeros)
    16     Primary Volume Descriptor
    ...    `extra_descriptors` supplementary descriptors (Joliet-like copies)
    n      El Torito boot record          (if bootable is not None)
    n+1    volume descriptor set terminator
    then   L path table, M path table, root directory,
           boot catalog and boot image    (if bootable is not None)
"""

from __future__ import annotations

import os
import random
import shutil
import struct
import subprocess
import tempfile
from pathlib import Path

__all__ = [
    "BOOT_TEXT_ROW",
    "SECTOR_SIZE",
    "boot_sector",
    "boot_text_column",
    "boot_text_region",
    "build_iso",
    "make_boot_iso",
    "make_iso",
    "make_not_iso",
    "make_truncated_iso",
]

SECTOR_SIZE = 2048
_SYSTEM_AREA_SECTORS = 16
# Fixed timestamp so that identical arguments give identical bytes.
_DIR_DATE = bytes((124, 1, 1, 0, 0, 0, 0))  # 2024-01-01 00:00:00 UTC
_VOL_DATE = b"2024010100000000\x00"
_NO_DATE = b"0000000000000000\x00"


def _both16(value: int) -> bytes:
    """ISO-9660 "both-byte orders" 16-bit field."""
    return struct.pack("<H", value) + struct.pack(">H", value)


def _both32(value: int) -> bytes:
    """ISO-9660 "both-byte orders" 32-bit field."""
    return struct.pack("<I", value) + struct.pack(">I", value)


def _text(value: str, length: int, what: str) -> bytes:
    raw = value.encode("ascii")
    if len(raw) > length:
        raise ValueError(f"{what} longer than {length} bytes: {value!r}")
    return raw.ljust(length, b" ")


def _dir_record(extent: int, data_length: int, name: bytes, *, is_dir: bool) -> bytes:
    """A directory record (ECMA-119 9.1), padded to an even length."""
    length = 33 + len(name)
    record = (
        bytes((length + (length & 1), 0))
        + _both32(extent)
        + _both32(data_length)
        + _DIR_DATE
        + bytes((0x02 if is_dir else 0x00, 0, 0))
        + _both16(1)  # volume sequence number
        + bytes((len(name),))
        + name
    )
    return record + b"\x00" * (length & 1)


def _volume_descriptor(
    vd_type: int,
    *,
    volume_id: bytes,
    volume_set_id: bytes,
    volume_sectors: int,
    path_table_l: int,
    path_table_m: int,
    path_table_size: int,
    root_extent: int,
) -> bytes:
    """A Primary (type 1) or supplementary (type 2) volume descriptor."""
    vd = bytearray(SECTOR_SIZE)
    vd[0] = vd_type
    vd[1:6] = b"CD001"
    vd[6] = 1
    vd[8:40] = b"LINUX".ljust(32, b" ")  # system identifier
    vd[40:72] = volume_id
    vd[80:88] = _both32(volume_sectors)
    vd[120:124] = _both16(1)  # volume set size
    vd[124:128] = _both16(1)  # volume sequence number
    vd[128:132] = _both16(SECTOR_SIZE)  # logical block size
    vd[132:140] = _both32(path_table_size)
    vd[140:144] = struct.pack("<I", path_table_l)
    vd[148:152] = struct.pack(">I", path_table_m)
    vd[156:190] = _dir_record(root_extent, SECTOR_SIZE, b"\x00", is_dir=True)
    vd[190:318] = volume_set_id
    vd[318:702] = b" " * 384  # publisher, data preparer, application ids
    vd[702:813] = b" " * 111  # copyright, abstract, bibliographic file ids
    vd[813:830] = _VOL_DATE  # creation
    vd[830:847] = _VOL_DATE  # modification
    vd[847:864] = _NO_DATE  # expiration
    vd[864:881] = _NO_DATE  # effective
    vd[881] = 1  # file structure version
    return bytes(vd)


def _boot_catalog(boot_image_sector: int, bootable: bool) -> bytes:
    """El Torito validation entry + default entry (no emulation, x86)."""
    validation = bytearray(32)
    validation[0] = 1  # header id
    validation[1] = 0  # platform: 80x86
    validation[4:28] = b"KIMCHI TEST".ljust(24, b"\x00")
    validation[30] = 0x55
    validation[31] = 0xAA
    # Checksum word chosen so that the 16 little-endian words sum to 0.
    total = sum(struct.unpack("<16H", validation)) & 0xFFFF
    validation[28:30] = struct.pack("<H", (-total) & 0xFFFF)

    default = bytearray(32)
    default[0] = 0x88 if bootable else 0x00
    default[1] = 0  # no emulation
    default[6:8] = struct.pack("<H", 4)  # 4 virtual 512-byte sectors
    default[8:12] = struct.pack("<I", boot_image_sector)
    return bytes(validation + default).ljust(SECTOR_SIZE, b"\x00")


def build_iso(
    volume_id: str,
    *,
    bootable: bool | None = True,
    volume_set_id: str = "",
    size: int | None = None,
    extra_descriptors: int = 0,
) -> bytes:
    """Return the bytes of a minimal ISO image (without the sparse padding).

    The returned data is the meaningful prefix; the recorded volume size is
    ``size // 2048`` sectors when *size* is given, so the caller must extend
    the file to *size* bytes (see :func:`make_iso`).
    """
    vol_id = _text(volume_id, 32, "volume id")
    vol_set_id = _text(volume_set_id, 128, "volume set id")
    with_boot = bootable is not None

    sector = _SYSTEM_AREA_SECTORS
    pvd_sector = sector
    sector += 1
    extra_sectors = list(range(sector, sector + extra_descriptors))
    sector += extra_descriptors
    boot_record_sector = sector if with_boot else None
    sector += with_boot
    terminator_sector = sector
    path_l_sector = terminator_sector + 1
    path_m_sector = path_l_sector + 1
    root_sector = path_m_sector + 1
    sector = root_sector + 1
    catalog_sector = boot_image_sector = 0
    if with_boot:
        catalog_sector, boot_image_sector = sector, sector + 1
        sector += 2
    used_sectors = sector

    if size is None:
        volume_sectors = used_sectors
    else:
        if size < used_sectors * SECTOR_SIZE:
            raise ValueError(f"size {size} is below the minimum {used_sectors * SECTOR_SIZE}")
        volume_sectors = size // SECTOR_SIZE

    image = bytearray(used_sectors * SECTOR_SIZE)

    def put(at_sector: int, data: bytes) -> None:
        offset = at_sector * SECTOR_SIZE
        image[offset : offset + len(data)] = data

    # Root only: id length 1, extent, parent 1, id 0x00, pad to even length.
    path_l = bytes((1, 0)) + struct.pack("<I", root_sector) + struct.pack("<H", 1) + b"\x00\x00"
    path_m = bytes((1, 0)) + struct.pack(">I", root_sector) + struct.pack(">H", 1) + b"\x00\x00"
    pvd = _volume_descriptor(
        1,
        volume_id=vol_id,
        volume_set_id=vol_set_id,
        volume_sectors=volume_sectors,
        path_table_l=path_l_sector,
        path_table_m=path_m_sector,
        path_table_size=len(path_l),
        root_extent=root_sector,
    )
    put(pvd_sector, pvd)
    for extra in extra_sectors:
        # A supplementary descriptor (type 2) with no escape sequences is a
        # plain copy of the PVD as far as readers are concerned.
        put(extra, bytes((2,)) + pvd[1:])

    if boot_record_sector is not None:
        boot_record = bytearray(SECTOR_SIZE)
        boot_record[0] = 0
        boot_record[1:6] = b"CD001"
        boot_record[6] = 1
        boot_record[7:39] = b"EL TORITO SPECIFICATION".ljust(32, b"\x00")
        boot_record[71:75] = struct.pack("<I", catalog_sector)
        put(boot_record_sector, bytes(boot_record))

    put(terminator_sector, b"\xffCD001\x01")
    put(path_l_sector, path_l)
    put(path_m_sector, path_m)

    root = _dir_record(root_sector, SECTOR_SIZE, b"\x00", is_dir=True)
    root += _dir_record(root_sector, SECTOR_SIZE, b"\x01", is_dir=True)
    if with_boot:
        root += _dir_record(catalog_sector, SECTOR_SIZE, b"BOOT.CAT;1", is_dir=False)
        root += _dir_record(boot_image_sector, SECTOR_SIZE, b"BOOT.IMG;1", is_dir=False)
        put(catalog_sector, _boot_catalog(boot_image_sector, bool(bootable)))
        put(boot_image_sector, b"\xfa\xf4\xeb\xfd")  # cli; hlt; jmp $-1
    put(root_sector, root)
    return bytes(image)


def make_iso(
    path: str | os.PathLike[str],
    volume_id: str,
    *,
    bootable: bool | None = True,
    volume_set_id: str = "",
    size: int | None = None,
    extra_descriptors: int = 0,
) -> Path:
    """Write a minimal valid ISO-9660 image to *path* and return its Path.

    *bootable*: True/False writes an El Torito catalog whose default entry is
    bootable (0x88) or not (0x00); None writes no boot record at all.
    *size*: pad the file to this many bytes with a sparse hole (costs no disk),
    and record that volume size in the PVD.  Default images are ~48 KiB.
    *extra_descriptors*: add supplementary descriptors before the boot record,
    to push the descriptor set past what a prober reads at first.
    Parent directories are created as needed.
    """
    target = Path(path)
    data = build_iso(
        volume_id,
        bootable=bootable,
        volume_set_id=volume_set_id,
        size=size,
        extra_descriptors=extra_descriptors,
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "wb") as f:
        f.write(data)
        if size is not None and size > len(data):
            f.truncate(size)
    return target


def make_not_iso(path: str | os.PathLike[str], size: int = 40960) -> Path:
    """Write *size* bytes of deterministic noise that is not an ISO image."""
    target = Path(path)
    data = bytearray(random.Random(size).randbytes(size))
    signature = _SYSTEM_AREA_SECTORS * SECTOR_SIZE + 1
    if data[signature : signature + 5] == b"CD001":  # astronomically unlikely
        data[signature] ^= 0xFF
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    return target


def make_truncated_iso(path: str | os.PathLike[str], volume_id: str = "TRUNCATED") -> Path:
    """Write the start of a valid image, cut in the middle of its PVD."""
    target = Path(path)
    data = build_iso(volume_id)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data[: _SYSTEM_AREA_SECTORS * SECTOR_SIZE + 100])
    return target


# ---------------------------------------------------------------------------
# A bootable ISO that shows text: for end-to-end tests with real guests
# ---------------------------------------------------------------------------

# Where the message goes on the 80x25 text screen (row, first column is computed
# so that the text is centred).  Tests look for its pixels in that band.
BOOT_TEXT_ROW = 12
_TEXT_COLUMNS = 80
_TEXT_ROWS = 25
_LOAD_ADDRESS = 0x7C00  # El Torito, no emulation, load segment 0: 0000:7C00


def boot_text_column(text: str) -> int:
    """The column where :func:`boot_sector` starts printing *text* (centred)."""
    return max(0, (_TEXT_COLUMNS - len(text)) // 2)


def boot_text_region(text: str) -> tuple[float, float, float, float]:
    """Where *text* shows on the guest's screen, as fractions of its width and height.

    ``(left, top, right, bottom)`` of the character cells :func:`boot_sector`
    writes, on the 80x25 text screen; independent of the screen's pixel size,
    so it applies to a scaled thumbnail as well.
    """
    column = boot_text_column(text)
    return (column / _TEXT_COLUMNS, BOOT_TEXT_ROW / _TEXT_ROWS,
            (column + len(text)) / _TEXT_COLUMNS, (BOOT_TEXT_ROW + 1) / _TEXT_ROWS)


def boot_sector(text: str) -> bytes:
    """A 512-byte x86 real-mode boot program that prints *text* and halts.

    Hand-assembled (no assembler is needed to build the test data).  It sets
    80x25 colour text mode (which clears the screen), hides the cursor, puts
    *text* centred on row :data:`BOOT_TEXT_ROW` with the BIOS teletype call,
    then halts for good.  Loaded at 0000:7C00; every jump is relative, so it
    does not matter whether the BIOS enters it as 0000:7C00 or 07C0:0000.
    """
    # Teletype output obeys control characters (CR, LF, BEL...): printable ASCII only.
    if not (text.isascii() and text.isprintable() and 0 < len(text) <= _TEXT_COLUMNS):
        raise ValueError(f"boot text must be 1-{_TEXT_COLUMNS} printable characters: {text!r}")
    message = text.encode("ascii")
    column = boot_text_column(text)

    def imm16(value: int) -> bytes:
        return struct.pack("<H", value)

    setup = b"".join([
        b"\xfa",                          # cli
        b"\x31\xc0",                      # xor ax, ax
        b"\x8e\xd8",                      # mov ds, ax          ; data at 0000:xxxx
        b"\x8e\xc0",                      # mov es, ax
        b"\x8e\xd0",                      # mov ss, ax
        b"\xbc" + imm16(_LOAD_ADDRESS),   # mov sp, 0x7c00      ; stack below the code
        b"\xfb",                          # sti                 ; the BIOS needs interrupts
        b"\xfc",                          # cld                 ; lodsb counts upwards
        b"\xb8\x03\x00",                  # mov ax, 0x0003      ; AH=00 set mode 3 (clears)
        b"\xcd\x10",                      # int 0x10
        b"\xb4\x01",                      # mov ah, 0x01        ; cursor shape...
        b"\xb9\x00\x20",                  # mov cx, 0x2000      ; ...CH bit 5: hidden
        b"\xcd\x10",                      # int 0x10
        b"\xb4\x02",                      # mov ah, 0x02        ; set cursor position
        b"\xb7\x00",                      # mov bh, 0           ; page 0
        b"\xba" + bytes((column, BOOT_TEXT_ROW)),  # mov dx, row:col (DH=row, DL=col)
        b"\xcd\x10",                      # int 0x10
    ])
    # mov si, <message> comes next (3 bytes); its address is known once the
    # print loop and the halt loop are laid out behind it.
    print_loop = b"".join([
        b"\xac",                          # next: lodsb             ; AL = [DS:SI++]
        b"\x84\xc0",                      #       test al, al
        b"\x74\x09",                      #       jz halt (+9)      ; NUL ends the text
        b"\xb4\x0e",                      #       mov ah, 0x0e      ; teletype output
        b"\xbb\x07\x00",                  #       mov bx, 0x0007    ; page 0, light grey
        b"\xcd\x10",                      #       int 0x10
        b"\xeb\xf2",                      #       jmp next (-14)
    ])
    halt = b"".join([
        b"\xfa",                          # halt: cli
        b"\xf4",                          #       hlt
        b"\xeb\xfc",                      #       jmp halt (-4)     ; after an NMI, halt again
    ])
    message_at = _LOAD_ADDRESS + len(setup) + 3 + len(print_loop) + len(halt)
    code = setup + b"\xbe" + imm16(message_at) + print_loop + halt + message + b"\x00"
    if len(code) > 510:
        raise ValueError(f"boot text too long: the program takes {len(code)} bytes")
    return code.ljust(510, b"\x00") + b"\x55\xaa"


def make_boot_iso(
    path: str | os.PathLike[str],
    text: str = "KIMCHI E2E",
    volume_id: str = "alpine-virt 3.19.0 x86_64",
) -> Path:
    """Write a small El Torito ISO (genisoimage) whose boot program prints *text*.

    A PC (SeaBIOS, QEMU without KVM is enough) boots it in well under a second
    and then shows *text* alone, centred on text row :data:`BOOT_TEXT_ROW`.
    The default *volume_id* makes kimchi identify it as Alpine 3.19, whose
    defaults are the smallest (512 MiB, one vCPU, a 4 GB disk); pass another
    label for other OS defaults.  The image (about 360 KiB) is readable by
    everyone, so that QEMU running as another user can open it.
    """
    genisoimage = shutil.which("genisoimage") or shutil.which("mkisofs")
    if genisoimage is None:
        raise RuntimeError("genisoimage is not installed (apt-get install genisoimage)")
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tree:
        root = Path(tree)
        # 4 virtual 512-byte sectors are loaded: give the image that much data.
        (root / "boot.img").write_bytes(boot_sector(text).ljust(4 * 512, b"\x00"))
        (root / "README.TXT").write_text(f"kimchi test boot image: prints {text!r}\n")
        subprocess.run(
            [genisoimage, "-quiet", "-o", str(target), "-V", volume_id, "-J", "-r",
             "-b", "boot.img", "-c", "boot.cat", "-no-emul-boot", "-boot-load-size", "4",
             str(root)],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=60,
        )
    target.chmod(0o644)
    return target
