#!/usr/bin/env bash
# Builds the Spark operator tools into ONE folder (what `make tools` runs):
#   ${STOREFLEET_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/storefleet/bin}
# - controller-gen (sigs.k8s.io/controller-tools): gen-crds.sh makes the chart's CRDs with it;
# - spark-operator: the kubeflow Spark operator's own binary, built inside its module as
#   downloaded (its go.mod and replace directives apply), the same code as the controller image.
#   tests/kubernetes/test_spark_operator_controller.py runs it against the test API server.
# Idempotent: a tool whose recorded version matches is not rebuilt. Cold, on 2 cores, a few
# minutes; needs only Go and the Go module proxy.
# Usage: tools/spark-operator/install.sh
set -euo pipefail

# The Spark operator release the chart installs (values.yaml sparkOperator.image.tag, the CRDs).
SPARK_OPERATOR_MODULE="github.com/kubeflow/spark-operator/v2"
SPARK_OPERATOR_VERSION="v2.5.2"
CONTROLLER_TOOLS_VERSION="v0.23.0"

BIN="${STOREFLEET_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/storefleet/bin}"
export GOFLAGS="-mod=mod -buildvcs=false" CGO_ENABLED=0
log() { printf 'tools/spark-operator: %s\n' "$*" >&2; }
mkdir -p "$BIN"

stamp_ok() { [[ -x "$BIN/$1" && "$(cat "$BIN/.$1.version" 2>/dev/null)" == "$2" ]]; }

# The module's folder in the Go module cache (downloaded if needed); printed on stdout.
module_dir() {
    local work
    work="$(mktemp -d)"
    printf 'module storefleet.invalid/tools\n\ngo 1.24\n' >"$work/go.mod"
    (cd "$work" && go mod download -json "$SPARK_OPERATOR_MODULE@$SPARK_OPERATOR_VERSION") \
        | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p'
    rm -rf "$work"
}

if ! stamp_ok controller-gen "$CONTROLLER_TOOLS_VERSION"; then
    log "building controller-gen $CONTROLLER_TOOLS_VERSION into $BIN"
    (cd / && GOBIN="$BIN" go install \
        "sigs.k8s.io/controller-tools/cmd/controller-gen@$CONTROLLER_TOOLS_VERSION")
    printf '%s' "$CONTROLLER_TOOLS_VERSION" >"$BIN/.controller-gen.version"
fi

stamp="$SPARK_OPERATOR_VERSION $(go env GOVERSION)"
if ! stamp_ok spark-operator "$stamp"; then
    dir="$(module_dir)"
    [[ -d "$dir/cmd/operator" ]] || { log "no cmd/operator in '$dir'"; exit 1; }
    log "building spark-operator $SPARK_OPERATOR_VERSION into $BIN"
    (cd "$dir" && go build -trimpath -ldflags="-s -w" -o "$BIN/spark-operator" ./cmd/operator)
    printf '%s' "$stamp" >"$BIN/.spark-operator.version"
fi
