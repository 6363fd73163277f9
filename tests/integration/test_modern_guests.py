"""Modern guests end to end: a UEFI VM with a TPM made from a template on a real libvirtd
boots QEMU with OVMF and swtpm; on the test driver, the VM settings a PUT changes
(autostart, boot order and menu, CPU topology, NIC models, firmware, TPM) and their
refusals, and templates asking for what the host cannot give."""

from __future__ import annotations

import shutil
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import libvirt
import psutil
import pytest

from kimchid.model.domainxml import LIBOSINFO_NS
from tests.conftest import Kimchi, wait_for
from tests.integration.test_vm_e2e import boot_iso, prefix  # noqa: F401 (fixtures)

URI = "qemu:///system"


def _put(k: Kimchi, path: str, body: dict[str, Any]) -> Any:
    return k.http.put(k.url + path, json=body, timeout=20)


@pytest.fixture
def uefi_prefix(prefix: str) -> Iterator[str]:  # noqa: F811
    """``prefix``, whose domains are undefined with their NVRAM first: a plain undefine
    (the clean-up of ``prefix``) refuses a UEFI domain."""
    yield prefix
    conn = libvirt.open(URI)
    for dom in conn.listAllDomains(0):
        if dom.name().startswith(prefix):
            try:
                if dom.isActive():
                    dom.destroy()
                dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_NVRAM)
            except libvirt.libvirtError:
                pass


def _swtpm_of(uuid: str) -> list[psutil.Process]:
    """The swtpm processes libvirt started for the VM (its state folder is named by UUID)."""
    found = []
    for p in psutil.process_iter(["name", "cmdline"]):
        if p.info["name"] == "swtpm" and uuid in " ".join(p.info["cmdline"] or []):
            found.append(p)
    return found


@pytest.mark.skipif(not Path("/usr/share/OVMF").is_dir() or not shutil.which("swtpm"),
                    reason="needs ovmf and swtpm (kimchi.sh installs them)")
