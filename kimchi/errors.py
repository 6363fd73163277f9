"""One error hierarchy with stable codes, and the catalogue of every message.

Codes are ``KCH<AREA><4 digits><E|W>`` and never change meaning; the messages
are the translatable part.  The HTTP layer turns a :class:`KimchiError` into
``{"code", "reason", "errcode"}`` in exactly one place (``kimchid.api.app``).
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

#: errcode -> message template (str.format fields).  Ready for translation:
#: a locale catalogue maps the same codes to other templates.
CATALOGUE: dict[str, str] = {
    # API conventions
    "KCHAPI0001E": "Unknown resource {path}",
    "KCHAPI0002E": "Method {method} is not allowed on {path}",
    "KCHAPI0003E": "Cannot answer with any of the accepted types: {accept}",
    "KCHAPI0004E": "Request body must be application/json, not {content_type}",
    "KCHAPI0005E": "Unable to parse JSON request: {error}",
    "KCHAPI0006E": "Invalid request body: {error}",
    "KCHAPI0007E": "Unknown field(s) in request: {fields}",
    "KCHAPI0008E": "Invalid query parameter {param}: {error}",
    "KCHAPI0009E": "Unexpected error: {error}",
    "KCHAPI0010E": "Service is not ready: {reason}",
    "KCHAPI0011E": "Request body is too large: {method} {path} takes at most {limit} bytes",
    "KCHAPI0012E": "Request body is nested too deeply: at most {depth} levels of arrays and "
                   "objects",
    "KCHAPI0013E": "Request must not contain NUL characters: {where}",
    "KCHAPI0014E": "Request body must be application/octet-stream, not {content_type}",
    # Tasks
    "KCHTASK0001E": "Task {id} does not exist",
    "KCHTASK0002E": "Task {id} has already ended ({status})",
    "KCHTASK0003E": "Task ended because its worker was lost {attempts} times",
    "KCHTASK0004E": "Job kind {kind} is unknown to this worker",
    "KCHTASK0005E": "Job failed: {error}",
    "KCHTASK0006E": "Task {id} timed out after {seconds} seconds",
    "KCHTASK0008E": "Waiting for a worker on host {host}: none serves it now (a worker serves "
                    "the hosts of its [workers] hosts)",
    "KCHTASK0009E": "No worker serves host {host}: none took the job in {seconds} s (start one "
                    "there with [workers] hosts = [\"{host}\"])",
    # Virtual machines
    "KCHVM0001E": "Virtual machine {name} already exists",
    "KCHVM0002E": "Virtual machine {name} does not exist",
    "KCHVM0010E": "Cannot {action} virtual machine {name}: it is {state}",
    "KCHVM0011E": "libvirt refused to {action} virtual machine {name}: {error}",
    "KCHVM0012E": "Virtual machine {name} is not running: no screen to show",
    "KCHVM0003E": "Template {template} does not exist",
    "KCHVM0004E": "Template {template} cannot make a virtual machine: {reason}",
    "KCHVM0005E": "Cannot boot from the remote ISO {path}: {reason}",
    "KCHVM0006E": "Storage pool {pool} cannot hold the disks: {reason}",
    "KCHVM0007E": "Volume {volume} already exists in storage pool {pool}",
    "KCHVM0008E": "Creating virtual machine {name} failed, nothing was left behind: {error}",
    "KCHVM0009E": "Virtual machine {name} is being created already",
    "KCHVM0013E": "Virtual machine {name} can be renamed only when shut off (it is {state})",
    "KCHVM0014E": "Change the {field} of virtual machine {name} when it is shut off "
                  "(it is {state})",
    "KCHVM0015E": "{field} {value} is more than the maximum, {maximum}",
    "KCHVM0016E": "Virtual machine {name} must be shut off to be cloned (it is {state})",
    "KCHVM0017E": "Cannot copy disk {path}: {reason}",
    "KCHVM0018E": "Cloning virtual machine {name} failed, nothing was left behind: {error}",
    "KCHVM0019E": "Virtual machine {name} is being copied (cloned, or made a template): "
                  "wait until its copy is made",
    "KCHVM0020E": "Virtual machine {name} is {state}: its console shows only while it runs",
    "KCHVM0021E": "Virtual machine {name} has no VNC screen to show",
    "KCHVM0022E": "The console of {name} is a WebSocket: connect with Upgrade: websocket",
    "KCHVM0023E": "Creating virtual machine {name} failed: {error}; it left behind {left}, "
                  "which kimchi removes once libvirt answers again",
    "KCHVM0030E": "Cannot move virtual machine {name} to host {host}: {reason}",
    "KCHVM0041E": "The base image of template {template} is on host {host}: its virtual "
                  "machines are made there",
    "KCHVM0042E": "disk_mode is for templates made from a disk image; template {template} "
                  "installs from an ISO",
    "KCHVM0043E": "Virtual machine {name} cannot become a template: {reason}",
    "KCHVM0044E": "Making template {template} from virtual machine {name} failed: {error}",
    "KCHVM0031E": "Moving virtual machine {name} failed: {error}",
    "KCHVM0032E": "The screen of virtual machine {name} listens on {listen}, which only host "
                  "{host} itself reaches: make its graphics listen on an address of that "
                  "host to see it here",
    "KCHVM0033E": "Virtual machine {name} has no serial console (a pty serial port or "
                  "console)",
    # modern guests: firmware, TPM, VM settings
    "KCHVM0050E": "{what} asks for UEFI firmware, which this host cannot give: {remedy}",
    "KCHVM0051E": "{what} asks for Secure Boot, which this host cannot give: {remedy}",
    "KCHVM0052E": "{what} asks for a TPM, which this host cannot give: {remedy}",
    "KCHVM0053E": "CPU topology {sockets} sockets x {cores} cores x {threads} threads makes "
                  "{product} vCPUs: it must make the maximum vCPUs, {maxcpus}",
    "KCHVM0054E": "Secure Boot needs UEFI firmware on a q35 machine: virtual machine {name} "
                  "would have {firmware} on {machine}",
    "KCHVM0055E": "Virtual machine {name} is a {old} machine: as a {new} one its devices "
                  "would be on other buses (make a new VM from a template instead)",
    # A VM's devices
    "KCHVMSTOR0001E": "Virtual machine {name} has no device {dev}",
    "KCHVMSTOR0002E": "Invalid storage request: {reason}",
    "KCHVMSTOR0003E": "A CD-ROM drive of {name} is added or removed only while it is shut off "
                      "(its medium changes any time)",
    "KCHVMSTOR0004E": "libvirt refused the change to {name}: {error}",
    "KCHVMSTOR0005E": "{path} is already a disk of {name}",
    "KCHVMSTOR0006E": "Cannot meet the storage request: {reason}",
    "KCHVMIFACE0001E": "Virtual machine {name} has no interface {mac}",
    # Templates
    "KCHTMPL0001E": "Template {name} already exists",
    "KCHTMPL0020E": "{path} cannot be a template's base image: {reason}",
    "KCHTMPL0021E": "Template {name} is made from a disk image: its source stays (make "
                    "another template for another image)",
    "KCHTMPL0023E": "Cannot make a template of {url}: {error}",
    "KCHTMPL0022E": "Template {name} is the base of the virtual machines {vms}: delete them "
                    "first",
    "KCHTMPL0002E": "Template {name} does not exist",
    "KCHTMPL0003E": "{path} is not a readable ISO-9660 image: {error}",
    "KCHTMPL0004E": "Source {path} must be an absolute path (an ISO may be a URL too)",
    "KCHTMPL0005E": "Remote ISO source {path} is not a usable URL: {reason}",
    "KCHTMPL0006E": "Memory {current} MiB is more than the maximum, {maxmemory} MiB",
    "KCHTMPL0007E": "{vcpus} vCPUs is more than the maximum, {maxvcpus}",
    "KCHTMPL0008E": "Template {name} is broken on disk: {reason}",
    "KCHTMPL0009E": "Invalid template name {name}: {reason}",
    "KCHTMPL0010E": "Give source_media or cdrom, not both",
    "KCHTMPL0011E": "Cannot read the remote ISO {path}: {error}",
    "KCHTMPL0030E": "Secure Boot needs UEFI firmware on a q35 machine (the template has "
                    "{firmware} on {machine})",
    "KCHTMPL0031E": "The q35 machine has no IDE bus: set {field} to sata (or scsi)",
    "KCHTMPL0032E": "CPU topology {sockets} sockets x {cores} cores x {threads} threads "
                    "makes {product} vCPUs: it must make maxvcpus, {maxvcpus}",
    "KCHTMPL0013E": "A template needs its source: source_media (a disk with a path, or "
                    "netboot) or cdrom",
    "KCHTMPL0012E": "The remote ISO {path} leads to {target}, a {kind} address: kimchid "
                    "connects there only when the configuration's [outbound] allow lists it",
    # Events
    "KCHEVT0001E": "Invalid event id {since}",
    "KCHEVT0002E": "Invalid event type filter {types}",
    # WebSocket handshakes (GET /events, a VM's console and serial console)
    "KCHWS0001E": "Not a complete WebSocket handshake: {problem}",
    # Audit log
    "KCHAUDIT0001E": "Invalid time {value} for {param}: no such date or time",
    # ISOs
    "KCHISO0001E": "Scan path {path} must be an absolute path",
    "KCHISO0002E": "Scan path {path} does not exist or is not a directory",
    "KCHISO0003E": "Scan path {path} is not readable",
    "KCHISO0004E": "Scanning {path} is not allowed: {reason}",
    # Storage pools and volumes
    "KCHPOOL0001E": "Storage pool {name} already exists",
    "KCHPOOL0002E": "Storage pool {name} does not exist",
    "KCHPOOL0004E": "Invalid storage pool {name}: {reason}",
    "KCHPOOL0005E": "Storage pool {name} is active: deactivate it before deleting it",
    "KCHPOOL0006E": "Storage pool {name} is used by the templates {templates}",
    "KCHPOOL0007E": "Storage pool {name} holds disks of the running VMs {vms}",
    "KCHPOOL0008E": "Storage pool {name} is already {state}",
    "KCHPOOL0009E": "libvirt refused storage pool {name}: {error}",
    "KCHPOOL0010E": "Storage pool {name} cannot use {path}: {reason}",
    "KCHVOL0001E": "Storage volume {name} already exists in pool {pool}",
    "KCHVOL0002E": "Storage volume {name} does not exist in pool {pool}",
    "KCHVOL0003E": "Invalid capacity {capacity}: {reason}",
    "KCHVOL0004E": "Storage pool {pool} is not active: activate it to see or change its volumes",
    "KCHVOL0005E": "Storage volume {name} is a disk of the VMs {vms}",
    "KCHVOL0006E": "libvirt refused storage volume {name}: {error}",
    "KCHVOL0007E": "Storage volume {name} cannot shrink below {capacity} bytes",
    "KCHVOL0008E": "Storage pool {pool} is a {type} pool: volumes are downloaded, uploaded, "
                   "wiped and cloned only in a folder (a dir or netfs pool)",
    "KCHVOL0009E": "Cannot download {url}: {reason}",
    "KCHVOL0010E": "Download of {name} from {url} failed: {reason}",
    "KCHVOL0011E": "Storage volume {name} needs {size} bytes; pool {pool} has {available} "
                   "bytes free",
    "KCHVOL0012E": "Download of {name} does not match its checksum: expected {expected}, got "
                   "{actual}",
    "KCHVOL0013E": "Storage volume {name} has received {offset} of {total} bytes: send the "
                   "bytes from {offset} on",
    "KCHVOL0014E": "Storage volume {name} of pool {pool} is not being uploaded",
    "KCHVOL0015E": "Invalid Content-Range {value}: {reason}",
    "KCHVOL0019E": "Content-Range {value} does not fit: {reason}",
    "KCHVOL0016E": "The upload of {name} is not a usable {format} image: {reason}",
    "KCHVOL0017E": "Cannot {action} storage volume {name}: {reason}",
    "KCHVOL0018E": "Storage volume {name} is being made in pool {pool}",
    # Networks
    "KCHNET0001E": "Network {name} already exists",
    "KCHNET0002E": "Network {name} does not exist",
    "KCHNET0003E": "Network {name} is used by {users}",
    "KCHNET0004E": "Invalid network {name}: {reason}",
    "KCHNET0005E": "Network {name} is active: deactivate it before deleting it",
    "KCHNET0006E": "Network {name} is already {state}",
    "KCHNET0007E": "Network {name} connects the running VMs {vms}",
    "KCHNET0008E": "libvirt refused network {name}: {error}",
    "KCHNET0009E": "Subnet {subnet} cannot be used: {reason}",
    "KCHNET0010E": "Network {name} cannot use interface {interface}: {reason}",
    "KCHNET0011E": "Subnet {subnet} is taken: {reason}",
    # Snapshots
    "KCHSNAP0001E": "Snapshot {name} of {vm} already exists",
    "KCHSNAP0002E": "Snapshot {name} of {vm} does not exist",
    "KCHSNAP0003E": "Virtual machine {vm} has no current snapshot",
    "KCHSNAP0004E": "Invalid snapshot name {name}: letters, digits, '.', '-', '_' (not current)",
    "KCHSNAP0005E": "Snapshot {name} of {vm} could not be taken: {error}",
    "KCHSNAP0006E": "libvirt refused snapshot {name} of {vm}: {error}",
    # Debug reports
    "KCHDR0001E": "Debug report {name} does not exist",
    "KCHDR0002E": "Invalid debug report name {name}: use letters, digits, - and _ (at most 64)",
    "KCHDR0003E": "Debug report {name} already exists",
    "KCHDR0004E": "Debug report {name} is being made",
    "KCHDR0005E": "No report tool on this host: install sos (apt-get install sosreport)",
    "KCHDR0006E": "Making debug report {name} failed: {error}",
    # Hosts
    "KCHHOST0001E": "Host {name} does not exist",
    "KCHHOST0002E": "Host {name} already exists",
    "KCHHOST0003E": "Host {name} is already managed under the name {other}",
    "KCHHOST0004E": "Cannot reach host {name} at {uri}: {error}",
    "KCHHOST0005E": "The local host cannot be removed: it is the one of [libvirt] uri",
    "KCHHOST0006E": "Host {name} is not reachable: {error}",
    "KCHHOST0007E": "Several hosts have a {kind} named {name}: use one of {addresses}",
    "KCHHOST0008E": "Host {name} is not one kimchi manages (see GET /hosts)",
    # Service
    "KCHSVC0001E": "Redis is not reachable: {error}",
    "KCHSVC0002E": "libvirt is not reachable: {error}",
    # Configuration
    "KCHCONF0001E": "Configuration key {key}: {error}",
    # Authentication and access
    "KCHAUTH0001E": "Invalid user name or password",
    "KCHAUTH0002E": "Authentication required",
    "KCHAUTH0003E": "Your session has expired or was ended: log in again",
    "KCHAUTH0004E": "Invalid, expired or revoked API token",
    "KCHAUTH0005E": "Only administrators may {method} {path}",
    "KCHAUTH0006E": "Virtual machine {name} is not assigned to {username}",
    "KCHAUTH0007E": "Cross-site request refused: origin {origin} is not allowed",
    "KCHAUTH0008E": "Too many failed logins: try again in {seconds} seconds",
    "KCHAUTH0009E": "Too many logins are being checked: try again in a moment",
    "KCHAUTH0010E": "API token {id} does not exist",
    "KCHAUTH0011E": "Invalid API token request: {reason}",
    "KCHAUTH0012E": "User {username} does not exist on this host",
    "KCHAUTH0013E": "Session {id} does not exist",
    "KCHAUTH0014E": "Cannot use the TLS certificate {path}: {error}",
    "KCHAUTH0015E": "Task {id} is not about anything of yours",
}


#: The codes of :class:`InvalidOperation`: answers (400) to a request that its schema admits,
#: refused for what a schema cannot state: the state of the host or of an object (exists,
#: does not exist, is running, is in use, a file that is not there), or a rule between
#: fields or outside the request (a value over another field's maximum, where a URL leads).
#: Every other 400 is a request that its schema, in ``GET /openapi.json``, refuses too; the
#: spec lists these as ``x-refusals``.
REFUSALS: frozenset[str] = frozenset({
    "KCHTASK0002E",
    "KCHVM0001E", "KCHVM0003E", "KCHVM0004E", "KCHVM0005E", "KCHVM0006E", "KCHVM0007E",
    "KCHVM0009E", "KCHVM0010E", "KCHVM0013E", "KCHVM0014E", "KCHVM0015E", "KCHVM0016E",
    "KCHVM0017E", "KCHVM0019E", "KCHVM0020E", "KCHVM0021E", "KCHVM0022E", "KCHVM0030E",
    "KCHVM0032E", "KCHVM0033E", "KCHVM0041E", "KCHVM0042E", "KCHVM0043E",
    "KCHVM0050E", "KCHVM0051E", "KCHVM0052E", "KCHVM0053E", "KCHVM0054E", "KCHVM0055E",
    "KCHTMPL0030E", "KCHTMPL0031E", "KCHTMPL0032E",
    "KCHTMPL0020E", "KCHTMPL0021E", "KCHTMPL0022E",
    "KCHVMSTOR0003E", "KCHVMSTOR0004E", "KCHVMSTOR0005E", "KCHVMSTOR0006E",
    "KCHTMPL0001E", "KCHTMPL0003E", "KCHTMPL0005E", "KCHTMPL0006E", "KCHTMPL0007E",
    "KCHTMPL0008E", "KCHTMPL0011E", "KCHTMPL0012E",
    "KCHISO0002E", "KCHISO0003E", "KCHISO0004E",
    "KCHPOOL0001E", "KCHPOOL0005E", "KCHPOOL0006E", "KCHPOOL0007E", "KCHPOOL0008E",
    "KCHPOOL0009E", "KCHPOOL0010E",
    "KCHVOL0001E", "KCHVOL0003E", "KCHVOL0004E", "KCHVOL0005E", "KCHVOL0006E", "KCHVOL0007E",
    "KCHVOL0008E", "KCHVOL0009E", "KCHVOL0011E", "KCHVOL0016E", "KCHVOL0018E", "KCHVOL0019E",
    "KCHNET0001E", "KCHNET0003E", "KCHNET0005E", "KCHNET0006E", "KCHNET0007E", "KCHNET0008E",
    "KCHNET0010E", "KCHNET0011E",
    "KCHSNAP0001E", "KCHSNAP0006E",
    "KCHDR0003E", "KCHDR0004E", "KCHDR0005E",
    "KCHAUTH0012E",
    "KCHHOST0002E", "KCHHOST0003E", "KCHHOST0004E", "KCHHOST0005E", "KCHHOST0008E",
    "KCHAUDIT0001E",
    "KCHWS0001E",
})


def message(errcode: str, **params: Any) -> str:
    """The human message for ``errcode``, prefixed by the code as Kimchi did."""
    template = CATALOGUE[errcode]
    try:
        text = template.format(**params)
    except (KeyError, IndexError):
        text = template
    return f"{errcode}: {text}"


class KimchiError(Exception):
    """An error the user can act on; ``status`` is its HTTP status.

    ``headers`` are HTTP headers the answer must carry (``Retry-After`` of a 429).
    """

    status: HTTPStatus = HTTPStatus.BAD_REQUEST

    def __init__(self, errcode: str, **params: Any) -> None:
        if errcode not in CATALOGUE:
            raise ValueError(f"errcode {errcode} is not in the catalogue")
        self.errcode = errcode
        self.params = params
        self.headers: dict[str, str] = {}
        super().__init__(message(errcode, **params))

    @property
    def reason(self) -> str:
        return str(self)

    def to_json(self) -> dict[str, str]:
        return {
            "code": f"{self.status.value} {self.status.phrase}",
            "reason": self.reason,
            "errcode": self.errcode,
        }


class InvalidRequest(KimchiError):
    """The request is wrong whatever the state: its schema refuses it too."""

    status = HTTPStatus.BAD_REQUEST

    def __init__(self, errcode: str, **params: Any) -> None:
        if errcode in REFUSALS:
            raise ValueError(f"{errcode} is a refusal: raise InvalidOperation")
        super().__init__(errcode, **params)


class InvalidOperation(KimchiError):
    """The request is valid against its schema, but refused: one of :data:`REFUSALS`."""

    status = HTTPStatus.BAD_REQUEST

    def __init__(self, errcode: str, **params: Any) -> None:
        if errcode not in REFUSALS:
            raise ValueError(f"{errcode} is not a refusal: raise InvalidRequest")
        super().__init__(errcode, **params)


class NotFound(KimchiError):
    status = HTTPStatus.NOT_FOUND


class Conflict(KimchiError):
    status = HTTPStatus.CONFLICT


class MethodNotAllowed(KimchiError):
    status = HTTPStatus.METHOD_NOT_ALLOWED


class NotAcceptable(KimchiError):
    status = HTTPStatus.NOT_ACCEPTABLE


class UnsupportedMediaType(KimchiError):
    status = HTTPStatus.UNSUPPORTED_MEDIA_TYPE


class PayloadTooLarge(KimchiError):
    """The request body is larger than its route takes (413)."""

    status = HTTPStatus.REQUEST_ENTITY_TOO_LARGE


class ServiceUnavailable(KimchiError):
    status = HTTPStatus.SERVICE_UNAVAILABLE


class OperationFailed(KimchiError):
    status = HTTPStatus.INTERNAL_SERVER_ERROR


class Unauthorized(KimchiError):
    """Not logged in, or the credentials are wrong (401)."""

    status = HTTPStatus.UNAUTHORIZED


class Forbidden(KimchiError):
    """Logged in, but not allowed (403)."""

    status = HTTPStatus.FORBIDDEN


class TooManyRequests(KimchiError):
    """Slow down: ``retry_after`` seconds, also sent as ``Retry-After`` (429)."""

    status = HTTPStatus.TOO_MANY_REQUESTS

    def __init__(self, errcode: str, retry_after: int, **params: Any) -> None:
        super().__init__(errcode, seconds=retry_after, **params)
        self.retry_after = retry_after
        self.headers["Retry-After"] = str(retry_after)


class ConfigError(Exception):
    """Every problem found in the configuration, each naming its key."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__(
            "\n".join(message("KCHCONF0001E", key=key, error=err) for key, err in problems)
        )
