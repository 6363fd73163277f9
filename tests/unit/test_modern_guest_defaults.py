"""Modern guests: the chipset, firmware and TPM an OS gets (from osinfo-db, else kimchi's own
table), the XML that asks libvirt for them, what the host can give, and the VM settings a
PUT changes in a domain's definition."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import libvirt
import pytest

from kimchi.errors import InvalidOperation, NotFound
from kimchid.model import osinfo
from kimchid.model.capabilities import check_guest_needs, guest_firmware
from kimchid.model.domainxml import HostGuest, domain_xml, plan_volumes
from kimchid.model.osinfo import defaults, machine_defaults
from kimchid.model.templates import _check_machine
from kimchid.model.vms import _edit_definition, _edit_settings, read_settings

QEMU = HostGuest("qemu", "x86_64")
NO_DB = "/nonexistent/osinfo"
INSTALLED = Path(osinfo.OSINFO_DB, "os").is_dir()


def _dom(template: dict[str, Any], guest: HostGuest = QEMU) -> ET.Element:
    vols = plan_volumes("vm1", template)
    return ET.fromstring(domain_xml(
        name="vm1", template_name="t", template=template, guest=guest,
        volumes=[(v, f"/pool/{v.name}") for v in vols], task_id="abc",
        created="2026-01-01T00:00:00.000Z"))


# -- the OS's defaults ------------------------------------------------------------------------

@pytest.mark.parametrize(("distro", "version", "machine", "firmware", "secure", "tpm"), [
    ("windows", "11", "q35", "uefi", True, True),
    ("windows", "10", "q35", "bios", False, False),
    ("windows", "2022", "q35", "bios", False, False),
    ("windows", "xp", "pc", "bios", False, False),
    ("fedora", "39", "q35", "bios", False, False),
    ("ubuntu", "22.04", "q35", "bios", False, False),
    ("debian", "8", "pc", "bios", False, False),
    ("centos", "5.5", "pc", "bios", False, False),
    ("opensuse", "15.5", "q35", "bios", False, False),
    ("unknown", "unknown", "pc", "bios", False, False),
])
def test_the_projects_table_without_osinfo_db(distro, version, machine, firmware, secure, tpm):
    got = machine_defaults(distro, version, db=NO_DB)
    assert got == {"machine": machine, "firmware": firmware, "secure_boot": secure,
                   "tpm": tpm, "source": "kimchi"}


def _fake_db(root: Path) -> str:
    """An osinfo-db laid out as Debian's package lays it out, with the data kimchi reads."""
    ms = root / "os" / "microsoft.com"
    ms.mkdir(parents=True)
    (ms / "win-11.xml").write_text(
        "<libosinfo version='0.0.1'><os id='http://microsoft.com/win/11'>"
        "<short-id>win11</short-id><derives-from id='http://microsoft.com/win/10'/>"
        "<firmware arch='x86_64' type='efi'/>"
        "<firmware arch='x86_64' type='bios' supported='false'/></os></libosinfo>")
    (ms / "win-10.xml").write_text(
        "<libosinfo version='0.0.1'><os id='http://microsoft.com/win/10'>"
        "<short-id>win10</short-id></os></libosinfo>")
    ex = root / "os" / "example.org"
    ex.mkdir(parents=True)
    (ex / "distro-1.xml").write_text(
        "<libosinfo version='0.0.1'><os id='http://example.org/fedora/1'>"
        "<short-id>fedora1</short-id></os></libosinfo>")
    # the chipset said by a release's .d file, inherited by the release deriving from it
    (ex / "distro-1.d").mkdir()
    (ex / "distro-1.d" / "devices.xml").write_text(
        "<libosinfo version='0.0.1'><os id='http://example.org/fedora/1'><devices>"
        "<device id='http://qemu.org/chipset/x86/q35'/></devices></os></libosinfo>")
    (ex / "distro-2.xml").write_text(
        "<libosinfo version='0.0.1'><os id='http://example.org/fedora/2'>"
        "<short-id>fedora2</short-id><derives-from id='http://example.org/fedora/1'/>"
        "<firmware arch='x86_64' type='efi'/></os></libosinfo>")
    # a release that says it no longer runs on q35 (osinfo-db's supported='false')
    (ex / "distro-3.xml").write_text(
        "<libosinfo version='0.0.1'><os id='http://example.org/fedora/3'>"
        "<short-id>fedora3</short-id><derives-from id='http://example.org/fedora/2'/>"
        "<devices><device id='http://qemu.org/chipset/x86/q35' supported='false'/></devices>"
        "</os></libosinfo>")
    return str(root)


