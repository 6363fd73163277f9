#!/usr/bin/env bash
# packaging/build-deb.sh: build kimchi_<version>_<arch>.deb, a Debian 12 package of kimchi.
#
#   packaging/build-deb.sh [--wheel FILE | --wheel-only] [--out DIR] [--python PATH]
#
# The package is a virtualenv in /opt/kimchi over Debian's own python3.11, holding
# kimchi's wheel and its requirements at the versions of constraints.txt (the ones the
# tests ran with).  The PAM service, the systemd units and the example configuration are
# taken from the installed wheel (its package data), so the package carries what the
# wheel carries.  Its maintainer scripts (packaging/debian/) write /etc/kimchi/kimchi.toml
# when there is none, make the group kimchi-admin and, when systemd runs, enable and
# start kimchid.service.
#
#   --wheel FILE   kimchi's wheel (default: built from a clean copy of this checkout, and
#                  kept beside the .deb)
#   --wheel-only   build the wheel, not the .deb
#   --out DIR      where the wheel and .deb go (default: dist/ in the checkout)
#   --python PATH  the interpreter of the virtualenv (default /usr/bin/python3.11: the
#                  one of Debian 12, which the package depends on)
#
# Needs dpkg-deb, python3-venv, and what pip needs to build libvirt-python when no wheel
# of it is cached (libvirt-dev pkg-config gcc, as ./kimchi.sh installs).  Root is not
# needed (files are owned by root in the package: dpkg-deb --root-owner-group).
set -euo pipefail
umask 022  # the modes the files get in the package

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
PREFIX=/opt/kimchi
OUT=$ROOT/dist
PYTHON=/usr/bin/python3.11
WHEEL=""
WHEEL_ONLY=0

say() { printf 'build-deb: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

while [ $# -gt 0 ]; do
    case "$1" in
        --wheel) WHEEL=$(realpath "$2"); shift 2 ;;
        --wheel-only) WHEEL_ONLY=1; shift ;;
        --out) OUT=$2; shift 2 ;;
        --python) PYTHON=$2; shift 2 ;;
        -h | --help) sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument $1 (see --help)" ;;
    esac
done

command -v dpkg-deb >/dev/null || die "dpkg-deb is missing (apt-get install dpkg)"
[ -x "$PYTHON" ] || die "no $PYTHON (apt-get install python3.11 python3-venv)"
"$PYTHON" -c 'import ensurepip' 2>/dev/null || die "$PYTHON has no venv module: apt-get install python3-venv"
[ -f "$ROOT/constraints.txt" ] || die "no $ROOT/constraints.txt"

VERSION=$("$PYTHON" -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["project"]["version"])' "$ROOT/pyproject.toml")
ARCH=$(dpkg --print-architecture)
QEMU=qemu-system-x86 UEFI=ovmf  # as kimchi.sh's wanted_packages
if [ "$ARCH" = arm64 ]; then
    QEMU=qemu-system-arm UEFI=qemu-efi-aarch64
