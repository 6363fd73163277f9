"""What this host can do, found by trying it: at start-up and on demand.

Every probe is real (libvirt is asked to define a throw-away object and the
object is removed at once; QEMU reads a URL this daemon serves); ``[features]``
in the configuration can force a result.  Probes never leave objects behind.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
import xml.etree.ElementTree as ET
from typing import Any

from twisted.internet import threads
from twisted.logger import Logger

from kimchi.config import Config
from kimchi.errors import InvalidOperation
from kimchid.adapters.libvirt import LibvirtConnection

log = Logger()

STREAM_PROTOCOLS = ("http", "https", "ftp", "ftps", "tftp")
_PROBE_PREFIX = "kimchi-featuretest-"


def _stream_protocols(conn: Any) -> list[str]:
    """The network protocols libvirt accepts for a CD-ROM (each tried on a throw-away VM)."""
    import libvirt

    ok = []
    caps = conn.getCapabilities()
    domain_type = "kvm" if "<domain type='kvm'" in caps else (
        "qemu" if "<domain type='qemu'" in caps else "test")
    for proto in STREAM_PROTOCOLS:
        name = _PROBE_PREFIX + uuid.uuid4().hex[:8]
        xml = f"""<domain type='{domain_type}'><name>{name}</name><memory>65536</memory>
          <os><type>hvm</type></os><devices><disk type='network' device='cdrom'>
          <source protocol='{proto}' name='/probe.iso'><host name='localhost' port='1'/>
          </source><target dev='hdc' bus='ide'/><readonly/></disk></devices></domain>"""
        try:
            dom = conn.defineXML(xml)
        except libvirt.libvirtError:
            continue
        ok.append(proto)
        try:
            dom.undefine()
        except libvirt.libvirtError as e:
            log.warn("probe domain {name} not removed: {e}", name=name, e=str(e))
    return ok


def _leftovers(conn: Any) -> None:
    """Remove probe domains a crash may have left (Kimchi's users met those)."""
    for dom in conn.listAllDomains(0):
        if dom.name().startswith(_PROBE_PREFIX):
            try:
                if dom.isActive():
                    dom.destroy()
                dom.undefine()
            except Exception:
                pass


def _values(root: ET.Element, path: str) -> list[str]:
    return [v.text or "" for v in root.findall(f"{path}/value")]


def guest_firmware(conn: Any) -> dict[str, Any]:
    """What libvirt's domain capabilities say of a q35 guest of the host's arch: UEFI (a
    firmware auto-selection offering ``efi``, or OVMF loaders it knows), Secure Boot (a
    loader that may be ``secure``) and an emulated TPM (swtpm, found by libvirt)."""
    import libvirt

    caps = ET.fromstring(conn.getCapabilities())
    arch = caps.findtext("host/cpu/arch") or "x86_64"
    types = {d.get("type") for d in caps.findall(f"guest/arch[@name='{arch}']/domain")}
    virt = "kvm" if "kvm" in types else "qemu"
    try:
        root = ET.fromstring(conn.getDomainCapabilities(None, arch, "q35", virt, 0))
    except libvirt.libvirtError:  # the test driver, or no QEMU for this arch
        return {"uefi": False, "secure_boot": False, "tpm": False, "uefi_loaders": []}
    loader = root.find("os/loader[@supported='yes']")
    loaders = _values(root, "os/loader") if loader is not None else []
    uefi = "efi" in _values(root, "os/enum[@name='firmware']") or bool(loaders)
    secure = uefi and loader is not None and \
        "yes" in _values(loader, "enum[@name='secure']")
    tpm_el = root.find("devices/tpm[@supported='yes']")
    tpm = tpm_el is not None and "emulator" in _values(tpm_el, "enum[@name='backendModel']") \
        and "2.0" in (_values(tpm_el, "enum[@name='backendVersion']") or ["2.0"])
    return {"uefi": uefi, "secure_boot": secure, "tpm": tpm, "uefi_loaders": loaders}


def check_guest_needs(what: str, wants: dict[str, Any], caps: dict[str, Any]) -> None:
    """Refuse (400) what asks (``wants``: a template, or a VM's changes) for firmware or a
    TPM this host cannot give, saying what to install: better said now than when the VM
    starts.  ``what``: "Template f39", "Virtual machine vm1"."""
    uefi = wants.get("firmware") == "uefi"
    if uefi and not caps.get("uefi"):
        raise InvalidOperation("KCHVM0050E", what=what,
                               remedy="install ovmf (UEFI firmware for QEMU)")
    if wants.get("secure_boot") and wants.get("firmware", "uefi") == "uefi" \
            and not caps.get("secure_boot"):
        raise InvalidOperation("KCHVM0051E", what=what,
                               remedy="install ovmf, whose firmware descriptors offer a "
                                      "Secure Boot build, or turn secure_boot off")
    if wants.get("tpm") and not caps.get("tpm"):
        raise InvalidOperation("KCHVM0052E", what=what,
                               remedy="install swtpm and swtpm-tools (then POST "
                                      "/config/capabilities/refresh), or turn tpm off")


def _runs(argv: list[str], timeout: float = 20) -> bool:
    try:
        return subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, timeout=timeout).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def _qemu_reads(url: str) -> bool:
    """QEMU's block layer (qemu-img, through its curl driver) reads ``url``."""
    qemu_img = shutil.which("qemu-img")
    return qemu_img is not None and _runs([qemu_img, "info", "-f", "raw", url])