def test_osinfo_db_says_the_chipset_and_firmware_where_it_knows_the_os(tmp_path):
    db = _fake_db(tmp_path)
    # BIOS "not supported": UEFI; Secure Boot and the TPM from kimchi's table (osinfo-db
    # never says them)
    assert machine_defaults("windows", "11", db=db) == {
        "machine": "q35", "firmware": "uefi", "secure_boot": True, "tpm": True,
        "source": "osinfo-db"}
    # q35 listed in a .d file of the release it derives from; UEFI offered, BIOS too: BIOS
    assert machine_defaults("fedora", "2", db=db) == {
        "machine": "q35", "firmware": "bios", "secure_boot": False, "tpm": False,
        "source": "osinfo-db"}
    assert machine_defaults("fedora", "3", db=db)["machine"] == "pc"  # said unsupported
    # win10 is known to this db, which lists no chipset for it: osinfo-db's word wins
    assert machine_defaults("windows", "10", db=db)["machine"] == "pc"
    # what it does not know: the table
    assert machine_defaults("debian", "12", db=db)["source"] == "kimchi"
    assert osinfo.osinfo_id("windows", "11", db=db) == "http://microsoft.com/win/11"


@pytest.mark.skipif(not INSTALLED, reason="osinfo-db is not installed")
def test_the_installed_osinfo_db():
    win11 = machine_defaults("windows", "11")
    assert (win11["machine"], win11["firmware"], win11["source"]) == ("q35", "uefi",
                                                                       "osinfo-db")
    assert win11["secure_boot"] and win11["tpm"]
    jammy = machine_defaults("ubuntu", "22.04")
    assert (jammy["machine"], jammy["firmware"], jammy["source"]) == ("q35", "bios",
                                                                       "osinfo-db")
    assert machine_defaults("centos", "5.5")["machine"] == "pc"
    assert osinfo.osinfo_id("windows", "2012r2") == "http://microsoft.com/win/2k12r2"


def test_a_template_on_q35_gets_a_sata_cdrom():
    f39 = defaults("fedora", "39")
    assert (f39["machine"], f39["firmware"], f39["cdrom_bus"]) == ("q35", "bios", "sata")
    old = defaults("centos", "5.5")
    assert (old["machine"], old["cdrom_bus"], old["disks"][0]["bus"]) == ("pc", "ide", "ide")
    win11 = defaults("windows", "11")
    assert (win11["firmware"], win11["secure_boot"], win11["tpm"]) == ("uefi", True, True)


# -- the XML of a new VM ----------------------------------------------------------------------

def test_windows_11_boots_uefi_with_secure_boot_and_a_tpm():
    root = _dom({**defaults("windows", "11"), "source_media": {"type": "disk",
                                                                 "path": "/isos/w.iso"}})
    os_el = root.find("os")
    assert os_el.get("firmware") == "efi"
    assert os_el.find("type").get("machine") == "q35"
    features = {f.get("name"): f.get("enabled") for f in os_el.findall("firmware/feature")}
    assert features == {"secure-boot": "yes", "enrolled-keys": "yes"}
    assert os_el.find("loader").get("secure") == "yes"
    assert root.find("features/smm").get("state") == "on"  # Secure Boot needs SMM
    tpm = root.find("devices/tpm")
    assert tpm.get("model") == "tpm-crb"
    assert (tpm.find("backend").get("type"), tpm.find("backend").get("version")) == (
        "emulator", "2.0")
    # no IDE on q35
    assert {d.find("target").get("bus") for d in root.findall("devices/disk")} == {"sata"}


