"""Identify ISO images from their ISO-9660 volume descriptors.

Only the few sectors that matter are read: the volume descriptor set that
starts at sector 16 (normally one read of four sectors) and, for El Torito
images, the first 64 bytes of the boot catalog.  Nothing is mounted and no
external tool is run, so a deep scan can probe hundreds of images quickly.
:func:`probe_reader` takes any ``read_at(offset, length)`` callable, so the
same parser serves local files (:func:`probe_file`, ``os.pread``) and remote
images (:func:`probe_url`: HTTP ``Range`` requests, FTP ``REST``), of which
a few kilobytes are read, never the whole image.

References: ECMA-119 (ISO-9660) and the El Torito Bootable CD-ROM Format
Specification 1.0.
"""

from __future__ import annotations

import ftplib
import http.client
import os
import re
import socket
import ssl
import stat
import struct
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Protocol
from urllib.parse import unquote, urlsplit

from kimchi import __version__
from kimchi.outbound import PUBLIC_ONLY, DestinationRefused, OutboundPolicy

__all__ = [
    "DamagedIso",
    "DestinationRefused",
    "ImageReader",
    "IsoInfo",
    "NotAnIso",
    "ReadLimitExceeded",
    "RemoteError",
    "RemoteIso",
    "RemoteUnreachable",
    "identify_volume",
    "is_remote",
    "probe_fd",
    "probe_file",
    "probe_image",
    "probe_reader",
    "probe_url",
]

SECTOR_SIZE = 2048
# Sectors 0-15 are the system area; the volume descriptor set starts after it.
_VD_SET_OFFSET = 16 * SECTOR_SIZE
# PVD + boot record + Joliet SVD + terminator fit in four sectors for almost
# every real image, so one read usually covers the whole descriptor set.
_FIRST_READ_SECTORS = 4
# Bound the walk: a real descriptor set is a handful of sectors, and a corrupt
# image must not make us read megabytes.
_MAX_DESCRIPTORS = 16
# Smallest file that can hold the system area plus one descriptor.
_MIN_ISO_SIZE = _VD_SET_OFFSET + SECTOR_SIZE

_VD_IDENT = b"CD001"
_VD_BOOT_RECORD = 0
_VD_PRIMARY = 1
_VD_TERMINATOR = 255
_EL_TORITO_ID = b"EL TORITO SPECIFICATION"

# Boot catalog: a 32-byte validation entry followed by the 32-byte
# initial/default entry; 64 bytes is all we need.
_CATALOG_PROBE_SIZE = 64
_CATALOG_WORDS = struct.Struct("<16H")
_BOOTABLE = 0x88

_UNKNOWN = "unknown"

ReadAt = Callable[[int, int], bytes]


@dataclass(frozen=True, slots=True)
class IsoInfo:
    """What an ISO image says about itself."""

    volume_id: str  # stripped
    os_distro: str  # e.g. "fedora", or "unknown"
    os_version: str  # e.g. "39", or "unknown"
    # El Torito boot catalog with a bootable (0x88) default entry; None when the
    # catalog lies beyond what the reader may read (a server ignoring Range).
    bootable: bool | None


class NotAnIso(Exception):
    """Not an ISO-9660 image, or truncated/corrupt. str() is a short human reason.

    Plain :class:`NotAnIso` is about a file that is not an ISO at all; its reason
    ("too small", "no signature") tells something of the file's size and bytes,
    which a caller must not show for a file the user may not read
    (``/etc/shadow``).  :class:`DamagedIso` is about an image that is one.
    """


class DamagedIso(NotAnIso):
    """An ISO-9660 image (its signature is there) that is truncated or corrupt."""


class ReadLimitExceeded(Exception):
    """A reader was asked for bytes beyond what it may read (see :func:`probe_url`)."""


# ---------------------------------------------------------------------------
# Probing
# ---------------------------------------------------------------------------


def probe_file(path: str | os.PathLike[str]) -> IsoInfo:
    """Probe the ISO image at *path*.

    Raises :class:`NotAnIso` for anything that is not a (complete) ISO-9660
    image, including directories, FIFOs and other special files.  ``OSError``
    (missing file, permission denied, I/O error) propagates: the caller can
    tell "not an ISO" apart from "could not look".
    """
    # O_NONBLOCK so that a FIFO named *.iso cannot hang a directory scan;
    # it has no effect on regular files and block devices.
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    try:
        return probe_fd(fd)
    finally:
        os.close(fd)


