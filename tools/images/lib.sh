# Shared settings of tools/images/*.sh (sourced, not run).
# Reads: XDG_CACHE_HOME, STOREFLEET_IMAGES_CACHE, DEBIAN_MIRROR. Writes nothing by itself.
images_tools="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_root="$(cd "$images_tools/../.." && pwd)"
export CONTAINERS_CONF="${CONTAINERS_CONF:-$images_tools/containers.conf}"
# Archives: <name>.tar (docker-archive of localhost/storefleet/<name>:dev, for
# `ctr -n k8s.io images import`) and bases/<base>.tar (the local base images).
images_cache="${STOREFLEET_IMAGES_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/storefleet/images}"
image_prefix="localhost/storefleet"
image_tag="dev"
# The label that records the hash of an image's inputs, so an unchanged image is not rebuilt.
inputs_label="io.storefleet.inputs"

log() { printf '[images %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "error: $*"; exit 1; }

need_tools() {
    local t missing=()
    for t in "$@"; do command -v "$t" >/dev/null 2>&1 || missing+=("$t"); done
    ((${#missing[@]} == 0)) || die "missing ${missing[*]}: apt-get install -y buildah podman debootstrap runc"
}

# image_label IMAGE -> the inputs hash recorded on IMAGE, empty when IMAGE is absent.
image_label() {
    podman image inspect --format "{{ index .Labels \"$inputs_label\" }}" "$1" 2>/dev/null || true
}

# hash_inputs PATH... -> one sha256 over the names and contents of the files under PATHs
# (relative to the repository root), skipping what .dockerignore skips for the build context.
hash_inputs() {
    (cd "$repo_root" && find "$@" -type f \
        -not -path '*/__pycache__/*' -not -path '*/.venv/*' -not -path '*/.storefleet/*' \
        -not -name '*.pyc' -print0 | LC_ALL=C sort -z | xargs -0 sha256sum) | sha256sum | cut -d' ' -f1
}