def test_a_uefi_vm_with_a_tpm_boots_ovmf_and_swtpm(kimchi_factory: Any, redis_db: Any,
                                                    boot_iso: Path,  # noqa: F811
                                                    uefi_prefix: str) -> None:
    tag = uefi_prefix
    k: Kimchi = kimchi_factory(redis_url=redis_db.url, extra={"libvirt": {"uri": URI},
                                                             "features": {"kvm": "off"}})
    wait_for(lambda: k.get("/vms").status_code == 200, timeout=30, what="the VM list")
    caps = k.get("/config/capabilities").json()
    assert caps["uefi"] and caps["secure_boot"] and caps["tpm"], caps
    assert any("OVMF" in p for p in caps["uefi_loaders"]), caps

    # Alpine 3.19 from the ISO: q35 (a SATA CD-ROM), BIOS by default; asked here as
    # Windows 11 has it: UEFI with Secure Boot and a TPM
    r = k.post("/templates", {"name": tag, "source_media": {"type": "disk",
                                                            "path": str(boot_iso)},
                              "firmware": "uefi", "secure_boot": True, "tpm": True})
    assert r.status_code == 201, r.text
    t = r.json()
    assert (t["machine"], t["firmware"], t["secure_boot"], t["tpm"], t["cdrom_bus"]) == (
        "q35", "uefi", True, True, "sata"), t
    assert t["os_defaults"]["firmware"] == "bios" and t["os_defaults"]["machine"] == "q35"

    name = f"{tag}-uefi"
    r = k.post("/vms", {"template": tag, "name": name})
    assert r.status_code == 202, r.text
    assert k.wait_task(r.json()["id"], timeout=60)["status"] == "finished"
    vm = k.get(f"/vms/{name}").json()
    assert (vm["firmware"], vm["secure_boot"], vm["tpm"], vm["os"]) == (
        "uefi", True, True, "http://alpinelinux.org/alpinelinux/3.19"), vm
    assert vm["machine"].startswith("pc-q35"), vm  # libvirt's full name of q35

    r = k.post(f"/vms/{name}/start")
    assert r.status_code == 200 and r.json()["state"] == "running", r.text
    conn = libvirt.open(URI)
    dom = conn.lookupByName(name)
    root = ET.fromstring(dom.XMLDesc(0))
    loader = root.find("os/loader")
    nvram = root.find("os/nvram")
    assert loader is not None and "OVMF_CODE" in (loader.text or ""), dom.XMLDesc(0)
    # the Secure Boot build with Microsoft's keys enrolled (Debian: OVMF_CODE_4M.ms.fd), its
    # variables from the matching template, SMM on
    assert loader.get("secure") == "yes" and ".ms." in (loader.text or ""), loader.text
    assert ".ms." in (nvram.get("template") or "") if nvram is not None else False
    assert root.find("features/smm").get("state") == "on"  # type: ignore[union-attr]
    assert nvram is not None and Path(nvram.text or "").is_file(), dom.XMLDesc(0)
    # QEMU really runs that firmware
    log = Path(f"/var/log/libvirt/qemu/{name}.log").read_text(errors="replace")
    assert (loader.text or "") in log, log[-2000:]
    # the TPM: a CRB device backed by a swtpm that libvirt started for this VM
    tpm = root.find("devices/tpm")
    assert tpm is not None and tpm.get("model") == "tpm-crb"
    assert tpm.find("backend").get("type") == "emulator"  # type: ignore[union-attr]
    assert wait_for(lambda: _swtpm_of(vm["uuid"]), timeout=10, what="swtpm of the VM")
    # the OS as libosinfo names it, in the domain's metadata
    osinfo = root.find(f"metadata/{{{LIBOSINFO_NS}}}libosinfo/{{{LIBOSINFO_NS}}}os")
    assert osinfo is not None and osinfo.get("id") == vm["os"]

    assert k.post(f"/vms/{name}/poweroff").status_code == 200
    # shut off, its firmware and TPM change in its definition
    r = _put(k, f"/vms/{name}", {"secure_boot": False, "tpm": False})
    assert r.status_code == 200, r.text
    assert (r.json()["firmware"], r.json()["secure_boot"], r.json()["tpm"]) == (
        "uefi", False, False)
    inactive = ET.fromstring(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
    assert {f.get("name"): f.get("enabled") for f in inactive.findall(
        "os/firmware/feature")} == {"secure-boot": "no", "enrolled-keys": "no"}
    assert inactive.find("os/loader") is None  # libvirt picks the plain build next time
    assert inactive.find("devices/tpm") is None
    r = _put(k, f"/vms/{name}", {"firmware": "bios"})
    assert (r.status_code, r.json()["firmware"], r.json()["secure_boot"]) == (200, "bios",
                                                                              False), r.text
    assert ET.fromstring(dom.XMLDesc(0)).find("os").get("firmware") is None  # type: ignore
    # UEFI again: libvirt finds its NVRAM where it was (named after the VM); a TPM again:
    # its state, kept by libvirt while it had none, comes back with it
    r = _put(k, f"/vms/{name}", {"firmware": "uefi", "secure_boot": False, "tpm": True})
    assert (r.status_code, r.json()["firmware"], r.json()["tpm"]) == (200, "uefi", True)
    state = Path("/var/lib/libvirt/swtpm") / vm["uuid"]
    assert state.is_dir()
    # deleted with its NVRAM and TPM state
    assert k.delete(f"/vms/{name}").status_code == 204
    assert not Path(nvram.text or "").exists() and not state.exists()
    wait_for(lambda: not _swtpm_of(vm["uuid"]), timeout=10, what="swtpm gone")
    assert k.delete(f"/templates/{tag}").status_code == 204


# -- on the test driver ---------------------------------------------------------------------

def test_vm_settings_through_put(kimchi: Kimchi) -> None:
    k = kimchi
    vm = k.get("/vms/test").json()  # the driver's VM: running, 2 vCPUs, one NIC
    assert vm["autostart"] is False and vm["firmware"] == "bios" and vm["tpm"] is False
    assert vm["boot"] == ["hd"] and vm["maxcpus"] == 2
    (nic,) = vm["interfaces"]
    assert nic["network"] == "default"

    # autostart: any state
    r = _put(k, "/vms/test", {"autostart": True})
    assert r.status_code == 200 and r.json()["autostart"] is True, r.text
    assert k.get("/vms/test").json()["autostart"] is True
    events = k.get("/events?since=0&types=vm.updated").json()
    assert any(e["data"].get("autostart") is True for e in events), events
    # the rest only when shut off
    body: dict[str, Any]
    for body in ({"boot": ["cdrom", "hd"]}, {"bootmenu": True}, {"tpm": False},
                 {"cpu_topology": {"sockets": 1, "cores": 2, "threads": 1}},
                 {"nic_model": "e1000e"}):
        r = _put(k, "/vms/test", body)
        assert r.status_code == 400 and r.json()["errcode"] == "KCHVM0014E", (body, r.text)
    assert k.post("/vms/test/poweroff").status_code == 200

    r = _put(k, "/vms/test", {"boot": ["cdrom", "hd", "network"], "bootmenu": True,
                              "cpu_topology": {"sockets": 1, "cores": 2, "threads": 1},
                              "nic_model": "rtl8139"})
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["boot"] == ["cdrom", "hd", "network"] and got["bootmenu"] is True
    assert got["cpu_topology"] == {"sockets": 1, "cores": 2, "threads": 1}
    assert [i["model"] for i in got["interfaces"]] == ["rtl8139"]
    assert k.get("/vms/test").json()["cpu_topology"] == got["cpu_topology"]
    # one interface by its MAC
    r = _put(k, "/vms/test", {"nic_model": {nic["mac"]: "e1000e"}})
    assert r.status_code == 200 and r.json()["interfaces"][0]["model"] == "e1000e", r.text
    # more vCPUs with a topology that makes them
    r = _put(k, "/vms/test", {"cpus": 4, "maxcpus": 4,
                              "cpu_topology": {"sockets": 2, "cores": 1, "threads": 2}})
    assert r.status_code == 200 and r.json()["maxcpus"] == 4, r.text

    # another version of its chipset: fine (the driver's VM names none: i440FX)
    assert _put(k, "/vms/test", {"machine": "pc-i440fx-7.2"}).json()["machine"] == \
        "pc-i440fx-7.2"
    # refusals, each with its code
    refusals: list[tuple[dict[str, Any], int, str]] = [
        ({"cpu_topology": {"sockets": 1, "cores": 2, "threads": 1}}, 400, "KCHVM0053E"),
        ({"maxcpus": 8, "cpus": 8}, 400, "KCHVM0053E"),  # the kept topology makes 4
        ({"boot": ["floppy"]}, 400, "KCHAPI0006E"),
        ({"boot": ["hd", "hd"]}, 400, "KCHAPI0006E"),
        ({"nic_model": "ne2k"}, 400, "KCHAPI0006E"),
        ({"nic_model": {"52:54:00:aa:bb:cc": "virtio"}}, 404, "KCHVMIFACE0001E"),
        ({"cpu_topology": {"sockets": 0, "cores": 1, "threads": 1}}, 400, "KCHAPI0006E"),
        ({"firmware": "bios", "secure_boot": True}, 400, "KCHVM0054E"),
        ({"machine": "q35"}, 400, "KCHVM0055E"),  # another chipset: other buses
        # the test driver gives neither UEFI nor a TPM: said at once, with what to install
        ({"firmware": "uefi"}, 400, "KCHVM0050E"),
        ({"secure_boot": True}, 400, "KCHVM0051E"),
        ({"tpm": True}, 400, "KCHVM0052E"),
    ]
    for body, status, code in refusals:
        r = _put(k, "/vms/test", body)
        assert (r.status_code, r.json().get("errcode")) == (status, code), (body, r.text)
    assert k.get("/vms/test").json()["maxcpus"] == 4  # nothing refused was kept

    # back: libvirt's topology, no autostart
    r = _put(k, "/vms/test", {"cpu_topology": None, "autostart": False})
    got = r.json()
    assert r.status_code == 200 and got["cpu_topology"] is None, r.text
    assert got["autostart"] is False


def test_templates_take_the_fields_and_vms_need_what_the_host_gives(kimchi: Kimchi,
                                                                      tmp_path: Path) -> None:
    from tests.isofactory import make_iso

    k = kimchi
    iso = tmp_path / "iso" / "fedora.iso"
    make_iso(iso, "Fedora-WS-Live-39-1-5")
    r = k.post("/templates", {"name": "f39", "source_media": {"type": "disk",
                                                               "path": str(iso)},
                              "bootmenu": True, "nic_model": "e1000e",
                              "cpu_info": {"vcpus": 4},
                              "cpu_topology": {"sockets": 1, "cores": 2, "threads": 2}})
    assert r.status_code == 201, r.text
    t = r.json()
    assert (t["machine"], t["firmware"], t["tpm"], t["cdrom_bus"]) == ("q35", "bios", False,
                                                                       "sata")
    assert t["os_defaults"]["machine"] == "q35" and t["os_defaults"]["source"] in (
        "osinfo-db", "kimchi")
    # refusals of templates that cannot work
    template_refusals: list[tuple[dict[str, Any], str]] = [
        ({"secure_boot": True}, "KCHTMPL0030E"),  # on BIOS
        ({"machine": "pc", "firmware": "uefi", "secure_boot": True}, "KCHTMPL0030E"),
        ({"cdrom_bus": "ide"}, "KCHTMPL0031E"),
        ({"cpu_topology": {"sockets": 3, "cores": 1, "threads": 1}}, "KCHTMPL0032E"),
        ({"firmware": "efi"}, "KCHAPI0006E"),
        ({"machine": "virt"}, "KCHAPI0006E"),
    ]
    for body, code in template_refusals:
        r = _put(k, "/templates/f39", body)
        assert (r.status_code, r.json().get("errcode")) == (400, code), (body, r.text)

    # the test driver gives neither UEFI nor a TPM: said at once, at the VM's creation
    caps = k.get("/config/capabilities").json()
    assert (caps["uefi"], caps["secure_boot"], caps["tpm"]) == (False, False, False)
    missing: list[tuple[dict[str, Any], str]] = [
        ({"firmware": "uefi"}, "KCHVM0050E"), ({"firmware": "bios", "tpm": True}, "KCHVM0052E")]
    for body, code in missing:
        assert _put(k, "/templates/f39", body).status_code == 200
        r = k.post("/vms", {"template": "f39", "name": "nope"})
        assert (r.status_code, r.json().get("errcode")) == (400, code), r.text
        assert "install" in r.json()["reason"], r.text

    # BIOS, no TPM: made, with the template's settings
    assert _put(k, "/templates/f39", {"tpm": False}).status_code == 200
    r = k.post("/vms", {"template": "f39", "name": "made"})
    assert r.status_code == 202, r.text
    assert k.wait_task(r.json()["id"])["status"] == "finished"
    vm = k.get("/vms/made").json()
    assert vm["bootmenu"] is True and vm["machine"] == "q35"
    assert vm["cpu_topology"] == {"sockets": 1, "cores": 2, "threads": 2}
    assert [i["model"] for i in vm["interfaces"]] == ["e1000e"]
    assert vm["os"] == "http://fedoraproject.org/fedora/39"