def probe_fd(fd: int) -> IsoInfo:
    """Probe the ISO image open on *fd* with positional reads (``os.pread``).

    The file offset of *fd* is not used or changed.  For regular files the
    size is checked against the volume size recorded in the Primary Volume
    Descriptor, so partially downloaded or copied images are reported as
    :class:`NotAnIso`.
    """
    st = os.fstat(fd)
    size: int | None = None
    if stat.S_ISREG(st.st_mode):
        size = st.st_size
        # Cheap early reject, saves a read for empty and tiny files.
        if size < _MIN_ISO_SIZE:
            raise NotAnIso("too small for an ISO image")
    elif not stat.S_ISBLK(st.st_mode):
        raise NotAnIso("not a regular file or block device")

    def read_at(offset: int, length: int) -> bytes:
        return os.pread(fd, length, offset)

    return probe_reader(read_at, size=size)


class ImageReader(Protocol):
    """Where an image's bytes come from: a file, an HTTP server, an FTP server."""

    def read(self, offset: int, length: int) -> bytes:
        """Up to *length* bytes at *offset*; fewer at the end, none past it."""
        ...

    @property
    def size(self) -> int | None:
        """The image's size in bytes, when known (at the latest after the first read)."""
        ...


@dataclass(frozen=True, slots=True)
class _CallableReader:
    read: ReadAt
    size: int | None


def probe_reader(read_at: ReadAt, *, size: int | None = None) -> IsoInfo:
    """Probe an ISO image through ``read_at(offset, length) -> bytes``.

    *read_at* may return fewer bytes than asked (e.g. at end of file); an
    empty result means end of data.  A complete image is normally probed with
    two calls: one for the descriptor set, one for the El Torito boot catalog.
    If *size* (the image size in bytes, e.g. an HTTP Content-Length) is given,
    an image smaller than its recorded volume size is reported as truncated.

    Raises :class:`NotAnIso` when the data is not a complete ISO-9660 image.
    Exceptions raised by *read_at* propagate unchanged.
    """
    return probe_image(_CallableReader(read_at, size))


def probe_image(reader: ImageReader) -> IsoInfo:
    """Probe the ISO image that *reader* reads: the parser behind every ``probe_*``.

    As :func:`probe_reader`; ``reader.size`` is looked at after the first read,
    so a remote reader can learn it from its first answer.  A reader raising
    :class:`ReadLimitExceeded` for the boot catalog gives ``bootable=None``.
    """
    read_at = reader.read
    data = _read_exact(read_at, _VD_SET_OFFSET, _FIRST_READ_SECTORS * SECTOR_SIZE)
    if len(data) < SECTOR_SIZE:
        raise NotAnIso("too small for an ISO image")
    if data[1:6] != _VD_IDENT:
        raise NotAnIso("no ISO-9660 signature at sector 16")

    # A short first read means the data ends there: no point asking again.
    at_eof = len(data) < _FIRST_READ_SECTORS * SECTOR_SIZE
    pvd: bytes | None = None
    catalog_sector: int | None = None
    for index in range(_MAX_DESCRIPTORS):
        start = index * SECTOR_SIZE
        if start + SECTOR_SIZE > len(data):
            if not at_eof:
                # More descriptors than the first read covered: fetch the rest
                # of the bounded window in one go, not sector by sector.
                wanted = (_MAX_DESCRIPTORS - index) * SECTOR_SIZE
                more = _read_exact(read_at, _VD_SET_OFFSET + start, wanted)
                at_eof = len(more) < wanted
                data += more
            if start + SECTOR_SIZE > len(data):
                raise DamagedIso("truncated volume descriptor set")
        if data[start + 1 : start + 6] != _VD_IDENT:
            # Damaged descriptor before the terminator: keep what was found
            # so far (without a PVD this still ends in NotAnIso below).
            break
        vd_type = data[start]
        if vd_type == _VD_TERMINATOR:
            break
        if vd_type == _VD_PRIMARY and pvd is None:
            if data[start + 6] != 1:
                raise DamagedIso("unsupported primary volume descriptor version")
            pvd = data[start : start + SECTOR_SIZE]
        elif vd_type == _VD_BOOT_RECORD and catalog_sector is None:
            # Boot system id (bytes 7..38) is padded with NULs per El Torito;
            # also tolerate space padding written by sloppy mastering tools.
            if data[start + 7 : start + 39].rstrip(b"\x00 ") == _EL_TORITO_ID:
                (catalog_sector,) = struct.unpack_from("<I", data, start + 71)

    if pvd is None:
        raise DamagedIso("no primary volume descriptor")

    size = reader.size
    if size is not None:
        (blocks,) = struct.unpack_from("<I", pvd, 80)
        (block_size,) = struct.unpack_from("<H", pvd, 128)
        if block_size not in (512, 1024, 2048):
            block_size = SECTOR_SIZE
        expected = blocks * block_size
        if size < expected:
            raise DamagedIso(f"truncated image ({size} of {expected} bytes)")

    volume_id = _decode(pvd[40:72])
    volume_set_id = _decode(pvd[190:318])
    bootable: bool | None = False
    if catalog_sector is not None:
        try:
            bootable = _catalog_is_bootable(read_at, data, catalog_sector)
        except ReadLimitExceeded:
            bootable = None  # the distro is known; whether it boots is not
    distro, version = identify_volume(volume_id, volume_set_id)
    return IsoInfo(volume_id, distro, version, bootable)


