#!/usr/bin/env bash
# Install the Debian packages the test cluster (tools/cluster) and the image builds need, only
# those missing: the container runtime (containerd, runc), the pod network (CNI plugins,
# iptables, conntrack), the image tools (buildah, podman, debootstrap), busybox-static for the
# local-path helper image, and a C compiler with a static libc for the pause binary.
# Reads nothing; writes system packages through apt-get (as root, or with sudo).
# Usage: scripts/install-cluster-packages.sh
set -euo pipefail

missing=()
command -v containerd >/dev/null || missing+=(containerd)
command -v runc >/dev/null || missing+=(runc)
[ -x /usr/lib/cni/bridge ] || missing+=(containernetworking-plugins)
command -v iptables >/dev/null || missing+=(iptables)
command -v conntrack >/dev/null || missing+=(conntrack)
# nft: `down` and its test check that no nftables table of kube-proxy is left.
command -v nft >/dev/null || missing+=(nftables)
command -v buildah >/dev/null || missing+=(buildah)
command -v podman >/dev/null || missing+=(podman)
command -v debootstrap >/dev/null || missing+=(debootstrap)
# busybox-static, not busybox: the helper image is FROM scratch, so the binary must be static.
dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'ok installed' \
  || missing+=(busybox-static)
command -v gcc >/dev/null || missing+=(gcc)
[ -f /usr/lib/x86_64-linux-gnu/libc.a ] || [ -n "$(find /usr/lib -name libc.a -print -quit)" ] \
  || missing+=(libc6-dev)

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  sudo="sudo"
fi
echo "installing Debian packages: ${missing[*]}"
# Other installs may hold the dpkg lock for a while: wait for it rather than fail.
$sudo apt-get -o DPkg::Lock::Timeout=600 update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
  --no-install-recommends "${missing[@]}"
# Debian starts containerd as a system service on install; the cluster runs its own instance
# with its own folders, so the system one is stopped and left disabled.
if command -v systemctl >/dev/null && systemctl is-active -q containerd 2>/dev/null; then
  $sudo systemctl disable --now containerd >/dev/null 2>&1 || true
fi