class Capabilities:
    def __init__(self, cfg: Config, libvirt: LibvirtConnection, reactor: Any,
                 probe_url: str) -> None:
        self.cfg = cfg
        self.libvirt = libvirt
        self.reactor = reactor
        self.probe_url = probe_url
        self.found: dict[str, Any] | None = None

    async def get(self) -> dict[str, Any]:
        if self.found is None:
            await self.refresh()
        assert self.found is not None
        return self.found

    async def refresh(self) -> dict[str, Any]:
        """Probe everything again (a few seconds at most)."""
        caps: dict[str, Any] = {"libvirtd_running": False, "libvirt_stream_protocols": [],
                                "screenshot": False, "kvm": False, "uefi": False,
                                "secure_boot": False, "tpm": False, "uefi_loaders": []}
        try:
            await self.libvirt.run(_leftovers)
            caps["libvirt_stream_protocols"] = await self.libvirt.run(_stream_protocols)
            caps["libvirtd_running"] = True
            caps["screenshot"] = True  # virDomainScreenshot: every driver kimchi uses
            caps["kvm"] = await self.libvirt.run(
                lambda c: "<domain type='kvm'" in c.getCapabilities())
            caps.update(await self.libvirt.run(guest_firmware))
        except Exception as e:
            log.warn("capability probes without libvirt: {e}", e=str(e))
        caps["kvm"] = bool(caps["kvm"]) and os.access("/dev/kvm", os.R_OK | os.W_OK)
        caps["qemu_img"] = shutil.which("qemu-img") is not None
        # the VM console in the browser: noVNC's modules, served under /ui/novnc/
        caps["console"] = os.path.isfile("/usr/share/novnc/core/rfb.js")
        # the serial console's terminal: node-xterm's modules, served as /ui/xterm/xterm.js
        caps["serial_console"] = os.path.isfile("/usr/share/nodejs/xterm/lib/xterm.js")
        caps["system_report_tool"] = await threads.deferToThread(
            lambda: bool(shutil.which("sosreport") or shutil.which("sos"))
            and _runs([shutil.which("sos") or shutil.which("sosreport") or "sos", "--help"]))
        caps["qemu_stream"] = await threads.deferToThread(_qemu_reads, self.probe_url)
        forced = []
        for key, setting in (("qemu_stream", self.cfg.features.iso_streaming),
                             ("kvm", self.cfg.features.kvm)):
            if setting != "auto":
                caps[key] = setting == "on"
                forced.append(key)
        if forced:
            caps["forced"] = forced
        self.found = caps
        log.info("capabilities: {caps}", caps=caps)
        return caps