def _read_exact(read_at: ReadAt, offset: int, length: int) -> bytes:
    """Read *length* bytes, accepting short reads; return less only at EOF."""
    data = bytes(read_at(offset, length))
    if len(data) >= length or not data:
        return data[:length]
    # A short but non-empty answer: keep asking for the rest, because some
    # readers (sockets, chunked HTTP) return partial data before EOF.
    chunks = [data]
    got = len(data)
    while got < length:
        more = bytes(read_at(offset + got, length - got))
        if not more:
            break
        chunks.append(more)
        got += len(more)
    return b"".join(chunks)[:length]


def _catalog_is_bootable(read_at: ReadAt, descriptors: bytes, sector: int) -> bool:
    """Tell whether the El Torito catalog at *sector* has a bootable default entry.

    A malformed catalog means "not bootable", never an error: the volume is
    still a valid ISO-9660 image that can be attached as a data disc.
    """
    if sector < 16:
        # Inside the system area: cannot be a real catalog.
        return False
    # The catalog sometimes sits right after the descriptors, inside the
    # data already read; reuse it instead of issuing another read.
    offset_in_buffer = (sector - 16) * SECTOR_SIZE
    if offset_in_buffer + _CATALOG_PROBE_SIZE <= len(descriptors):
        entries = descriptors[offset_in_buffer : offset_in_buffer + _CATALOG_PROBE_SIZE]
    else:
        entries = _read_exact(read_at, sector * SECTOR_SIZE, _CATALOG_PROBE_SIZE)
    if len(entries) < _CATALOG_PROBE_SIZE:
        return False
    # Validation entry: header id 1, key bytes 0x55 0xAA, and the 16
    # little-endian words summing to zero (mod 2**16).
    if entries[0] != 1 or entries[30] != 0x55 or entries[31] != 0xAA:
        return False
    if sum(_CATALOG_WORDS.unpack_from(entries, 0)) & 0xFFFF:
        return False
    return entries[32] == _BOOTABLE


def _decode(raw: bytes) -> str:
    """Decode a descriptor text field (space padded, sometimes NUL padded)."""
    raw = raw.rstrip(b" \x00")
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        # Not d-characters, but some mastering tools write UTF-8 anyway;
        # latin-1 is the last resort because it never fails.
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = raw.decode("latin-1")
    return text.strip()


# ---------------------------------------------------------------------------
# Remote images: HTTP(S) Range requests, FTP(S) REST
# ---------------------------------------------------------------------------

#: Never read more than this of a remote image, whatever the server does.  A
#: probe needs about 40 KiB; the rest is room for a server that ignores Range
#: and streams the image from its first byte (a boot catalog further in than
#: this is not looked at: ``bootable`` is then None).
MAX_REMOTE_READ = 1024 * 1024
_CHUNK = 64 * 1024
_REMOTE_URL = re.compile(r"^(?:https?|ftps?)://", re.IGNORECASE)
_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(?:(\d+)-\d+|\*)/(\d+|\*)\s*$", re.IGNORECASE)
_USER_AGENT = f"kimchid/{__version__}"


def is_remote(path: str) -> bool:
    """Whether *path* is a URL that :func:`probe_url` reads (http, https, ftp, ftps)."""
    return bool(_REMOTE_URL.match(path))


class RemoteError(Exception):
    """The remote image cannot be read: the server said no (HTTP 404 or 403, FTP 550),
    its TLS certificate is not trusted, or it does not speak the protocol.

    str() is a short human reason.
    """


class RemoteUnreachable(RemoteError):
    """The server cannot be reached or gave nothing, for now: DNS failure, connection
    refused, timeout, HTTP 5xx, an empty answer.  Trying later may work."""


@dataclass(frozen=True, slots=True)
class RemoteIso:
    """What :func:`probe_url` found."""

    info: IsoInfo
    size: int | None  # bytes: Content-Range total, Content-Length or FTP SIZE
    bytes_read: int  # what the probe received


