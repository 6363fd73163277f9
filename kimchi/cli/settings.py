"""Where the CLI finds its server and credentials: flags, then the environment, then
``cli.toml`` (``$XDG_CONFIG_HOME/kimchi/cli.toml``, by default ``~/.config/kimchi/cli.toml``).

The file holds the same keys as the flags, at the top level or under a profile::

    url = "https://kimchi.example.org:8001"
    ca_file = "/etc/kimchi/ca.pem"
    token = "kch_..."

    [profiles.lab]
    url = "https://lab:8001"
    user = "alice"

An unknown key is refused with its name, like the daemon's configuration.
"""

from __future__ import annotations

import os
import ssl
import stat
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

DEFAULT_URL = "https://localhost:8001"
DEFAULT_TIMEOUT = 30.0
KEYS = ("url", "token", "user", "password", "ca_file", "timeout")
SECRETS = ("token", "password")


class SettingsError(Exception):
    """The configuration file cannot be used: unreadable, not TOML, an unknown key."""


@dataclass(frozen=True)
class Settings:
    """What one run of the CLI connects with."""

    url: str = DEFAULT_URL
    token: str | None = None
    user: str | None = None
    password: str | None = None
    ca_file: str | None = None  # None: the system's trusted CAs
    timeout: float = DEFAULT_TIMEOUT  # seconds for one request (not for a stream)

    @property
    def verify(self) -> str | bool:
        """What ``requests`` verifies the server's certificate with: the CA file, else
        the system's bundle (the one the operator manages), else requests' own."""
        if self.ca_file:
            return self.ca_file
        system = ssl.get_default_verify_paths().cafile
        return system if system and os.path.exists(system) else True


def config_path(environ: dict[str, str] | None = None) -> Path:
    """``cli.toml``: ``$KIMCHI_CONFIG``, else under ``$XDG_CONFIG_HOME`` (or ~/.config)."""
    env = os.environ if environ is None else environ
    if env.get("KIMCHI_CONFIG"):
        return Path(env["KIMCHI_CONFIG"]).expanduser()
    base = env.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base).expanduser() / "kimchi" / "cli.toml"


def _checked(table: dict[str, Any], where: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in table.items():
        if key not in KEYS:
            raise SettingsError(f"{where}: unknown key {key!r} (known: {', '.join(KEYS)})")
        if key == "timeout":
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise SettingsError(f"{where}: timeout must be a positive number of seconds")
            value = float(value)
        elif not isinstance(value, str):
            raise SettingsError(f"{where}: {key} must be a string")
        out[key] = value
    return out


def read_file(path: Path, profile: str | None) -> tuple[dict[str, Any], list[str]]:
    """The keys of ``path`` (of ``profile`` over the top level) and warnings to show.

    A missing file is no error unless a profile is asked for."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        if profile:
            raise SettingsError(f"{path}: no such file (profile {profile!r} asked for)") from None
        return {}, []
    except OSError as e:
        raise SettingsError(f"{path}: {e.strerror}") from None
    try:
        doc = tomllib.loads(raw.decode())
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise SettingsError(f"{path}: not valid TOML: {e}") from None
    profiles = doc.pop("profiles", {})
    if not isinstance(profiles, dict):
        raise SettingsError(f"{path}: profiles must be a table of tables")
    values = _checked(doc, str(path))
    if profile:
        if not isinstance(profiles.get(profile), dict):
            known = ", ".join(sorted(profiles)) or "none"
            raise SettingsError(f"{path}: no profile {profile!r} (profiles: {known})")
        values.update(_checked(profiles[profile], f"{path} [profiles.{profile}]"))
    warnings = []
    has_secret = any(k in SECRETS for k in doc) or any(
        isinstance(p, dict) and any(k in SECRETS for k in p) for p in profiles.values())
    if has_secret and path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        warnings.append(f"{path} holds a secret and others may read it: chmod 600 {path}")
    return values, warnings


def resolve(given: dict[str, Any], profile: str | None = None,
            path: Path | None = None) -> tuple[Settings, list[str]]:
    """Settings from ``given`` (flags and environment, None where unset) over the file."""
    from_file, warnings = read_file(path or config_path(), profile)
    merged: dict[str, Any] = {}
    for f in fields(Settings):
        value = given.get(f.name)
        if value is None or value == "":
            value = from_file.get(f.name)
        if value is not None and value != "":
            merged[f.name] = value
    url = str(merged.get("url", DEFAULT_URL)).rstrip("/")
    if "://" not in url:
        url = "https://" + url
    merged["url"] = url
    return Settings(**merged), warnings
