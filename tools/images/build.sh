#!/usr/bin/env bash
# Build StoreFleet's images with buildah on a machine with no registry, from the same Dockerfiles
# a Docker user builds: each Dockerfile's base build arguments point at the local bases
# (tools/images/bases.sh). Images are tagged localhost/storefleet/<name>:dev.
#   project images: workloads operator dashboard spark spark-operator
#   test-cluster backing services: kafka postgresql redis (images/ci/)
# An image whose inputs (Dockerfile, context files, base image ids) hash to the value recorded in
# its label is not rebuilt. With --save, docker-archives are written for the node's
# `ctr -n k8s.io images import` (tools/images/save.sh).
# Usage: tools/images/build.sh [--save] [name...]       (default: every image)
# Prints one line per image: name, result (built|cached), seconds, size.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_tools podman buildah

all=(workloads operator dashboard spark spark-operator kafka postgresql redis)
python_src="pyproject.toml README.md workloads operator dashboard"
declare -A dockerfile=(
    [workloads]=images/workloads/Dockerfile [operator]=images/operator/Dockerfile
    [dashboard]=images/dashboard/Dockerfile [spark]=images/spark/Dockerfile
    [spark-operator]=images/spark-operator/Dockerfile [kafka]=images/ci/kafka/Dockerfile
    [postgresql]=images/ci/postgresql/Dockerfile [redis]=images/ci/redis/Dockerfile
)
# Files of the build context each Dockerfile COPYs (what decides a rebuild besides the bases).
declare -A inputs=(
    [workloads]="images/workloads $python_src" [operator]="images/operator $python_src"
    [dashboard]="images/dashboard $python_src" [spark]="images/spark tools/spark/pom.xml $python_src"
    [spark-operator]="images/spark-operator tools/spark-operator" [kafka]="images/ci/kafka tools/kafka/pom.xml"
    [postgresql]="images/ci/postgresql" [redis]="images/ci/redis"
)
# Build argument -> local base (localhost/storefleet/base-<base>:local).
declare -A base_args=(
    [workloads]="PYTHON_IMAGE=python" [operator]="PYTHON_IMAGE=python" [dashboard]="PYTHON_IMAGE=python"
    [spark]="MAVEN_IMAGE=jdk PYTHON_IMAGE=python SPARK_IMAGE=spark"
    [spark-operator]="GO_IMAGE=golang SPARK_IMAGE=spark"
    [kafka]="MAVEN_IMAGE=jdk JRE_IMAGE=jre" [postgresql]="DEBIAN_IMAGE=debian" [redis]="DEBIAN_IMAGE=debian"
)

save=0
names=()
for arg in "$@"; do
    case "$arg" in
        --save) save=1 ;;
        -h | --help) sed -n '2,13p' "$0"; exit 0 ;;
        *) [[ -n "${dockerfile[$arg]:-}" ]] || die "unknown image '$arg' (${all[*]})"; names+=("$arg") ;;
    esac
done
((${#names[@]})) || names=("${all[@]}")

needed_bases=()
for name in "${names[@]}"; do
    for pair in ${base_args[$name]}; do needed_bases+=("${pair#*=}"); done
done
"$images_tools/bases.sh" $(printf '%s\n' "${needed_bases[@]}" | sort -u)

summary=()
for name in "${names[@]}"; do
    ref="$image_prefix/$name:$image_tag"
    args=()
    ids=""
    for pair in ${base_args[$name]}; do
        base="$image_prefix/base-${pair#*=}:local"
        args+=(--build-arg "${pair%%=*}=$base")
        ids+="$(podman image inspect --format '{{.Id}}' "$base") "
    done
    # shellcheck disable=SC2086 # the inputs are a list of paths
    want="$(printf '%s\n%s\n' "$(hash_inputs ${inputs[$name]})" "$ids" | sha256sum | cut -d' ' -f1)"
    start=$SECONDS
    if [[ "$(image_label "$ref")" == "$want" ]]; then
        result=cached
    else
        log "building $ref (log: $images_cache/logs/$name.log)"
        old_id="$(podman image inspect --format '{{.Id}}' "$ref" 2>/dev/null || true)"
        volumes=()
        if [[ "$name" == spark-operator ]] && command -v go >/dev/null; then
            # The machine's Go module and build caches: modules are not downloaded twice and a
            # rebuild only compiles what changed. (A Docker build downloads them itself.)
            volumes=(-v "$(go env GOMODCACHE):/go/pkg/mod" -v "$(go env GOCACHE):/root/.cache/go-build")
        fi
        mkdir -p "$images_cache/logs"
        if ! buildah bud --pull-never --layers --network host \
            --label "$inputs_label=$want" "${args[@]}" "${volumes[@]}" \
            -f "$repo_root/${dockerfile[$name]}" -t "$ref" "$repo_root" >"$images_cache/logs/$name.log" 2>&1; then
            tail -n 40 "$images_cache/logs/$name.log" >&2
            die "building $ref failed (whole log: $images_cache/logs/$name.log)"
        fi
        # The replaced image is now untagged: drop it (kept if another image still uses it).
        if [[ -n "$old_id" && "$old_id" != "$(podman image inspect --format '{{.Id}}' "$ref")" ]]; then
            podman rmi "$old_id" >/dev/null 2>&1 || true
        fi
        result=built
    fi
    size="$(podman image inspect --format '{{.Size}}' "$ref")"
    summary+=("$(printf '%-16s %-7s %5d s %6d MB' "$name" "$result" $((SECONDS - start)) $((size / 1000000)))")
done
printf '%s\n' "${summary[@]}"
if ((save)); then
    "$images_tools/save.sh" "${names[@]}"
fi