def probe_url(url: str, *, timeout: float = 10.0, deadline: float = 20.0,
              limit: int = MAX_REMOTE_READ, tls: ssl.SSLContext | None = None,
              outbound: OutboundPolicy = PUBLIC_ONLY) -> RemoteIso:
    """Probe the ISO image at *url* (http, https, ftp, ftps) without downloading it.

    Only the sectors the parser needs are asked for: HTTP ``Range`` requests,
    FTP ``REST`` then an early close.  A server that ignores ranges is read
    from its start, at most *limit* bytes, then the connection is closed.
    *timeout* bounds each network operation, *deadline* the whole probe (name
    resolution aside); https and ftps certificates are verified unless *tls*
    says otherwise.  Every connection, redirections included, is made to an
    address *outbound* allows (by default public ones only), through no proxy;
    a redirection to another scheme (ftp, file) is not followed.  Blocking:
    call it from a thread.

    Raises :class:`ValueError` for a URL that is not one,
    :class:`~kimchi.outbound.DestinationRefused` for an address *outbound*
    refuses (before connecting to it), :class:`RemoteError` (or its
    :class:`RemoteUnreachable`) when the image cannot be read, and
    :class:`NotAnIso` when what was read is not an ISO-9660 image.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https", "ftp", "ftps"):
        raise ValueError(f"unsupported scheme {parts.scheme or 'none'!r}")
    try:
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        raise ValueError("the port is not a number") from None
    if not parts.hostname:
        raise ValueError("no host name")
    if any(c in url for c in "\r\n\t "):
        raise ValueError("blanks or line breaks in the URL")
    context = tls or ssl.create_default_context()
    reader: _RemoteReader | None = None
    try:
        if scheme.startswith("ftp"):
            reader = _FtpReader(url, timeout, deadline, limit, context, outbound)
        else:
            reader = _HttpReader(url, timeout, deadline, limit, context, outbound)
        try:
            info = probe_image(reader)
        except NotAnIso:
            if reader.size == 0 or reader.size is None and reader.received == 0:
                # Nothing at all, e.g. a proxy that answers for an offline host.
                raise RemoteUnreachable("the server sent no data") from None
            raise
        except ReadLimitExceeded as e:
            raise RemoteError(str(e)) from None
        return RemoteIso(info, reader.size, reader.received)
    except (OSError, http.client.HTTPException, ftplib.Error) as e:
        raise _remote_error(e) from None
    finally:
        if reader is not None:
            reader.close()


class _RemoteReader:
    """Parts of a remote image: by ranges while the server honours them, else from
    one stream of the image, of which the start is kept (at most *limit* bytes)."""

    def __init__(self, url: str, timeout: float, deadline: float, limit: int) -> None:
        self.url = url
        self.timeout = timeout
        self.size: int | None = None
        self.received = 0
        self._deadline = time.monotonic() + deadline
        self._limit = limit
        self._stream: IO[bytes] | None = None  # set once ranges are not honoured
        self._head = bytearray()  # what the stream gave so far

    def read(self, offset: int, length: int) -> bytes:
        if length <= 0:
            return b""
        if self._stream is None:
            if self.received + length > self._limit:
                raise ReadLimitExceeded(f"more than {self._limit} bytes to read")
            data = self._read_range(offset, length)
            if data is not None:
                return data
        end = offset + length
        if end > self._limit:
            raise ReadLimitExceeded(f"byte {end} is beyond the first {self._limit} the "
                                    "server sends (it ignores ranges)")
        while self._stream is not None and len(self._head) < end:
            chunk = self._take(self._stream, end - len(self._head))
            if not chunk:
                self._close_stream()
            self._head += chunk
        return bytes(self._head[offset:end])

    def _read_range(self, offset: int, length: int) -> bytes | None:
        """The bytes, or None after setting ``_stream`` when ranges are not honoured."""
        raise NotImplementedError

    def _take(self, stream: IO[bytes], n: int) -> bytes:
        """Up to *n* bytes of *stream* (fewer at its end), counted, within the deadline."""
        parts: list[bytes] = []
        while n > 0:
            if time.monotonic() > self._deadline:
                raise TimeoutError("the whole probe took too long")
            chunk = stream.read(min(n, _CHUNK))
            if not chunk:
                break
            parts.append(chunk)
            n -= len(chunk)
            self.received += len(chunk)
        return b"".join(parts)

    def _close_stream(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None

    def close(self) -> None:
        self._close_stream()


class _HttpReader(_RemoteReader):
    def __init__(self, url: str, timeout: float, deadline: float, limit: int,
                 context: ssl.SSLContext, outbound: OutboundPolicy) -> None:
        super().__init__(url, timeout, deadline, limit)
        # Not build_opener(): its proxies would connect for us, unchecked, and its FTP
        # and file handlers would follow a redirection to ftp: or file: URLs.
        self._opener = urllib.request.OpenerDirector()
        for handler in (urllib.request.UnknownHandler(), _CheckedHTTPHandler(outbound),
                        _CheckedHTTPSHandler(outbound, context),
                        urllib.request.HTTPDefaultErrorHandler(),
                        urllib.request.HTTPRedirectHandler(),
                        urllib.request.HTTPErrorProcessor()):
            self._opener.add_handler(handler)

    def _read_range(self, offset: int, length: int) -> bytes | None:
        request = urllib.request.Request(self.url, headers={
            "Range": f"bytes={offset}-{offset + length - 1}",
            "Accept-Encoding": "identity", "User-Agent": _USER_AGENT})
        try:
            response = self._opener.open(request, timeout=self.timeout)
        except urllib.error.HTTPError as e:
            e.close()
            if e.code != 416:
                raise
            # Range Not Satisfiable: the image ends before offset
            self.size = _content_range(e.headers.get("Content-Range", ""))[1]
            return b""
        # Mirrors redirect: ask the mirror itself from now on
        self.url = response.geturl()
        if response.status == 206:
            with response:
                start, total = _content_range(response.headers.get("Content-Range", ""))
                if start != offset:
                    raise RemoteError(f"asked for byte {offset}, the server sent {start}")
                self.size = total
                return self._take(response, length)
        # 200: the server ignores Range and sends the image from its first byte
        declared = response.headers.get("Content-Length", "")
        self.size = int(declared) if declared.isdigit() else None
        self._stream = response
        return None


def _checked_connection(cls: type[http.client.HTTPConnection], outbound: OutboundPolicy
                        ) -> Callable[..., http.client.HTTPConnection]:
    """*cls*, whose socket is connected by *outbound*: resolved once, checked, connected to
    the checked address (the Host header and the TLS name stay the URL's)."""
    def make(host: str, **kwargs: object) -> http.client.HTTPConnection:
        conn = cls(host, **kwargs)  # type: ignore[arg-type]

        def connect(address: tuple[str, int], timeout: object = None,
                    source_address: object = None) -> socket.socket:
            return outbound.connect(address[0], address[1], timeout)

        # the one socket factory HTTPConnection.connect (and so HTTPS) goes through
        conn._create_connection = connect  # type: ignore[attr-defined]
        return conn
    return make


class _CheckedHTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, outbound: OutboundPolicy) -> None:
        super().__init__()
        self._connection = _checked_connection(http.client.HTTPConnection, outbound)

    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(self._connection, req)


