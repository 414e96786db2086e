#!/usr/bin/env bash
# Generates the kubeflow Spark operator's CRDs (SparkApplication, ScheduledSparkApplication,
# SparkConnect) from the Go API types of its module, with controller-gen, into the chart:
#   charts/storefleet/crds/sparkoperator.k8s.io_*.yaml   (committed; helm installs them)
# The same options as the upstream Makefile (`crd:generateEmbeddedObjectMeta=true`), run inside
# the module as downloaded, so its own go.mod (and replace directives) pick the Kubernetes API
# versions the schemas embed: the output equals upstream's config/crd/bases of that version.
#
# Usage: tools/spark-operator/gen-crds.sh           write the CRDs into the chart
#        tools/spark-operator/gen-crds.sh --check   exit 1 (with a diff) if the chart's differ
# Needs Go and the Go module proxy; controller-gen comes from install.sh (`make tools`), into
#   ${STOREFLEET_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/storefleet/bin}.
set -euo pipefail

# The Spark operator release the chart installs (values.yaml sparkOperator.image.tag matches;
# install.sh builds the same version).
SPARK_OPERATOR_MODULE="github.com/kubeflow/spark-operator/v2"
SPARK_OPERATOR_VERSION="v2.5.2"

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
CRDS="$ROOT/charts/storefleet/crds"
BIN="${STOREFLEET_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/storefleet/bin}"
MODE="${1:-write}"
log() { printf 'tools/spark-operator: %s\n' "$*" >&2; }

case "$MODE" in
    write | --check) ;;
    *) log "unknown argument '$MODE' (use --check)"; exit 2 ;;
esac

[[ -x "$BIN/controller-gen" ]] || "$HERE/install.sh"

# `go mod download` needs a module to run in; an empty one in a temporary folder will do.
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
printf 'module storefleet.invalid/gen\n\ngo 1.24\n' >"$work/go.mod"
module_dir="$(cd "$work" && GOFLAGS=-mod=mod go mod download -json \
    "$SPARK_OPERATOR_MODULE@$SPARK_OPERATOR_VERSION" \
    | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
[[ -d "$module_dir/api" ]] || { log "no api/ in $module_dir"; exit 1; }

mkdir -p "$work/out"
(cd "$module_dir" && GOFLAGS=-mod=mod "$BIN/controller-gen" crd:generateEmbeddedObjectMeta=true \
    paths=./api/... output:crd:dir="$work/out")

if [[ "$MODE" == --check ]]; then
    status=0
    for file in "$work"/out/*.yaml; do
        target="$CRDS/$(basename "$file")"
        if ! diff -q "$file" "$target" >/dev/null 2>&1; then
            log "$target differs from what $SPARK_OPERATOR_VERSION generates (run $0):"
            diff -u "$target" "$file" | head -40 >&2 || true
            status=1
        fi
    done
    for target in "$CRDS"/sparkoperator.k8s.io_*.yaml; do
        [[ -f "$work/out/$(basename "$target")" ]] || { log "stale: $target"; status=1; }
    done
    [[ $status == 0 ]] && log "CRDs up to date ($SPARK_OPERATOR_MODULE $SPARK_OPERATOR_VERSION)"
    exit $status
fi

rm -f "$CRDS"/sparkoperator.k8s.io_*.yaml
cp "$work"/out/*.yaml "$CRDS/"
log "wrote $(cd "$work/out" && ls | tr '\n' ' ')into $CRDS"