def test_uefi_without_secure_boot_and_bios_vms():
    t = {**defaults("fedora", "39"), "firmware": "uefi", "secure_boot": False,
         "bootmenu": True, "cpu_topology": {"sockets": 1, "cores": 2, "threads": 1},
         "cpu_info": {"vcpus": 2, "maxvcpus": 2}}
    root = _dom(t)
    assert root.find("os").get("firmware") == "efi"
    assert {f.get("name"): f.get("enabled") for f in root.findall("os/firmware/feature")} == {
        "secure-boot": "no", "enrolled-keys": "no"}
    assert root.find("features/smm") is None
    assert root.find("devices/tpm") is None
    assert root.find("os/bootmenu").get("enable") == "yes"
    top = root.find("cpu/topology")
    assert (top.get("sockets"), top.get("dies"), top.get("cores"), top.get("threads")) == (
        "1", "1", "2", "1")
    bios = _dom(defaults("centos", "5.5"))
    assert bios.find("os").get("firmware") is None and bios.find("os/loader") is None
    assert bios.find("os/type").get("machine") == "pc"
    assert bios.find("cpu") is None and bios.find("os/bootmenu") is None
    # an old template (made before these fields): libvirt's defaults, as before
    plain = _dom({k: v for k, v in defaults("fedora", "39").items()
                  if k not in ("machine", "firmware", "secure_boot", "tpm")})
    assert plain.find("os/type").get("machine") is None


def test_templates_that_cannot_work_are_refused():
    ok = defaults("windows", "11")
    _check_machine(ok)
    for bad, code in [
        ({**ok, "machine": "pc"}, "KCHTMPL0030E"),  # Secure Boot without SMM
        ({**ok, "firmware": "bios"}, "KCHTMPL0030E"),
        ({**defaults("fedora", "39"), "cdrom_bus": "ide"}, "KCHTMPL0031E"),
        ({**defaults("centos", "5.5"), "machine": "q35", "cdrom_bus": "sata"},
         "KCHTMPL0031E"),  # its disk is IDE
        ({**defaults("fedora", "39"), "cpu_topology": {"sockets": 2, "cores": 2,
                                                        "threads": 1}}, "KCHTMPL0032E"),
    ]:
        with pytest.raises(InvalidOperation) as e:
            _check_machine(bad)
        assert e.value.errcode == code, bad


# -- what the host can give ---------------------------------------------------------------------

class _FakeConn:
    """A connection that answers getCapabilities and getDomainCapabilities."""

    def __init__(self, domcaps: str | None) -> None:
        self.domcaps = domcaps
        self.asked: list[tuple[Any, ...]] = []

    def getCapabilities(self) -> str:
        return ("<capabilities><host><cpu><arch>x86_64</arch></cpu></host><guest>"
                "<os_type>hvm</os_type><arch name='x86_64'><domain type='qemu'/></arch>"
                "</guest></capabilities>")

    def getDomainCapabilities(self, emulator: Any, arch: str, machine: str, virt: str,
                              flags: int) -> str:
        self.asked.append((arch, machine, virt))
        if self.domcaps is None:
            raise libvirt.libvirtError("not supported")
        return self.domcaps


_DOMCAPS = """<domainCapabilities><os supported='yes'>
  <enum name='firmware'><value>efi</value></enum>
  <loader supported='yes'><value>/usr/share/OVMF/OVMF_CODE_4M.ms.fd</value>
    <enum name='secure'><value>yes</value><value>no</value></enum></loader></os>
  <devices><tpm supported='yes'><enum name='model'><value>tpm-crb</value></enum>
    <enum name='backendModel'><value>passthrough</value><value>emulator</value></enum>
    <enum name='backendVersion'><value>2.0</value></enum></tpm></devices>
</domainCapabilities>"""