class _CheckedHTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, outbound: OutboundPolicy, context: ssl.SSLContext) -> None:
        super().__init__(context=context)
        self._connection = _checked_connection(http.client.HTTPSConnection, outbound)
        self._tls = context

    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(self._connection, req, context=self._tls)


def _content_range(value: str) -> tuple[int | None, int | None]:
    """``bytes 32768-40959/52428800`` -> (32768, 52428800); ``bytes */N`` -> (None, N)."""
    m = _CONTENT_RANGE.match(value)
    if m is None:
        raise RemoteError(f"unreadable Content-Range {value[:60]!r}")
    start, total = m.groups()
    return (int(start) if start else None,
            int(total) if total and total != "*" else None)


class _FtpReader(_RemoteReader):
    def __init__(self, url: str, timeout: float, deadline: float, limit: int,
                 context: ssl.SSLContext, outbound: OutboundPolicy) -> None:
        super().__init__(url, timeout, deadline, limit)
        parts = urlsplit(url)
        self._path = unquote(parts.path) or "/"
        self._ftp = (ftplib.FTP_TLS(context=context, timeout=timeout)
                     if parts.scheme.lower() == "ftps" else ftplib.FTP(timeout=timeout))
        self._data: socket.socket | None = None
        self._connect(parts.hostname or "", parts.port or 21, outbound)
        self._ftp.login(unquote(parts.username or "anonymous"),
                        unquote(parts.password or "anonymous@"))
        if isinstance(self._ftp, ftplib.FTP_TLS):
            self._ftp.prot_p()
        self._ftp.voidcmd("TYPE I")
        try:
            self.size = self._ftp.size(self._path)
        except ftplib.error_perm:
            pass  # SIZE is an extension (RFC 3659); RETR says whether the file is there

    def _connect(self, host: str, port: int, outbound: OutboundPolicy) -> None:
        """Connect to an address of *host* that *outbound* checked, resolving it once.

        Data connections go to the same address: ftplib ignores the address in a PASV
        answer (``trust_server_pasv_ipv4_address`` is False) and uses the peer's.
        """
        error: OSError | None = None
        for _family, _kind, _proto, sockaddr in outbound.addresses(host, port):
            try:
                self._ftp.connect(sockaddr[0], port)
                break
            except OSError as e:
                error = e
        else:
            raise error or OSError(f"no address for {host}")
        self._ftp.host = host  # FTPS checks the certificate against the name
        # ftplib's default, relied on
        self._ftp.trust_server_pasv_ipv4_address = False  # type: ignore[attr-defined]

    def _read_range(self, offset: int, length: int) -> bytes | None:
        try:
            data = self._ftp.transfercmd(f"RETR {self._path}", rest=offset or None)
        except ftplib.error_perm as e:
            if not offset or not str(e).startswith(("500", "501", "502", "504")):
                raise
            # REST not understood: read the file from its start instead
            self._data = self._ftp.transfercmd(f"RETR {self._path}")
            self._stream = self._data.makefile("rb")
            return None
        try:
            with data, data.makefile("rb") as stream:
                return self._take(stream, length)
        finally:
            self._transfer_ended()

    def _transfer_ended(self) -> None:
        """Read the reply to RETR after closing its data connection early.

        The server answers 426 (aborted) or 226 (it had sent everything) — one
        reply.  ABOR is not used: many servers answer it twice (426 then 226),
        more than ftplib reads, which would shift every later reply by one.
        """
        try:
            self._ftp.voidresp()
        except (ftplib.error_temp, ftplib.error_perm):
            pass

    def _close_stream(self) -> None:
        super()._close_stream()
        if self._data is not None:
            self._data.close()
            self._data = None

    def close(self) -> None:
        super().close()
        self._ftp.close()  # no QUIT: a transfer may still be running


