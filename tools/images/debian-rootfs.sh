#!/usr/bin/env bash
# Build a minimal Debian bookworm root file system with debootstrap and import it into podman as
# localhost/storefleet/base-debian:local, the root of every local base (tools/images/bases.sh).
# Usage (root): tools/images/debian-rootfs.sh LABEL_VALUE
# Reads: DEBIAN_MIRROR (default: the first Debian URI apt uses here), the machine's extra CAs in
# /usr/local/share/ca-certificates (pip, Maven and Go inside image builds must trust them).
# Writes: a temporary rootfs under $TMPDIR (removed), the podman image.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_tools debootstrap podman
label="${1:?usage: debian-rootfs.sh LABEL_VALUE}"
apt_uri() {  # the first URI of a Debian suite in apt's sources, else deb.debian.org
    local want="$1" uri
    uri="$(grep -rhoE "^URIs: *\S+${want}\b|^deb +(\[[^]]*\] +)?\S+${want} " /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null \
        | grep -oE 'https?://\S+' | head -n1 || true)"
    echo "${uri:-http://deb.debian.org/${want}}"
}
mirror="${DEBIAN_MIRROR:-$(apt_uri debian)}"
security="${DEBIAN_SECURITY_MIRROR:-$(apt_uri debian-security)}"
rootfs="$(mktemp -d "${TMPDIR:-/tmp}/storefleet-rootfs.XXXXXX")"
trap 'rm -rf "$rootfs"' EXIT
log "debootstrap minbase bookworm from $mirror"
debootstrap --variant=minbase --include=ca-certificates,passwd bookworm "$rootfs" "$mirror" >&2
cat > "$rootfs/etc/apt/sources.list" <<SOURCES
deb $mirror bookworm main
deb $mirror bookworm-updates main
deb $security bookworm-security main
SOURCES
# Like Debian's official container images: no recommends, no docs, man pages or translations.
cat > "$rootfs/etc/apt/apt.conf.d/90storefleet" <<'APT'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
Acquire::Languages "none";
Acquire::GzipIndexes "true";
Acquire::CompressionTypes::Order:: "gz";
// Keep no downloaded .deb nor package cache in an image layer.
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
APT
cat > "$rootfs/etc/dpkg/dpkg.cfg.d/90storefleet" <<'DPKG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/lintian/*
DPKG
# Services never start inside an image build.
printf '#!/bin/sh\nexit 101\n' > "$rootfs/usr/sbin/policy-rc.d" && chmod +x "$rootfs/usr/sbin/policy-rc.d"
shopt -s nullglob
cas=(/usr/local/share/ca-certificates/*.crt)
if ((${#cas[@]})); then
    cp "${cas[@]}" "$rootfs/usr/local/share/ca-certificates/"
    chroot "$rootfs" update-ca-certificates >&2
fi
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb \
    "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/locale/* "$rootfs"/var/log/*.log
log "importing the rootfs ($(du -sh "$rootfs" | cut -f1))"
tar --numeric-owner -C "$rootfs" -c . | podman import \
    --change "ENV LANG=C.UTF-8" --change 'CMD ["bash"]' \
    --change "LABEL $inputs_label=$label" \
    - "$image_prefix/base-debian:local" >&2
