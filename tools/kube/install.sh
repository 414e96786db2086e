#!/usr/bin/env bash
# Installs the Kubernetes tools tests/kubernetes needs into ONE folder:
#   ${STOREFLEET_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/storefleet/bin}
# - kube-apiserver, kube-controller-manager, kubectl and etcd, built from this Go wrapper module
#   (k8s.io/kubernetes with its staging modules replaced by their published versions;
#   etcd embedded from go.etcd.io/etcd/server/v3);
# - helm and kubeconform, by `go install`;
# - with --node, also the node tools of the test cluster (tools/cluster): kubelet,
#   kube-scheduler and kube-proxy, from the same module.
# Idempotent: a tool whose recorded version matches is not rebuilt, so a second run takes about
# a second. Needs only Go and the Go module proxy. Cold, on 2 cores, it takes several minutes.
# Usage: tools/kube/install.sh [--force] [--node]
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BIN="${STOREFLEET_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/storefleet/bin}"
HELM_VERSION="v3.22.0"
KUBECONFORM_VERSION="v0.7.0"
KUBE_TOOLS=(kube-apiserver kube-controller-manager etcd kubectl)

export GOFLAGS="-mod=mod -buildvcs=false"
export CGO_ENABLED=0
FORCE=0
for arg in "$@"; do
    case "$arg" in
        --force) FORCE=1 ;;
        --node) KUBE_TOOLS+=(kubelet kube-scheduler kube-proxy) ;;
        *) printf 'tools/kube: unknown option %s (expected --force or --node)\n' "$arg" >&2; exit 2 ;;
    esac
done

mkdir -p "$BIN"
log() { printf 'tools/kube: %s\n' "$*" >&2; }

# A stamp per tool records what it was built from; a matching stamp and binary mean "done".
stamp_ok() { # name expected
    [[ $FORCE == 0 && -x "$BIN/$1" && -f "$BIN/.$1.version" ]] \
        && [[ "$(cat "$BIN/.$1.version")" == "$2" ]]
}
write_stamp() { printf '%s' "$2" >"$BIN/.$1.version"; }

go_version="$(go env GOVERSION)"
# Per tool, so that adding a command to the module does not rebuild the others' stamps.
kube_stamp() { # tool
    printf '%s %s' "$(cd "$HERE" && cat go.mod go.sum "cmd/$1/main.go" install.sh \
        | sha256sum | cut -c1-16)" "$go_version"
}

missing=()
for tool in "${KUBE_TOOLS[@]}"; do
    stamp_ok "$tool" "$(kube_stamp "$tool")" || missing+=("$tool")
done
if ((${#missing[@]})); then
    log "building ${missing[*]} (Kubernetes $(awk '/k8s.io\/kubernetes v/ {print $2; exit}' \
        "$HERE/go.mod"), $go_version) into $BIN"
    start=$SECONDS
    pkgs=()
    for tool in "${missing[@]}"; do pkgs+=("./cmd/$tool"); done
    # The version the servers report (/version; helm checks a chart's kubeVersion against it).
    kv="$(awk '/k8s.io\/kubernetes v/ {print $2; exit}' "$HERE/go.mod")"
    minor="${kv#v1.}"; minor="${minor%%.*}"
    ldflags="-s -w"
    for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        ldflags+=" -X $pkg.gitVersion=$kv -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
        ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
    done
    (cd "$HERE" && GOBIN="$BIN" go install -trimpath -ldflags="$ldflags" "${pkgs[@]}")
    for tool in "${missing[@]}"; do write_stamp "$tool" "$(kube_stamp "$tool")"; done
    log "built in $((SECONDS - start)) s"
fi

go_install_tool() { # name module-path version [extra ldflags]
    local name="$1" pkg="$2" version="$3" ldflags="-s -w ${4:-}"
    local stamp="$version $go_version $(printf '%s' "$ldflags" | sha256sum | cut -c1-8)"
    if stamp_ok "$name" "$stamp"; then return; fi
    log "go install $pkg@$version"
    local start=$SECONDS
    # Run outside the wrapper module so its go.mod does not apply.
    (cd / && GOBIN="$BIN" go install -trimpath -ldflags="$ldflags" "$pkg@$version")
    write_stamp "$name" "$stamp"
    log "$name built in $((SECONDS - start)) s"
}
# Without these, helm reports Kubernetes v1.20 to `helm template` (DESIGN.md §8): give it the
# version of its client-go (v0.37 -> 1.37) and its own version, as helm's Makefile does.
HELM_X="helm.sh/helm/v3"
go_install_tool helm "$HELM_X/cmd/helm" "$HELM_VERSION" \
    "-X $HELM_X/internal/version.version=$HELM_VERSION \
     -X $HELM_X/pkg/chartutil.k8sVersionMajor=1 -X $HELM_X/pkg/chartutil.k8sVersionMinor=37 \
     -X $HELM_X/pkg/lint/rules.k8sVersionMajor=1 -X $HELM_X/pkg/lint/rules.k8sVersionMinor=37"
go_install_tool kubeconform github.com/yannh/kubeconform/cmd/kubeconform "$KUBECONFORM_VERSION"

log "ready: ${KUBE_TOOLS[*]} helm kubeconform in $BIN"