def _remote_error(e: BaseException) -> RemoteError:
    """A network failure as the user should read it, temporary or not."""
    if isinstance(e, urllib.error.HTTPError):
        temporary = e.code in (408, 429) or e.code >= 500
        return (RemoteUnreachable if temporary else RemoteError)(f"HTTP {e.code} {e.reason}")
    if isinstance(e, urllib.error.URLError):
        if not isinstance(e.reason, BaseException):
            return RemoteError(str(e.reason))  # e.g. a redirection to a file: URL
        e = e.reason
    if isinstance(e, ftplib.error_temp):
        return RemoteUnreachable(f"FTP {str(e).strip()}")
    if isinstance(e, ftplib.Error):
        return RemoteError(f"FTP {str(e).strip()}")
    if isinstance(e, ssl.SSLCertVerificationError):
        return RemoteError(f"TLS certificate not trusted: {e.verify_message}")
    if isinstance(e, ssl.SSLError):
        return RemoteError(f"TLS error: {e.reason or e}")
    if isinstance(e, socket.gaierror):
        return RemoteUnreachable(f"cannot resolve the host name: {e.strerror}")
    if isinstance(e, TimeoutError):
        return RemoteUnreachable(f"timed out: {e}" if str(e) else "timed out")
    if isinstance(e, ConnectionRefusedError):
        return RemoteUnreachable("connection refused")
    if isinstance(e, OSError):
        return RemoteUnreachable(e.strerror or str(e) or type(e).__name__)
    if isinstance(e, http.client.IncompleteRead):
        return RemoteUnreachable("the connection closed early")
    return RemoteError(f"not an HTTP answer ({type(e).__name__})")


# ---------------------------------------------------------------------------
# Volume id -> (distro, version)
# ---------------------------------------------------------------------------

VersionFn = Callable[[re.Match[str]], str]


def _fixed(version: str) -> VersionFn:
    return lambda _m: version


def _dotted(m: re.Match[str]) -> str:
    """Join the groups that matched with dots: ("9", "2") -> "9.2"."""
    return ".".join(g for g in m.groups() if g)


def _group1(m: re.Match[str]) -> str:
    return m.group(1)


def _sp(m: re.Match[str]) -> str:
    """SUSE service packs: ("15", "4") -> "15sp4", ("15", None) -> "15"."""
    major, service_pack = m.group(1), m.group(2)
    return f"{major}sp{service_pack}" if service_pack else major


def _windows(version: str, prefixes: str) -> tuple[str, str, VersionFn]:
    return ("windows", rf"^(?:{prefixes})", _fixed(version))