def test_domain_capabilities_say_uefi_secure_boot_and_tpm():
    conn = _FakeConn(_DOMCAPS)
    assert guest_firmware(conn) == {"uefi": True, "secure_boot": True, "tpm": True,
                                    "uefi_loaders": ["/usr/share/OVMF/OVMF_CODE_4M.ms.fd"]}
    assert conn.asked == [("x86_64", "q35", "qemu")]
    # no OVMF, no swtpm: libvirt offers neither
    bare = _DOMCAPS.replace("<value>efi</value>", "").replace(
        "<value>emulator</value>", "").replace(
        "<loader supported='yes'><value>/usr/share/OVMF/OVMF_CODE_4M.ms.fd</value>",
        "<loader supported='yes'>").replace("<value>yes</value>", "")
    assert guest_firmware(_FakeConn(bare)) == {"uefi": False, "secure_boot": False,
                                               "tpm": False, "uefi_loaders": []}
    # the test driver has no domain capabilities
    assert guest_firmware(libvirt.open("test:///default"))["uefi"] is False


def test_a_template_asking_what_the_host_cannot_give_is_refused():
    win11 = defaults("windows", "11")
    check_guest_needs("Template w", win11, {"uefi": True, "secure_boot": True, "tpm": True})
    for caps, code, words in [
        ({"uefi": False, "secure_boot": False, "tpm": True}, "KCHVM0050E", "ovmf"),
        ({"uefi": True, "secure_boot": False, "tpm": True}, "KCHVM0051E", "Secure Boot"),
        ({"uefi": True, "secure_boot": True, "tpm": False}, "KCHVM0052E", "swtpm"),
    ]:
        with pytest.raises(InvalidOperation) as e:
            check_guest_needs("Template w", win11, caps)
        assert e.value.errcode == code and words in e.value.reason, e.value.reason
    check_guest_needs("Template f", defaults("fedora", "39"), {})  # BIOS: asks nothing
    # a VM's changes: Secure Boot alone means UEFI's
    with pytest.raises(InvalidOperation) as e:
        check_guest_needs("Virtual machine v", {"secure_boot": True}, {"uefi": True})
    assert e.value.errcode == "KCHVM0051E" and "Virtual machine v" in e.value.reason
    check_guest_needs("Virtual machine v", {"secure_boot": False, "tpm": False}, {})


# -- VM settings in a domain's definition -------------------------------------------------------

_VM = """<domain type='qemu'><name>vm</name><memory unit='KiB'>1048576</memory>
  <vcpu placement='static' current='2'>4</vcpu>
  <os><type arch='x86_64' machine='pc-q35-7.2'>hvm</type><boot dev='cdrom'/><boot dev='hd'/>
  </os><features><acpi/></features>
  <devices>
    <disk type='file' device='disk'><source file='/p/vm.qcow2'/><target dev='vda' bus='virtio'/>
      <boot order='1'/></disk>
    <interface type='network'><mac address='52:54:00:00:00:01'/><source network='default'/>
      <model type='virtio'/><address type='pci' domain='0x0000' bus='0x01' slot='0x00'
      function='0x0'/></interface>
    <interface type='network'><mac address='52:54:00:00:00:02'/><source network='other'/>
      <model type='virtio'/></interface>
  </devices></domain>"""


def _settings(root: ET.Element) -> dict[str, Any]:
    class Dom:
        @staticmethod
        def autostart() -> int:
            return 0
    return read_settings(Dom(), root)


def _edited(changes: dict[str, Any], xml: str = _VM) -> ET.Element:
    root = ET.fromstring(xml)
    _edit_definition(root, changes)
    _edit_settings(root, changes, "vm")
    return root


