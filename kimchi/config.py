"""The configuration: one typed object, read once, every error reported with its key.

Sources, later ones winning: built-in defaults, the TOML file
(``/etc/kimchi/kimchi.toml`` or ``--config``), then ``KIMCHI_<SECTION>_<KEY>``
environment variables.  Shared by ``kimchid`` and ``kimchi-worker``.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
import re
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kimchi.errors import ConfigError
from kimchi.outbound import OutboundPolicy

DEFAULT_CONFIG_FILE = "/etc/kimchi/kimchi.toml"
# Environment variables of the KIMCHI_ family that are not configuration keys:
# fault injection for the tests and the tests' own settings.
_NOT_CONFIG = ("KIMCHI_FAULT_", "KIMCHI_TEST_", "KIMCHI_BENCH_")


@dataclass(frozen=True)
class ServerConfig:
    host: str = "0.0.0.0"
    http_port: int = 8000
    https_port: int = 8001
    tls: bool = True
    cert: str = ""
    key: str = ""
    log_format: str = "auto"  # auto (text on a terminal, else JSON) | text | json
    log_level: str = "info"


@dataclass(frozen=True)
class RedisConfig:
    url: str = ""  # empty: start an embedded redis-server in state_dir
    timeout: float = 5.0  # seconds for any one command
    key_prefix: str = "kimchi:"
    # embedded server only: always | everysec.  "always": nothing Redis has answered is lost
    # to a kill -9 of Redis or a crash of the host (everysec may lose up to 2 s of it: Redis
    # answers while a slow fsync holds its write back); about a third fewer jobs/s
    appendfsync: str = "always"


@dataclass(frozen=True)
class LibvirtConfig:
    uri: str = "qemu:///system"
    stats_interval: float = 5.0  # seconds between two samples of the running VMs' figures


@dataclass(frozen=True)
class WorkersConfig:
    embedded: int = 2  # worker processes the daemon starts and supervises
    concurrency: int = 4  # jobs one worker process runs at once (threads)
    lease_seconds: float = 5.0  # a job whose worker stopped heartbeating this long is reclaimed
    max_attempts: int = 3  # runs of one job before it is failed
    progress_interval: float = 0.2  # at most this often a task.progress per task
    job_timeout: float = 3600.0  # wall-clock limit of one attempt
    copy_limit_mib: float = 0.0  # MiB/s a disk copy (clone) may read and write; 0: no limit
    # the hosts (GET /hosts names) whose jobs this machine's workers run: their files and
    # processes are here; "local" is the host of [libvirt] uri
    hosts: tuple[str, ...] = ("local",)
    host_wait_seconds: float = 300.0  # a host's job with no worker for it fails after this


@dataclass(frozen=True)
class EventsConfig:
    max_len: int = 100_000  # events kept for resume (approximate cap of the stream)
    page_size: int = 500  # events per JSON page
    client_buffer: int = 5_000  # events queued for one slow client before it is dropped


@dataclass(frozen=True)
class TasksConfig:
    keep_seconds: int = 7 * 86400  # ended tasks are forgotten after this


@dataclass(frozen=True)
class PathsConfig:
    state_dir: str = "/var/lib/kimchi"
    objects_dir: str = "/etc/kimchi/json"


@dataclass(frozen=True)
class AuthConfig:
    pam_service: str = "kimchi"  # the PAM service (/etc/pam.d/<name>) that checks passwords
    admin_groups: tuple[str, ...] = ("kimchi-admin", "sudo", "wheel")  # members are admins
    pam_threads: int = 4  # PAM checks at once (threads); a failed one holds its thread ~2 s
    pam_queue: int = 64  # logins waiting for a PAM thread; beyond this new ones get a 503
    session_idle_minutes: float = 30.0  # a session unused this long ends
    session_max_hours: float = 12.0  # a session ends this long after its login, used or not
    throttle_free_attempts: int = 5  # failed logins of a user from an address before delays
    throttle_base_delay: float = 1.0  # seconds to wait after the first failure beyond those
    throttle_max_delay: float = 300.0  # the delay doubles with each failure up to this
    throttle_window: float = 900.0  # failures are forgotten after this many quiet seconds
    allowed_origins: tuple[str, ...] = ()  # more origins for cookie requests (reverse proxy)


@dataclass(frozen=True)
class FeaturesConfig:
    iso_streaming: str = "auto"  # auto | on | off
    kvm: str = "auto"  # auto | on | off: off makes new VMs plain QEMU emulation


@dataclass(frozen=True)
class OutboundConfig:
    # Where a URL (a template's remote ISO) may make kimchid connect although the address
    # is not public (loopback, link-local, private, ...): networks, addresses, host names
    allow: tuple[str, ...] = ()


@dataclass(frozen=True)
class MetricsConfig:
    # Client addresses and networks (CIDR) that may read GET /metrics without a login
    # (Prometheus); everyone else needs an admin's credentials (an API token)
    allow: tuple[str, ...] = ()


@dataclass(frozen=True)
class AuditConfig:
    max_len: int = 100_000  # entries the audit log keeps in Redis (approximate cap)


@dataclass(frozen=True)
class HostConfig:
    stats_interval: float = 2.0  # seconds between two samples of the host's figures
    history: int = 150  # samples kept for GET /host/stats/history (5 minutes at 2 s)


@dataclass(frozen=True)
class DebugReportsConfig:
    # sos plugins a report collects (sos report -o); empty: the tool's own default set
    plugins: tuple[str, ...] = ()


@dataclass(frozen=True)
class Config:
    server: ServerConfig = field(default_factory=ServerConfig)
    redis: RedisConfig = field(default_factory=RedisConfig)
    libvirt: LibvirtConfig = field(default_factory=LibvirtConfig)
    workers: WorkersConfig = field(default_factory=WorkersConfig)
    events: EventsConfig = field(default_factory=EventsConfig)
    tasks: TasksConfig = field(default_factory=TasksConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    features: FeaturesConfig = field(default_factory=FeaturesConfig)
    debugreports: DebugReportsConfig = field(default_factory=DebugReportsConfig)
    host: HostConfig = field(default_factory=HostConfig)
    outbound: OutboundConfig = field(default_factory=OutboundConfig)
    audit: AuditConfig = field(default_factory=AuditConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)

    @property
    def state_dir(self) -> Path:
        return Path(self.paths.state_dir)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# Rules beyond the type of a key: (section, key) -> (check, what it must be).
_CHOICES: dict[tuple[str, str], tuple[str, ...]] = {
    ("server", "log_format"): ("auto", "text", "json"),
    ("server", "log_level"): ("debug", "info", "warn", "error"),
    ("redis", "appendfsync"): ("always", "everysec"),
    ("features", "iso_streaming"): ("auto", "on", "off"),
    ("features", "kvm"): ("auto", "on", "off"),
}
_POSITIVE = {
    ("redis", "timeout"),
    ("workers", "concurrency"),
    ("workers", "lease_seconds"),
    ("workers", "max_attempts"),
    ("workers", "job_timeout"),
    ("workers", "host_wait_seconds"),
    ("events", "max_len"),
    ("events", "page_size"),
    ("events", "client_buffer"),
    ("audit", "max_len"),
    ("tasks", "keep_seconds"),
    ("libvirt", "stats_interval"),
    ("host", "stats_interval"),
    ("host", "history"),
    ("auth", "pam_threads"),
    ("auth", "pam_queue"),
    ("auth", "session_idle_minutes"),
    ("auth", "session_max_hours"),
    ("auth", "throttle_base_delay"),
    ("auth", "throttle_max_delay"),
    ("auth", "throttle_window"),
}
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")
_PORTS = {("server", "http_port"), ("server", "https_port")}


def _coerce(value: Any, hint: Any, from_env: bool) -> Any:
    """Convert ``value`` to ``hint`` or raise ValueError saying what was expected."""
    origin = typing.get_origin(hint)
    if hint is bool:
        if isinstance(value, bool):
            return value
        if from_env and isinstance(value, str) and value.lower() in _TRUE + _FALSE:
            return value.lower() in _TRUE
        raise ValueError(f"expected true or false, got {value!r}")
    if hint is int:
        if isinstance(value, bool):
            raise ValueError(f"expected an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if from_env and isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        raise ValueError(f"expected an integer, got {value!r}")
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if from_env and isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise ValueError(f"expected a number, got {value!r}")
    if hint is str:
        if isinstance(value, str):
            return value
        raise ValueError(f"expected a string, got {value!r}")
    if origin is tuple:
        if from_env and isinstance(value, str):
            try:
                value = json.loads(value) if value.strip().startswith("[") else [
                    v.strip() for v in value.split(",") if v.strip()
                ]
            except json.JSONDecodeError as e:
                raise ValueError(f"expected a list, got {value!r}") from e
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return tuple(value)
        raise ValueError(f"expected a list of strings, got {value!r}")
    raise ValueError(f"unsupported type {hint}")  # pragma: no cover


def _section_types() -> dict[str, type]:
    hints = typing.get_type_hints(Config)
    return {name: hints[name] for name in hints}


def load(path: str | os.PathLike[str] | None = None,
         environ: Mapping[str, str] | None = None) -> Config:
    """Read the configuration; raise :class:`ConfigError` listing every bad key.

    ``path`` None means the default file, which may be absent; a file named
    explicitly must exist.
    """
    environ = os.environ if environ is None else environ
    problems: list[tuple[str, str]] = []
    raw: dict[str, Any] = {}
    explicit = path is not None or "KIMCHI_CONFIG" in environ
    file_path = Path(path or environ.get("KIMCHI_CONFIG") or DEFAULT_CONFIG_FILE)
    if file_path.exists():
        try:
            raw = tomllib.loads(file_path.read_text())
        except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise ConfigError([(str(file_path), f"cannot read: {e}")]) from e
    elif explicit:
        raise ConfigError([(str(file_path), "file does not exist")])

    sections = _section_types()
    values: dict[str, dict[str, Any]] = {name: {} for name in sections}
    for name, section in raw.items():
        if name not in sections:
            problems.append((name, "unknown section"))
            continue
        if not isinstance(section, dict):
            problems.append((name, "must be a table"))
            continue
        values[name].update({k: (v, False) for k, v in section.items()})
    for var, value in environ.items():
        if not var.startswith("KIMCHI_") or var == "KIMCHI_CONFIG" or var.startswith(
                _NOT_CONFIG):
            continue
        rest = var[len("KIMCHI_"):].lower()
        section_name = next((s for s in sections if rest.startswith(s + "_")), None)
        if section_name is None:
            problems.append((var, "unknown section in environment variable"))
            continue
        values[section_name][rest[len(section_name) + 1:]] = (value, True)

    built: dict[str, Any] = {}
    for name, cls in sections.items():
        hints = typing.get_type_hints(cls)
        kwargs: dict[str, Any] = {}
        for key, (value, from_env) in values[name].items():
            dotted = f"{name}.{key}"
            if key not in hints:
                problems.append((dotted, "unknown key"))
                continue
            try:
                v = _coerce(value, hints[key], from_env)
            except ValueError as e:
                problems.append((dotted, str(e)))
                continue
            choices = _CHOICES.get((name, key))
            if choices and v not in choices:
                problems.append((dotted, f"must be one of {', '.join(choices)}, got {v!r}"))
                continue
            if (name, key) in _POSITIVE and v <= 0:
                problems.append((dotted, f"must be greater than 0, got {v!r}"))
                continue
            if (name, key) in _PORTS and not 0 <= v <= 65535:
                problems.append((dotted, f"must be a port number 0-65535, got {v!r}"))
                continue
            kwargs[key] = v
        built[name] = cls(**kwargs)
    cfg = Config(**built)
    bad_plugins = [p for p in cfg.debugreports.plugins
                   if not re.fullmatch(r"[a-z0-9_]{1,64}", p)]
    if bad_plugins:
        problems.append(("debugreports.plugins",
                         f"sos plugin names are lower-case letters, digits and _, "
                         f"got {bad_plugins!r}"))
    if cfg.workers.copy_limit_mib < 0:
        problems.append(("workers.copy_limit_mib",
                         f"must be 0 (no limit) or more, got {cfg.workers.copy_limit_mib!r}"))
    bad_hosts = [h for h in cfg.workers.hosts
                 if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}", h)]
    if bad_hosts:
        problems.append(("workers.hosts", f"host names (as in GET /hosts) are letters, digits "
                                          f"and _.+- (at most 64), got {bad_hosts!r}"))
    if cfg.workers.embedded < 0:
        problems.append(("workers.embedded", "must be 0 or more"))
    if cfg.server.tls and bool(cfg.server.cert) != bool(cfg.server.key):
        problems.append(("server.cert", "cert and key must be given together"))
    if cfg.redis.url and not cfg.redis.url.startswith(("redis://", "unix://")):
        problems.append(("redis.url",
                         f"must start with redis:// or unix://, got {cfg.redis.url!r}"))
    if cfg.auth.throttle_free_attempts < 0:
        problems.append(("auth.throttle_free_attempts", "must be 0 or more"))
    if not cfg.auth.pam_service or "/" in cfg.auth.pam_service:
        problems.append(("auth.pam_service",
                         f"must be a file name in /etc/pam.d, got {cfg.auth.pam_service!r}"))
    for origin in cfg.auth.allowed_origins:
        if not origin.startswith(("http://", "https://")) or origin.count("/") != 2:
            problems.append(("auth.allowed_origins",
                             f"must be like https://host[:port], got {origin!r}"))
    try:
        OutboundPolicy.parse(cfg.outbound.allow)
    except ValueError as e:
        problems.append(("outbound.allow", str(e)))
    for item in cfg.metrics.allow:
        try:
            ipaddress.ip_network(item.strip(), strict=False)
        except ValueError:
            problems.append(("metrics.allow",
                             f"must be addresses or networks (CIDR), got {item!r}"))
    if problems:
        raise ConfigError(problems)
    return cfg

