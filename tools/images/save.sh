#!/usr/bin/env bash
# Write docker-archives of localhost/storefleet/<name>:dev for the test node, which imports them
# with `ctr -n k8s.io images import <archive>`:
#   ${XDG_CACHE_HOME:-~/.cache}/storefleet/images/<name>.tar
#   ${XDG_CACHE_HOME:-~/.cache}/storefleet/images/<name>.tar.id   (the image id it holds)
# An archive whose .id matches the image is not written again (the loader may compare ids too).
# Usage: tools/images/save.sh [name...]   (default: every localhost/storefleet/*:dev image)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_tools podman
names=("$@")
if ((${#names[@]} == 0)); then
    mapfile -t names < <(podman images --format '{{.Repository}}:{{.Tag}}' \
        | sed -n "s|^$image_prefix/\([^:]*\):$image_tag\$|\1|p" | sort -u)
fi
mkdir -p "$images_cache"
for name in "${names[@]}"; do
    ref="$image_prefix/$name:$image_tag"
    id="$(podman image inspect --format '{{.Id}}' "$ref" 2>/dev/null)" || die "no image $ref: build it first"
    archive="$images_cache/$name.tar"
    if [[ -f "$archive" && "$(cat "$archive.id" 2>/dev/null)" == "$id" ]]; then
        log "$archive up to date"
        continue
    fi
    start=$SECONDS
    rm -f "$archive.id"
    podman save -q --format docker-archive -o "$archive.partial" "$ref"
    mv "$archive.partial" "$archive"
    echo "$id" >"$archive.id"
    log "saved $archive ($(du -h "$archive" | cut -f1), $((SECONDS - start)) s)"
done