# A minor version: 1-2 digits, then a separator or the end, so that build
# numbers ("CentOS-8-2004") and architectures are not taken for a minor.
_MINOR = r"(?:[-_.]U?(\d{1,2})(?=[-_ .]|$))?"

# Ordered: the first match wins, so specific rules come before the generic
# "distro known, version unknown" ones.  All patterns are case-insensitive and
# anchored at the start of the volume id.
#
# Windows labels are ambiguous: the label names the media family and edition,
# not the release.  Windows 10 and 11 both ship as CCCOMA_*/CPBA_*, so all
# modern client media map to "10"; Server 2016, 2019, 2022 and 2025 all ship
# as SSS_X64FRE(E)_*, so they map to "2022".  Treat Windows versions as hints.
# Older label lists come from libosinfo via the original Kimchi isoinfo.py.
_RULES_SPEC: list[tuple[str, str, VersionFn]] = [
    # --- Red Hat family --------------------------------------------------
    ("fedora", r"^Fedora(?![a-z]).*\brawh", _fixed("rawhide")),
    # First stand-alone 1-2 digit number: skips "x86_64", "ppc64le", dates.
    ("fedora", r"^Fedora(?![a-z]).*?(?<![a-z0-9_])(\d{1,2})(?![0-9a-z])", _group1),
    ("fedora", r"^Fedora(?![a-z])", _fixed(_UNKNOWN)),
    # CentOS Stream is reported as plain "centos" with its major version.
    ("centos", rf"^CentOS[-_ ](?:Stream[-_ ])?(\d+){_MINOR}", _dotted),
    ("centos", r"^CentOS", _fixed(_UNKNOWN)),
    # "RHEL-9-2-0-BaseOS", "RHEL-8.6 Server", "RHEL_7.9 Server", "RHEL/4-U8".
    ("rhel", rf"^RHEL(?:-LE)?[-_/ ]?(\d+){_MINOR}", _dotted),
    ("rhel", r"^Red[ _]?Hat[ _]Enterprise[ _]Linux[ _](\d+)(?:\.(\d+))?", _dotted),
    # Generic "RED_HAT"-style ids: identify_volume() then tries the volume
    # set id, which carries the real release.
    ("rhel", r"^(?:RED[ _]?HAT|RHEL)", _fixed(_UNKNOWN)),
    ("rocky", rf"^Rocky[-_ ](?:Linux[-_ ])?(\d+){_MINOR}", _dotted),
    ("almalinux", rf"^AlmaLinux[-_ ](?:OS[-_ ])?(\d+){_MINOR}", _dotted),
    ("ol", rf"^OL[-_](\d+){_MINOR}", _dotted),  # Oracle Linux
    # --- Debian family ---------------------------------------------------
    # "Debian 12.2.0 amd64 n" -> "12.2"; "d-live ..." are the live images.
    ("debian", r"^(?:Debian|d-live) (\d+)(?:\.(\d+))?", _dotted),
    ("debian", r"^Debian\b", _fixed(_UNKNOWN)),
    # Ubuntu and its flavours (Kubuntu, Xubuntu, Ubuntu-Server, Ubuntu-MATE);
    # "22.04.3" -> "22.04".
    ("ubuntu", r"^[a-z]*ubuntu(?:[-_ ][a-z]+)?[-_ ](\d{1,2}\.\d{2})", _group1),
    ("ubuntu", r"^[a-z]*ubuntu", _fixed(_UNKNOWN)),
    ("linuxmint", r"^Linux ?Mint[-_ ](\d+(?:\.\d+)?)", _group1),
    # --- SUSE --------------------------------------------------------------
    ("opensuse", r"^openSUSE[-_ ]Tumbleweed", _fixed("tumbleweed")),
    ("opensuse", r"^openSUSE[-_ ](?:Leap[-_ ])?(\d+\.\d+)", _group1),
    ("opensuse", r"^openSUSE", _fixed(_UNKNOWN)),
    # "SLE-15-SP4-Full", "SLES-11-SP4-DVD", "SLES10", "SUSE_SLES-11-0-0".
    ("sles", r"^(?:SUSE_)?SLES?[-_ ]?(\d+)(?:[-_ ]SP(\d+))?", _sp),
    ("sled", r"^SLED[-_ ]?(\d+)(?:[-_ ]SP(\d+))?", _sp),
    # --- Others ----------------------------------------------------------
    # archiso labels are ARCH_YYYYMM; users say "2023.11".
    ("arch", r"^ARCH_(\d{4})(\d{2})", _dotted),
    ("alpine", r"^alpine-\w+ (\d+)\.(\d+)", _dotted),
    ("gentoo", r"^Gentoo[-_ ](?:Linux[-_ ])?\w+[-_ ](\d{8})", _group1),
    ("gentoo", r"^Gentoo", _fixed(_UNKNOWN)),
    # FreeBSD release media: "13_2_RELEASE_AMD64_CD"; older: "FreeBSD_Install".
    ("freebsd", r"^(\d+)_(\d+)_(?:RELEASE|RC\d*|BETA\d*|ALPHA\d*|STABLE|CURRENT)_", _dotted),
    ("freebsd", r"^FreeBSD[-_ ](\d+)\.(\d+)", _dotted),
    ("freebsd", r"^FreeBSD", _fixed(_UNKNOWN)),
    ("openbsd", r"^OpenBSD/\w+\s+(\d+\.\d+)", _group1),
    # NetBSD labels drop the dot ("NETBSD_93" = 9.3, "NETBSD_100" = 10.0);
    # minors have been single digits since 5.x, so the last digit is the minor.
    ("netbsd", r"^NETBSD_(\d+)(\d)$", _dotted),
    ("netbsd", r"^NetBSD[-_ ](\d+)\.(\d+)", _dotted),
    # --- Windows (see the note above) ---------------------------------------
    _windows("2012r2", r"IR[M\d]_S"),  # IRM_SSS_X64FREV, IR3_SSS_X64FREE
    _windows("2012", r"HRM_S"),
    _windows("2022", r"SSS_(?:X64|A64)FREE?_"),
    _windows("8.1", r"IR[M\d]_C"),  # IR3_CCSA_X64FRE, IRM_CPRA_X64FREV
    _windows("8", r"(?:HB1|HRM)_C"),
    # CCCOMA (consumer), CPBA (business), CCSA, CENA, CPRA; J_ = 1507 media.
    _windows("10", r"(?:J_)?C[A-Z]{2,5}_(?:X64|X86|A64|ARM64)FREV?_"),
    _windows("7", r"G(?:SP1)?RMC"),  # GRMCULFRER, GSP1RMCPRXFRER
    _windows("2008r2", r"GRMS|SRVHPCR2"),
    _windows("2008", r"KRTMS|KRM[SW]"),
    _windows("vista", r"FB1E|LRM[CE]|FRTMB|FRM[BE]"),
    _windows("2003r2", r"CRM[ES]X?FPP|CRMDX?VOL|CR0[SE]CD2|BX2[SE]X?FPP|BRM[ES]CD2"),
    _windows(
        "2003",
        r"[AN]RM[EDSW]I?X?(?:CHK|VOL|EVL|OEM|FPP)|CRMSX?VOL|BRMEX?(?:VOL|EVL)"
        r"|BX2DX?VOL|CR0SP[XI]?2",
    ),
    _windows(
        "xp",
        r"WX[PH]|XRM[PH]|X1A[PH]|VRM[PH]|VX2[PH]|GRTM[PH]|GRTMUPD|MX2P"
        r"|[XMV]RMSD2|ARMPX|AX2PX|NRMPI",
    ),
    _windows("2000", r"W2[APS]|SP[12][APS](?:FPP|OEM|SEL)|[YZ]RM[APS]|WIN2000|W2K_SP4"),
]

