"""Every kind of job, declared once: what it does, what it takes, and where it runs.

* ``HOST``: on a worker that serves the task's host (``[workers] hosts``), because it
  works on that host's files or processes: its job goes to that host's queue,
  ``{p}jobs:host:<host>``.  While no worker serves the host the task says so, and it fails
  after ``[workers] host_wait_seconds`` with that reason.
* ``ANYWHERE``: on any worker: the shared queue, ``{p}jobs``, which every worker reads.
* ``DAEMON``: on the daemon's own runner (``kimchid/adapters/jobrunner.py``), queue
  ``{p}jobs:daemon``: the VM jobs, which are libvirt calls through the connections the
  daemon holds to every host (libvirt carries each to the host's libvirtd, which does the
  work there; a migration holds two hosts' at once).  Their file work beyond libvirt is
  queued to the host's workers as jobs of their own (``vm.clone.disks``,
  ``disks.remove``).  README.md, "Where jobs run", says why they stay there.

The daemon submits through :meth:`kimchi.bus.Keys.queue`, the workers register the
functions of these kinds (:func:`kimchi.bus.jobs.job` refuses a kind not declared here).
"""

from __future__ import annotations

from dataclasses import dataclass

HOST = "host"
ANYWHERE = "anywhere"
DAEMON = "daemon"

#: The name of the host of ``[libvirt] uri`` (kimchid's own), and the host a worker serves
#: unless ``[workers] hosts`` says otherwise.
LOCAL_HOST = "local"


@dataclass(frozen=True)
class Kind:
    name: str
    where: str  # HOST | ANYWHERE | DAEMON
    summary: str
    params: tuple[str, ...] = ()


KINDS: dict[str, Kind] = {k.name: k for k in (
    Kind("iso.scan", HOST, "find the ISO images under a folder of the host", ("path",)),
    Kind("debugreport.collect", HOST, "collect the host's logs and configuration (sosreport)",
         ("name", "dir", "plugins", "upload")),
    Kind("debugreport.fetch", DAEMON, "a debug report of another host than the daemon's: "
         "its debugreport.collect job (upload), followed, and the archive it sent over the "
         "bus kept with the daemon's reports", ("name", "host", "plugins")),
    Kind("vm.clone.disks", HOST, "copy a VM's disk files with qemu-img convert",
         ("copies", "parent", "rate_limit")),
    Kind("disks.remove", HOST, "remove the copies a failed or cancelled clone left "
         "(each path and its .part)", ("paths", "parent")),
    Kind("volume.download", HOST, "download an image from an http(s) URL into a folder "
         "pool (<name>.part, resumed with Range by the next attempt, then renamed)",
         ("name", "pool", "dir", "url", "checksum", "allow")),
    Kind("volume.wipe", HOST, "overwrite a volume's file with zeros", ("name", "pool", "path",
                                                                       "format", "capacity")),
    Kind("volume.clone", HOST, "copy a volume with qemu-img convert (<name>.part, renamed "
         "when complete)", ("name", "pool", "src", "dst", "format", "rate_limit")),
    Kind("vm.template.disks", HOST, "copy a shut-off VM's disks to a template's read-only "
         "bases with qemu-img convert, and make the qcow2 leaves over them",
         ("disks", "parent")),
    Kind("vm.create", DAEMON, "create VMs' disk volumes (blank, leaves over a template's "
         "base, or copies of it: vm.clone.disks) and cloud-init seeds, and define them"),
    Kind("template.image", DAEMON, "a template of a disk image at an http(s) URL: its "
         "volume.download into a pool, followed, then the template made of that volume"),
    Kind("vm.template", DAEMON, "make a template of a shut-off VM: its disks become the "
         "template's bases (vm.template.disks), the VM switches to leaves over them"),
    Kind("vm.clone", DAEMON, "clone a shut-off VM: its disks (vm.clone.disks), then the "
         "domain with a new name, UUID and MAC addresses"),
    Kind("vm.snapshot", DAEMON, "take a VM's snapshot"),
    Kind("vm.migrate", DAEMON, "move a VM to another host (libvirt's peer-to-peer "
         "migration between two connections the daemon holds)",
         ("name", "uuid", "from", "to", "live", "copy", "bandwidth")),
    Kind("diag.noop", ANYWHERE, "do nothing (queue benchmarks and checks)"),
    Kind("diag.sleep", ANYWHERE, "sleep, reporting progress (tests)", ("seconds", "steps")),
    Kind("diag.progress", ANYWHERE, "report progress steps (tests)", ("count", "every")),
    Kind("diag.fail", ANYWHERE, "fail with a message (tests)", ("error",)),
)}


def kind(name: str) -> Kind:
    try:
        return KINDS[name]
    except KeyError:
        raise ValueError(f"job kind {name} is not declared in kimchi/bus/kinds.py") from None
