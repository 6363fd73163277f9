"""constraints.txt: the exact version of every Python package kimchi's tests ran with.

Run with the test virtualenv's Python, after the tests passed:

    .venv/bin/python packaging/constraints.py --write    # rewrite constraints.txt
    .venv/bin/python packaging/constraints.py --check    # exit 1 if it is out of date

The pins are kimchi's own requirements with every extra (``test``, ``bench``, ``dev``) and
all they pull in, each at the version installed in the environment running this script,
with no other package of that environment.  ``./kimchi.sh up`` and ``test`` and
``packaging/build-deb.sh`` install with ``pip install -c constraints.txt``.
"""

from __future__ import annotations

import argparse
import difflib
import sys
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
FILE = ROOT / "constraints.txt"
PROJECT = "kimchi"
EXTRAS = ("test", "bench", "dev")
# kimchid/api/events.py writes WebSocket frames through private attributes of these
# (Twisted's TCP and TLS transports, autobahn's protocol, pyOpenSSL's OpenSSL bindings over
# cryptography's): another release may rename them, so they must be exactly the tested ones.
PRIVATE_API = ("twisted", "autobahn", "pyopenssl", "cryptography")

HEADER = """\
# Every Python package kimchi's tests ran with, at the version they ran with: kimchi's
# requirements with its extras (test, bench, dev) and all they pull in.  Used by
# ./kimchi.sh up and test and by packaging/build-deb.sh (pip install -c constraints.txt).
# Refresh, in the test virtualenv, after changing a requirement and running the tests:
#   .venv/bin/python packaging/constraints.py --write
# Twisted, autobahn, pyOpenSSL and cryptography must stay exactly these: kimchid/api/
# events.py uses private attributes of theirs (docs/install.md).
"""


def own_requirements(extras: set[str]) -> list[str]:
    """kimchi's requirements as pyproject.toml says now (its ``extras`` included), in the
    form of installed metadata: an extra's requirement carries ``extra == "..."``."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    found = list(project.get("dependencies", []))
    for extra, reqs in project.get("optional-dependencies", {}).items():
        if extra in extras:
            found += [f'{r.split(";")[0]}; extra == "{extra}"' for r in reqs]
    return found


def installed(name: str, needed_by: str) -> metadata.Distribution:
    try:
        return metadata.distribution(name)
    except metadata.PackageNotFoundError:
        raise SystemExit(f"error: {name} (required by {needed_by}) is not installed here: "
                         "install kimchi's extras first (./kimchi.sh test)") from None


def closure(project: str = PROJECT, extras: tuple[str, ...] = EXTRAS) -> dict[str, str]:
    """Canonical name -> ``Name==version`` of everything ``project[extras]`` requires
    (``project``'s own requirements read from pyproject.toml), at the versions installed
    in this environment (the project itself left out)."""
    own = canonicalize_name(project)
    wanted: dict[str, set[str]] = {own: set(extras)}
    parent: dict[str, str] = {}
    todo: list[str] = [own]
    while todo:
        name = todo.pop()
        active = wanted[name] | {""}
        if name == own:
            requires = own_requirements(wanted[name])
        else:
            requires = installed(name, parent.get(name, project)).requires or []
        for text in requires:
            req = Requirement(text)
            if req.marker is not None and not any(
                    req.marker.evaluate({"extra": extra}) for extra in active):
                continue
            dep: str = canonicalize_name(req.name)
            more = set(req.extras)
            if dep not in wanted:
                wanted[dep] = more
                parent[dep] = name
                todo.append(dep)
            elif not more <= wanted[dep]:
                wanted[dep] |= more
                todo.append(dep)
    pins: dict[str, str] = {}
    for name in wanted:
        if name != own:
            dist = installed(name, parent.get(name, project))
            pins[name] = f"{dist.metadata['Name']}=={dist.version}"
    return pins


def render(pins: dict[str, str]) -> str:
    return HEADER + "".join(f"{pins[name]}\n" for name in sorted(pins))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    how = parser.add_mutually_exclusive_group()
    how.add_argument("--write", action="store_true", help=f"rewrite {FILE.name}")
    how.add_argument("--check", action="store_true",
                     help=f"exit 1 when {FILE.name} differs from this environment")
    parser.add_argument("--extras", default=",".join(EXTRAS), metavar="A,B",
                        help="the extras installed here (default: all of them); with "
                             "--check and fewer, only their packages are compared")
    args = parser.parse_args(argv)
    extras = tuple(e for e in args.extras.split(",") if e)
    if args.write and set(extras) != set(EXTRAS):
        parser.error(f"--write pins every extra: {','.join(EXTRAS)}")
    pins = closure(extras=extras)
    missing = [name for name in PRIVATE_API if name not in pins]
    if missing:
        print(f"error: {', '.join(missing)} not among kimchi's requirements", file=sys.stderr)
        return 1
    text = render(pins)
    if args.write:
        FILE.write_text(text)
        print(f"{FILE}: {len(pins)} packages pinned", file=sys.stderr)
        return 0
    if args.check and set(extras) != set(EXTRAS):  # a part of them installed: each pinned
        have_pins = set(FILE.read_text().splitlines()) if FILE.exists() else set()
        wrong = sorted(pin for pin in pins.values() if pin not in have_pins)
        if wrong:
            print(f"{FILE.name} does not pin these as installed here: {', '.join(wrong)}: "
                  ".venv/bin/python packaging/constraints.py --write", file=sys.stderr)
            return 1
        return 0
    if args.check:
        have = FILE.read_text() if FILE.exists() else ""
        if have != text:
            sys.stderr.writelines(difflib.unified_diff(
                have.splitlines(keepends=True), text.splitlines(keepends=True),
                str(FILE), "this environment"))
            print(f"{FILE.name} is out of date: .venv/bin/python packaging/constraints.py "
                  "--write", file=sys.stderr)
            return 1
        return 0
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
