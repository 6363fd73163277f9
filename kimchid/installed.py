"""The files the kimchi package carries beside its code, found where it is installed.

The browser UI, the PAM service, the systemd units and the example configuration are
package data of ``kimchid`` (``kimchid/webui``, ``kimchid/etc`` and ``kimchid/systemd``:
in the source tree, links to the top-level ``webui/``, ``etc/`` and ``systemd/``), so a
wheel installed into any virtualenv serves the same UI as a checkout, and the Debian
package (``packaging/build-deb.sh``) takes the files it puts in ``/etc`` and
``/lib/systemd/system`` from the installed wheel.

``python -m kimchid.installed`` prints where each one is.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path


def _packaged(name: str) -> Path:
    found = files("kimchid") / name
    if not isinstance(found, Path):  # a zipped install: nothing to serve files from
        raise RuntimeError(f"kimchid's {name} is not on the file system ({found}): "
                           "install kimchi as files (pip install), not as a zip")
    return found


def webui() -> Path:
    """The browser UI's folder (index.html, style.css, js/), served under ``/ui/``."""
    return _packaged("webui")


def pam_service() -> Path:
    """The PAM service file, to install as ``/etc/pam.d/kimchi``."""
    return _packaged("etc") / "pam.d" / "kimchi"


def example_config() -> Path:
    """The example configuration: every key with its default and meaning."""
    return _packaged("etc") / "kimchi.toml.example"


def units() -> list[Path]:
    """The systemd units (``kimchid.service``, ``kimchi-worker@.service``)."""
    return sorted(_packaged("systemd").glob("*.service"))


def main() -> None:
    print(f"webui {webui()}")
    print(f"pam {pam_service()}")
    print(f"config-example {example_config()}")
    for unit in units():
        print(f"unit {unit}")


if __name__ == "__main__":
    main()