def test_boot_order_menu_topology_and_nic_models():
    root = _edited({"boot": ["network", "hd"], "bootmenu": True,
                    "cpu_topology": {"sockets": 1, "cores": 2, "threads": 2},
                    "nic_model": {"52:54:00:00:00:01": "rtl8139"}})
    s = _settings(root)
    assert s["boot"] == ["network", "hd"] and s["bootmenu"] is True
    assert root.find("devices/disk/boot") is None  # per-device orders would conflict
    assert s["cpu_topology"] == {"sockets": 1, "cores": 2, "threads": 2}
    assert [(i["mac"], i["model"]) for i in s["interfaces"]] == [
        ("52:54:00:00:00:01", "rtl8139"), ("52:54:00:00:00:02", "virtio")]
    # another model, another slot: libvirt gives it one
    assert root.find("devices/interface/address") is None
    every = _settings(_edited({"nic_model": "e1000e"}))
    assert {i["model"] for i in every["interfaces"]} == {"e1000e"}
    # null: libvirt's topology again
    back = _edited({"cpu_topology": None}, ET.tostring(root, encoding="unicode"))
    assert back.find("cpu") is None


def test_a_topology_must_make_the_maximum_vcpus():
    with pytest.raises(InvalidOperation) as e:
        _edited({"cpu_topology": {"sockets": 1, "cores": 2, "threads": 1}})
    assert e.value.errcode == "KCHVM0053E" and "4" in e.value.reason
    # raising the maximum in the same request: the topology follows it
    root = _edited({"cpus": 2, "maxcpus": 8,
                    "cpu_topology": {"sockets": 2, "cores": 2, "threads": 2}})
    assert _settings(root)["maxcpus"] == 8
    # a topology kept while the maximum changes alone: refused, with the numbers
    with pytest.raises(InvalidOperation) as e:
        _edited({"cpus": 2, "maxcpus": 6}, ET.tostring(root, encoding="unicode"))
    assert e.value.errcode == "KCHVM0053E"
    with pytest.raises(NotFound):
        _edited({"nic_model": {"52:54:00:00:00:09": "e1000e"}})


def test_firmware_and_tpm_of_a_shut_off_vm():
    root = _edited({"firmware": "uefi", "secure_boot": True, "tpm": True})
    s = _settings(root)
    assert (s["firmware"], s["secure_boot"], s["tpm"]) == ("uefi", True, True)
    assert root.find("features/smm").get("state") == "on"
    assert root.find("os/loader").get("secure") == "yes"
    # back to BIOS: loader, NVRAM and firmware features go
    bios = _edited({"firmware": "bios", "tpm": False}, ET.tostring(root, encoding="unicode"))
    s = _settings(bios)
    assert (s["firmware"], s["secure_boot"], s["tpm"]) == ("bios", False, False)
    assert bios.find("os").get("firmware") is None and bios.find("os/loader") is None
    # Secure Boot on i440FX, and a change of chipset family: refused
    pc = _VM.replace("pc-q35-7.2", "pc-i440fx-7.2")
    with pytest.raises(InvalidOperation) as e:
        _edited({"firmware": "uefi", "secure_boot": True}, pc)
    assert e.value.errcode == "KCHVM0054E"
    with pytest.raises(InvalidOperation) as e:
        _edited({"machine": "q35"}, pc)
    assert e.value.errcode == "KCHVM0055E"
    assert _settings(_edited({"machine": "q35"}))["machine"] == "q35"  # same family


@pytest.mark.parametrize(("version", "expected"), [
    ("11", "http://microsoft.com/win/11"), ("8.1", "http://microsoft.com/win/8.1"),
    ("2012r2", "http://microsoft.com/win/2k12r2"), ("2022", "http://microsoft.com/win/2k22"),
    ("xp", None)])
def test_windows_ids_as_osinfo_db_names_them_without_it(version, expected):
    assert osinfo.osinfo_id("windows", version, db=NO_DB) == expected