# Compiled once at import: identify_volume() runs for every ISO of a scan.
_RULES: tuple[tuple[str, re.Pattern[str], VersionFn], ...] = tuple(
    (distro, re.compile(pattern, re.IGNORECASE), version)
    for distro, pattern, version in _RULES_SPEC
)


def _match(label: str) -> tuple[str, str]:
    for distro, pattern, version in _RULES:
        m = pattern.match(label)
        if m is not None:
            return distro, version(m) or _UNKNOWN
    return _UNKNOWN, _UNKNOWN


def identify_volume(volume_id: str, volume_set_id: str = "") -> tuple[str, str]:
    """Map an ISO volume id to ``(os_distro, os_version)``.

    Returns ``("unknown", "unknown")`` when nothing matches, and a known
    distro with version ``"unknown"`` when only the distro is recognizable.
    When the volume id says too little (e.g. Red Hat media labelled
    ``RED_HAT``), *volume_set_id* is tried as well and wins if it names the
    same distro (or the volume id named none) with a version.
    """
    distro, version = _match(volume_id.strip())
    if version == _UNKNOWN and volume_set_id:
        alt_distro, alt_version = _match(volume_set_id.strip())
        if alt_distro != _UNKNOWN and distro in (_UNKNOWN, alt_distro):
            return alt_distro, alt_version
    return distro, version