fi
PYVER=$("$PYTHON" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
DEB="$OUT/kimchi_${VERSION}_${ARCH}.deb"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/kimchi-deb.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
STAGE=$WORK/root
VENV=$STAGE$PREFIX

if [ -z "$WHEEL" ]; then
    # From a copy without what builds and runs leave behind: setuptools would put stale
    # files of an earlier build/ into the wheel.
    say "building kimchi's wheel"
    mkdir "$WORK/src"
    tar -C "$ROOT" --exclude=./.git --exclude=./.venv --exclude=./.cache --exclude=./build \
        --exclude=./dist --exclude=./artifacts --exclude=./.mypy_cache --exclude=./.ruff_cache \
        --exclude=./.hypothesis --exclude='*.egg-info' --exclude=__pycache__ \
        --exclude=node_modules -cf - . | tar -C "$WORK/src" -xf -
    "$PYTHON" -m venv "$WORK/buildenv"
    "$WORK/buildenv/bin/python" -m pip wheel --disable-pip-version-check -q --no-deps \
        -w "$WORK/wheel" "$WORK/src"
    WHEEL="$OUT/$(basename "$WORK"/wheel/kimchi-*.whl)"
    mv "$WORK"/wheel/kimchi-*.whl "$WHEEL"
    say "wheel: $WHEEL"
fi
[ -f "$WHEEL" ] || die "no wheel at $WHEEL"
if [ "$WHEEL_ONLY" = 1 ]; then
    echo "$WHEEL"
    exit 0
fi

say "making the virtualenv $PREFIX ($("$PYTHON" -V)) with $(basename "$WHEEL")"
"$PYTHON" -m venv "$VENV"
# --no-compile: the byte code is made below, naming the files where they will be.
"$VENV/bin/python" -m pip install --disable-pip-version-check -q --no-compile \
    -c "$ROOT/constraints.txt" "$WHEEL"
"$VENV/bin/python" -m pip check >/dev/null || {
    "$VENV/bin/python" -m pip check >&2 || true
    die "the virtualenv's requirements do not hold together"
}
# pip and setuptools made the virtualenv; kimchi does not need them to run.
"$VENV/bin/python" -m pip uninstall --disable-pip-version-check -y -q pip setuptools

# The virtualenv must work from $PREFIX: the scripts' #! lines, activate's VIRTUAL_ENV and
# pyvenv.cfg name the staging folder; the interpreter is Debian's python3.X itself.
grep -rlI --null -F "$VENV" "$VENV/bin" "$VENV/pyvenv.cfg" |
    xargs -0 -r sed -i "s|$VENV|$PREFIX|g"
for link in python python3 "python$PYVER"; do
    ln -sfn "/usr/bin/python$PYVER" "$VENV/bin/$link"
done
# where pip fetched the wheel from (a path of this machine): nothing the package needs
rm -f "$VENV"/lib/python*/site-packages/kimchi-*.dist-info/direct_url.json
"$VENV/bin/python" -m compileall -q -j 0 -s "$STAGE" -p / "$VENV/lib" >/dev/null
if grep -rlI -F "$WORK" "$VENV" >"$WORK/leftover"; then
    die "files still name the staging folder: $(head -3 "$WORK/leftover" | tr '\n' ' ')"
fi

# What the wheel carries, from where it is installed.
SITE=$(echo "$VENV"/lib/python*/site-packages)
PKG=$SITE/kimchid
[ -f "$PKG/webui/index.html" ] || die "the wheel carries no UI (kimchid/webui)"
install -D -m 644 "$PKG/etc/pam.d/kimchi" "$STAGE/etc/pam.d/kimchi"
DOC=$STAGE/usr/share/doc/kimchi
install -D -m 644 "$PKG/etc/kimchi.toml.example" "$DOC/examples/kimchi.toml.example"
install -m 644 "$HERE/debian/copyright" "$DOC/copyright"
mkdir -p "$STAGE/lib/systemd/system"
for unit in "$PKG"/systemd/*.service; do
    # the units of the source tree start /usr/local/bin/kimchid (kimchi.sh install-service)
    sed "/^ExecStart=/s|/usr/local/bin/|$PREFIX/bin/|" "$unit" >"$STAGE/lib/systemd/system/$(basename "$unit")"
    chmod 644 "$STAGE/lib/systemd/system/$(basename "$unit")"
done
# The commands on PATH: kimchi's console scripts.
mkdir -p "$STAGE/usr/bin"
for script in $("$VENV/bin/python" - <<'EOF'
from importlib.metadata import distribution
print(" ".join(sorted(e.name for e in distribution("kimchi").entry_points
                      if e.group == "console_scripts")))
EOF
); do
    ln -s "$PREFIX/bin/$script" "$STAGE/usr/bin/$script"
done

mkdir -p "$STAGE/DEBIAN"
for script in postinst prerm postrm; do
    install -m 755 "$HERE/debian/$script" "$STAGE/DEBIAN/$script"
done
echo /etc/pam.d/kimchi >"$STAGE/DEBIAN/conffiles"
SIZE=$(du -sk --exclude=DEBIAN "$STAGE" | cut -f1)
sed -e "s|@VERSION@|$VERSION|" -e "s|@ARCH@|$ARCH|" -e "s|@SIZE@|$SIZE|" \
    -e "s|@PYVER@|$PYVER|g" -e "s|@QEMU@|$QEMU|" -e "s|@UEFI@|$UEFI|" "$HERE/debian/control.in" >"$STAGE/DEBIAN/control"

say "packing $DEB"
dpkg-deb --root-owner-group -Zzstd --build "$STAGE" "$DEB" >/dev/null
echo "$DEB"
