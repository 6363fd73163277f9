"""cloud-init's NoCloud seed: what a new VM is told on its first boot.

A template or a ``POST /vms`` may carry ``cloud_init {"hostname", "user", "password",
"ssh_authorized_keys", "user_data"}``.  The VM then gets a small ISO-9660 image
labelled ``cidata`` as a CD-ROM, holding ``meta-data`` (its instance id and host
name) and ``user-data`` (a ``#cloud-config`` document; with the user's own
``user_data`` too, both go in one multipart document, which cloud-init reads part by
part).  The image is made with ``genisoimage`` (argument lists, never a shell) and
stored as a volume next to the VM's first disk; it is deleted with the VM.

A password is never kept in clear: it is hashed (SHA-512 crypt) as soon as kimchid
receives it, and only the hash goes into templates, tasks and the seed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import warnings
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from typing import Any

FIELDS = ("hostname", "user", "password", "ssh_authorized_keys", "user_data")
#: the volume of a VM's seed, beside its first disk
VOLUME_SUFFIX = "-cidata.iso"


def hash_password(password: str) -> str:
    """SHA-512 crypt, which every cloud-init distribution's ``passwd`` accepts."""
    with warnings.catch_warnings():  # deprecated since 3.11, there until 3.13
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt
    return crypt.crypt(password, crypt.mksalt(crypt.METHOD_SHA512))


def normalise(ci: dict[str, Any] | None) -> dict[str, Any] | None:
    """The settings as kept: the password replaced by its hash."""
    if not ci:
        return None
    out = {k: v for k, v in ci.items() if k != "password"}
    if ci.get("password"):  # with its user: the schema says so
        out["password_hash"] = hash_password(ci["password"])
    return out


def combine(template: dict[str, Any] | None, request: dict[str, Any] | None
            ) -> dict[str, Any] | None:
    """A request's settings over its template's, key by key."""
    if not template and not request:
        return None
    return {**(template or {}), **(request or {})}


def public(ci: dict[str, Any] | None) -> dict[str, Any] | None:
    """What a template shows of its settings: whether a password is set, not its hash."""
    if not ci:
        return ci
    out = {k: v for k, v in ci.items() if k != "password_hash"}
    if "password_hash" in ci:
        out["password_set"] = True
    return out


def seed_files(ci: dict[str, Any], vm: str, instance_id: str) -> dict[str, bytes]:
    """``meta-data`` and ``user-data`` of the seed."""
    hostname = ci.get("hostname") or vm
    meta = {"instance-id": instance_id, "local-hostname": hostname}
    config: dict[str, Any] = {"hostname": hostname.split(".")[0]}
    if "." in hostname:
        config["fqdn"] = hostname
    keys = list(ci.get("ssh_authorized_keys") or [])
    if ci.get("user"):
        user: dict[str, Any] = {"name": ci["user"], "shell": "/bin/bash",
                                "sudo": "ALL=(ALL) NOPASSWD:ALL", "groups": "sudo"}
        if ci.get("password_hash"):
            user["passwd"] = ci["password_hash"]
            user["lock_passwd"] = False
        if keys:
            user["ssh_authorized_keys"] = keys
        config["users"] = ["default", user]
        config["ssh_pwauth"] = bool(ci.get("password_hash"))
    elif keys:  # the image's default user (debian, ubuntu, fedora...)
        config["ssh_authorized_keys"] = keys
    # JSON is YAML: no YAML writer needed, and nothing the user sent can break its syntax
    cloud_config = "#cloud-config\n" + json.dumps(config, indent=2) + "\n"
    raw = ci.get("user_data")
    if raw:
        mime = MIMEMultipart()
        mime.attach(MIMEText(cloud_config, "cloud-config"))
        subtype = "x-shellscript" if raw.startswith("#!") else "cloud-config"
        mime.attach(MIMEText(raw, subtype))
        user_data = mime.as_string()
    else:
        user_data = cloud_config
    return {"meta-data": json.dumps(meta, indent=2).encode() + b"\n",
            "user-data": user_data.encode()}


def build_iso(files: dict[str, bytes]) -> bytes:
    """The seed image holding ``files`` (blocking: runs genisoimage)."""
    tool = shutil.which("genisoimage") or shutil.which("mkisofs")
    if tool is None:
        raise RuntimeError("genisoimage is not installed")
    with tempfile.TemporaryDirectory(prefix="kimchi-cidata-") as tmp:
        for name, data in files.items():
            with open(os.path.join(tmp, name), "wb") as f:
                f.write(data)
        out = os.path.join(tmp, "seed.iso")
        done = subprocess.run([tool, "-quiet", "-output", out, "-volid", "cidata",
                               "-joliet", "-rock", *(os.path.join(tmp, n) for n in files)],
                              capture_output=True, timeout=60, check=False)
        if done.returncode != 0:
            raise RuntimeError(done.stderr.decode(errors="replace").strip()
                               or f"genisoimage: exit {done.returncode}")
        with open(out, "rb") as f:
            return f.read()
