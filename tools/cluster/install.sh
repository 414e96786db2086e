#!/usr/bin/env bash
# Builds everything the test cluster (tools/cluster/up) runs, into the StoreFleet cache:
# - kube-apiserver, kube-controller-manager, etcd, kubectl, kubelet, kube-scheduler, kube-proxy
#   (tools/kube/install.sh --node);
# - CoreDNS, rancher/local-path-provisioner and metrics-server, by `go install` (static);
# - the pause binary (pause.c, gcc -static);
# - their container images, built with buildah FROM scratch (the local-path helper image holds
#   Debian's busybox-static), tagged localhost/storefleet/<name>:dev and saved as docker
#   archives in $STOREFLEET_CLUSTER_IMAGES, which `up` imports into containerd.
# Binaries go to ${STOREFLEET_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/storefleet/bin}, the
# archives to ${STOREFLEET_CLUSTER_IMAGES:-<that folder>/../cluster-images}.
# Idempotent: each product carries a stamp of what it was built from; a warm run takes seconds.
# Needs Go, the Go module proxy and the Debian packages of scripts/install-cluster-packages.sh.
# Usage: tools/cluster/install.sh [--force]
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
BIN="${STOREFLEET_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/storefleet/bin}"
IMAGES="${STOREFLEET_CLUSTER_IMAGES:-$BIN/../cluster-images}"
COREDNS_VERSION="v1.15.0"
# The only version of the module the Go proxy serves (newer ones are refused).
LOCAL_PATH_VERSION="v0.0.30"
METRICS_SERVER_VERSION="v0.8.0"

FORCE=0
for arg in "$@"; do
    case "$arg" in
        --force) FORCE=1 ;;
        *) printf 'tools/cluster: unknown option %s (expected --force)\n' "$arg" >&2; exit 2 ;;
    esac
done

log() { printf 'tools/cluster: %s\n' "$*" >&2; }
for cmd in go gcc buildah; do
    command -v "$cmd" >/dev/null \
        || { log "$cmd is missing: run scripts/install-cluster-packages.sh"; exit 1; }
done
# The helper image is FROM scratch: its busybox must be the static one.
[ -x /bin/busybox ] && ! ldd /bin/busybox >/dev/null 2>&1 \
    || { log "busybox-static is missing: run scripts/install-cluster-packages.sh"; exit 1; }

mkdir -p "$BIN" "$IMAGES"
IMAGES="$(cd "$IMAGES" && pwd)"

kube_args=(--node)
[[ $FORCE == 1 ]] && kube_args+=(--force)
"$ROOT/tools/kube/install.sh" "${kube_args[@]}"

stamp_ok() { # stamp-file expected product
    [[ $FORCE == 0 && -e "$3" && -f "$1" ]] && [[ "$(cat "$1")" == "$2" ]]
}

export GOFLAGS="-mod=mod -buildvcs=false"
export CGO_ENABLED=0
go_version="$(go env GOVERSION)"
go_install_tool() { # name package version
    local name="$1" pkg="$2" version="$3"
    local stamp="$version $go_version"
    stamp_ok "$BIN/.$name.version" "$stamp" "$BIN/$name" && return
    log "go install $pkg@$version"
    local start=$SECONDS
    # Outside any module, so that only the tool's own go.mod applies.
    (cd / && GOBIN="$BIN" go install -trimpath -ldflags="-s -w" "$pkg@$version")
    printf '%s' "$stamp" >"$BIN/.$name.version"
    log "$name built in $((SECONDS - start)) s"
}
go_install_tool coredns github.com/coredns/coredns "$COREDNS_VERSION"
go_install_tool local-path-provisioner github.com/rancher/local-path-provisioner \
    "$LOCAL_PATH_VERSION"
go_install_tool metrics-server sigs.k8s.io/metrics-server/cmd/metrics-server \
    "$METRICS_SERVER_VERSION"

pause_stamp="$(cat "$HERE/pause.c" | sha256sum | cut -c1-16) $(gcc -dumpfullversion)"
if ! stamp_ok "$BIN/.pause.version" "$pause_stamp" "$BIN/pause"; then
    log "building pause"
    gcc -static -Os -s -o "$BIN/pause" "$HERE/pause.c"
    printf '%s' "$pause_stamp" >"$BIN/.pause.version"
fi

# buildah keeps its images in the host's container storage; only the archives are needed
# later, so a cleaned storage costs a rebuild of nothing but what `up` reads from the cache.
image_stamp() { # inputs entrypoint-json user
    printf '%s\n%s\n%s\n' "$1" "$2" "$3" | cat - "$HERE/install.sh" | sha256sum | cut -c1-16
}
image_current() { # name inputs entrypoint-json user
    stamp_ok "$IMAGES/.$1.stamp" "$(image_stamp "$2" "$3" "$4")" "$IMAGES/$1.tar"
}
build_image() { # name inputs entrypoint-json copy-source copy-destination [user]
    local name="$1" inputs="$2" entrypoint="$3" source="$4" destination="$5" user="${6:-}"
    local ref="localhost/storefleet/$name:dev" archive="$IMAGES/$name.tar"
    image_current "$name" "$inputs" "$entrypoint" "$user" && return
    log "building image $ref"
    local ctr
    ctr="$(buildah from --quiet scratch)"
    local config=(--entrypoint "$entrypoint" --cmd '' --os linux --arch amd64
        --label "org.opencontainers.image.source=storefleet tools/cluster")
    [[ -n "$user" ]] && config+=(--user "$user")
    if ! { buildah copy --quiet "$ctr" "$source" "$destination" >/dev/null \
            && buildah config "${config[@]}" "$ctr" \
            && buildah commit --quiet --rm --timestamp 0 "$ctr" "$ref" >/dev/null; }; then
        buildah rm "$ctr" >/dev/null 2>&1 || true
        log "building image $ref failed"
        return 1
    fi
    rm -f "$archive"
    buildah push --quiet "$ref" "docker-archive:$archive:$ref" >/dev/null
    image_stamp "$inputs" "$entrypoint" "$user" >"$IMAGES/.$name.stamp"
}
binary_digest() { sha256sum "$1" | cut -c1-16; }

build_image pause "$(binary_digest "$BIN/pause")" '["/pause"]' "$BIN/pause" /pause 65535
build_image coredns "$(binary_digest "$BIN/coredns")" '["/coredns"]' "$BIN/coredns" /coredns
build_image local-path-provisioner "$(binary_digest "$BIN/local-path-provisioner")" \
    '["/local-path-provisioner"]' "$BIN/local-path-provisioner" /local-path-provisioner
build_image metrics-server "$(binary_digest "$BIN/metrics-server")" '["/metrics-server"]' \
    "$BIN/metrics-server" /metrics-server 65534

# busybox: the static binary and one link per applet, so the helper pods can run /bin/sh.
busybox_digest="$(binary_digest /bin/busybox)"
if ! image_current busybox "$busybox_digest" '["/bin/sh"]' ''; then
    rootfs="$(mktemp -d)"
    mkdir -p "$rootfs/bin" "$rootfs/tmp"
    chmod 1777 "$rootfs/tmp"
    cp /bin/busybox "$rootfs/bin/busybox"
    for applet in $(/bin/busybox --list); do
        [[ "$applet" == busybox ]] || ln -s busybox "$rootfs/bin/$applet"
    done
    build_image busybox "$busybox_digest" '["/bin/sh"]' "$rootfs" /
    rm -rf "$rootfs"
fi

log "ready: cluster tools in $BIN, images $(cd "$IMAGES" && ls ./*.tar | xargs -n1 basename \
    | tr '\n' ' ')in $IMAGES"
