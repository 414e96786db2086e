#!/usr/bin/env bash
# Build the local base images that stand in for the official ones no registry serves here:
#   base-debian  debootstrap --variant=minbase bookworm (+ the machine's CAs)   ~ debian:bookworm-slim
#   base-python  Debian python3.11 in a venv on PATH                             ~ python:3.11-slim
#   base-jre     OpenJDK 17 runtime                                              ~ eclipse-temurin:17-jre
#   base-jdk     OpenJDK 17 + Maven, CA in the Java truststore                   ~ maven:3.9-eclipse-temurin-17
#   base-spark   JRE 17 + python3 + pyspark 4.0.0 as SPARK_HOME, uid 185        ~ apache/spark:4.0.0-...-python3
#   base-golang  the machine's Go toolchain                                      ~ golang:1.2x
# Each is localhost/storefleet/base-<name>:local, labelled with the hash of its inputs (its
# Dockerfile, its parent's hash). A base whose hash matches is kept; else it is loaded from the
# archive ${XDG_CACHE_HOME:-~/.cache}/storefleet/images/bases/base-<name>.tar when that archive
# has the same hash; else built (and archived). The cache is never required.
# Usage: tools/images/bases.sh [debian|python|jre|jdk|spark|golang]...   (default: all)
# Runs as root (debootstrap, podman). Network: the Debian mirror, PyPI (pyspark).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_tools podman buildah
bases_cache="$images_cache/bases"
declare -A parent=([python]=debian [jre]=debian [jdk]=jre [spark]=jre [golang]=debian)
declare -A parent_arg=([python]=DEBIAN_IMAGE [jre]=DEBIAN_IMAGE [jdk]=JRE_IMAGE [spark]=JRE_IMAGE [golang]=DEBIAN_IMAGE)
declare -A done_hash=()

base_ref() { echo "$image_prefix/base-$1:local"; }

# base_inputs NAME -> the hash that decides whether base NAME must be rebuilt.
base_inputs() {
    local name="$1"
    {
        case "$name" in
            debian)
                sha256sum "$images_tools/debian-rootfs.sh"
                cat /usr/local/share/ca-certificates/*.crt 2>/dev/null || true
                echo "${DEBIAN_MIRROR:-}"
                ;;
            golang)
                echo "${done_hash[debian]}"
                sha256sum "$images_tools/bases/golang/Dockerfile"
                go version
                ;;
            *)
                echo "${done_hash[${parent[$name]}]}"
                hash_inputs "tools/images/bases/$name"
                ;;
        esac
    } | sha256sum | cut -d' ' -f1
}

ensure_base() {
    local name="$1" want ref archive start context old_id
    [[ -n "${done_hash[$name]:-}" ]] && return 0
    [[ "$name" == debian ]] || ensure_base "${parent[$name]}"
    want="$(base_inputs "$name")"
    ref="$(base_ref "$name")"
    archive="$bases_cache/base-$name.tar"
    if [[ "$(image_label "$ref")" == "$want" ]]; then
        log "base-$name up to date"
    elif [[ -f "$archive" && "$(cat "$archive.inputs" 2>/dev/null)" == "$want" ]] \
        && podman load -q -i "$archive" >&2 && [[ "$(image_label "$ref")" == "$want" ]]; then
        log "base-$name loaded from $archive"
    else
        start=$SECONDS
        old_id="$(podman image inspect --format '{{.Id}}' "$ref" 2>/dev/null || true)"
        log "building base-$name"
        if [[ "$name" == debian ]]; then
            "$images_tools/debian-rootfs.sh" "$want"
        else
            context="$images_tools/bases/$name"
            [[ "$name" == golang ]] && context="$(go env GOROOT)"
            buildah bud --pull-never --layers --network host --quiet \
                --label "$inputs_label=$want" \
                --build-arg "${parent_arg[$name]}=$(base_ref "${parent[$name]}")" \
                -f "$images_tools/bases/$name/Dockerfile" -t "$ref" "$context" >&2
        fi
        log "built base-$name in $((SECONDS - start)) s"
        if [[ -n "$old_id" && "$old_id" != "$(podman image inspect --format '{{.Id}}' "$ref")" ]]; then
            podman rmi "$old_id" >/dev/null 2>&1 || true
        fi
        mkdir -p "$bases_cache"
        rm -f "$archive.inputs"
        podman save -q --format docker-archive -o "$archive.partial" "$ref"
        mv "$archive.partial" "$archive"
        echo "$want" >"$archive.inputs"
    fi
    done_hash[$name]="$want"
}

names=("$@")
((${#names[@]})) || names=(debian python jre jdk spark golang)
for n in "${names[@]}"; do
    [[ "$n" == debian || -n "${parent[$n]:-}" ]] || die "unknown base '$n' (debian python jre jdk spark golang)"
    ensure_base "$n"
done
