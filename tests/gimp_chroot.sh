#!/bin/sh
# Build (or reuse) a Debian 13 "trixie" chroot with GIMP 3 and its Python bindings.
#
# Why a chroot: Debian 12 ships GIMP 2.10 without Python, so the real-GIMP tests of the
# Fixative plug-in need GIMP 3 from trixie. The chroot is cached: a finished build leaves
# a marker file, and later runs reuse it. A half-built tree is never reused: the build
# happens in "$ROOT.partial" and is renamed only once GIMP runs inside it.
#
# Usage: tests/gimp_chroot.sh [ROOT]   (default /var/cache/fixative-gimp-chroot; needs root)
# Env:   FIXATIVE_DEBIAN_MIRROR (default http://deb.debian.org/debian)
set -eu

ROOT="${1:-${FIXATIVE_GIMP_CHROOT:-/var/cache/fixative-gimp-chroot}}"
MIRROR="${FIXATIVE_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
MARKER="$ROOT/.fixative-gimp-ready"
PACKAGES="gimp python3-gi gir1.2-gimp-3.0"

if [ -f "$MARKER" ]; then
    echo "gimp chroot: reusing $ROOT"
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "gimp chroot: building $ROOT needs root (debootstrap/chroot)" >&2
    exit 77
fi

if ! command -v debootstrap >/dev/null 2>&1; then
    echo "gimp chroot: installing debootstrap"
    # Other jobs may hold the dpkg lock: wait for it instead of failing.
    APT="apt-get -o DPkg::Lock::Timeout=600"
    DEBIAN_FRONTEND=noninteractive $APT install -y debootstrap >/dev/null \
        || { $APT update >/dev/null && DEBIAN_FRONTEND=noninteractive $APT install -y debootstrap >/dev/null; }
fi

PARTIAL="$ROOT.partial"
# Never delete through a bind mount (a test run killed midway may have left /dev mounted inside).
for dir in "$ROOT" "$PARTIAL"; do
    if grep -q " $dir/" /proc/mounts; then
        echo "gimp chroot: $dir still has mounts inside (see /proc/mounts); unmount them first" >&2
        exit 1
    fi
done
rm -rf --one-file-system "$PARTIAL"
mkdir -p "$(dirname "$ROOT")"
# A failed build leaves nothing behind (it would be ~1 GB of half-installed packages).
cleanup() {
    umount "$PARTIAL/proc" 2>/dev/null || true
    [ -f "$PARTIAL/.fixative-gimp-ready" ] || rm -rf --one-file-system "$PARTIAL"
}
trap cleanup EXIT
echo "gimp chroot: debootstrap trixie into $PARTIAL"
debootstrap --variant=minbase trixie "$PARTIAL" "$MIRROR"

# Keep services from starting inside the chroot while packages install.
printf '#!/bin/sh\nexit 101\n' > "$PARTIAL/usr/sbin/policy-rc.d"
chmod 755 "$PARTIAL/usr/sbin/policy-rc.d"

mount -t proc proc "$PARTIAL/proc"
echo "gimp chroot: installing $PACKAGES"
chroot "$PARTIAL" /usr/bin/env DEBIAN_FRONTEND=noninteractive sh -c \
    "apt-get update && apt-get install -y --no-install-recommends $PACKAGES && apt-get clean"
chroot "$PARTIAL" gimp-console-3.0 --version
umount "$PARTIAL/proc"

date -u +%Y-%m-%dT%H:%M:%SZ > "$PARTIAL/.fixative-gimp-ready"
rm -rf --one-file-system "$ROOT"
mv "$PARTIAL" "$ROOT"
trap - EXIT
echo "gimp chroot: ready at $ROOT"
