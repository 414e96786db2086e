"""A real single-node Kubernetes cluster on this machine, started and removed by the project.

    tools/cluster/up            start it; prints the kubeconfig path on stdout
    tools/cluster/down          remove it and everything it changed on the host
    tools/cluster/load-image X  import image archives (or local podman images) into containerd
    python3 tools/cluster/node.py snapshot   JSON of the host state `down` must restore

What runs (every binary from tools/cluster/install.sh or Debian's packages, as root):
containerd + runc with their own config, state and socket; the bridge CNI on the bridge
`sfbr0` (10.244.0.1/24, the node IP); embedded etcd on loopback; kube-apiserver, the
controller manager, the scheduler, the kubelet and kube-proxy (iptables) listening only on the
bridge address; CoreDNS, the local-path provisioner and metrics-server as pods.

All pod traffic stays on this machine: pods get routes only to the pod and service ranges (no
default route, no masquerade), CoreDNS forwards nothing, NodePorts open only on the bridge
address, and a guard chain drops any packet forwarded between the bridge and another interface.

Reads: STOREFLEET_TOOLS_DIR (binaries), STOREFLEET_CLUSTER_IMAGES (image archives),
STOREFLEET_CLUSTER_DIR (run state, default /tmp/storefleet-cluster),
STOREFLEET_CLUSTER_CONTAINERD_ROOT (containerd's image store, kept in the cache so imported
images survive `down`). Writes: the state folder (logs/ has every daemon's log), the host
network, iptables, sysctls and mounts, which `down` restores from what `up` recorded first.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import ipaddress
import json
import os
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

# addons.py is a sibling file: this script is run by path, not imported from a package.
sys.path.insert(0, str(Path(__file__).resolve().parent))
import addons

T = TypeVar("T")

BRIDGE = "sfbr0"
NODE_IP = "10.244.0.1"
POD_CIDR = "10.244.0.0/24"
SERVICE_CIDR = "10.96.0.0/16"
API_SERVICE_IP = "10.96.0.1"
DNS_IP = "10.96.0.10"
DOMAIN = "cluster.local"
NODE_NAME = "storefleet-node"
API_PORT = 6443
GUARD_CHAIN = "STOREFLEET-GUARD"
BASE_IMAGES = ("pause", "coredns", "local-path-provisioner", "metrics-server", "busybox")
KUBE_BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler",
                 "kubelet", "kube-proxy", "kubectl")
# Daemons in start order; `down` stops them in reverse.
DAEMONS = ("containerd", "etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler",
           "kubelet", "kube-proxy")
# Host settings the kubelet, kube-proxy and the bridge plugin change (recorded, then restored).
SYSCTLS = (
    "vm.overcommit_memory", "vm.panic_on_oom", "kernel.panic", "kernel.panic_on_oops",
    "kernel.keys.root_maxkeys", "kernel.keys.root_maxbytes",
    "net.ipv4.ip_forward", "net.ipv4.conf.all.forwarding", "net.ipv4.conf.default.forwarding",
    "net.ipv4.conf.all.route_localnet", "net.ipv6.conf.all.forwarding",
    "net.bridge.bridge-nf-call-iptables", "net.bridge.bridge-nf-call-ip6tables",
    "net.netfilter.nf_conntrack_max",
    "net.netfilter.nf_conntrack_tcp_timeout_established",
    "net.netfilter.nf_conntrack_tcp_timeout_close_wait",
)
# Host folders the kubelet or containerd create outside the state folder whatever they are told;
# `down` removes each one that did not exist before `up`.
HOST_PATHS = ("/var/log/containers", "/var/log/pods", "/var/lib/kubelet", "/run/containerd",
              "/var/lib/cni", "/etc/cni", "/run/netns", "/opt/containerd", "/etc/kubernetes",
              "/var/lib/containerd")
CGROUP_ROOT = Path("/sys/fs/cgroup")
OUR_CHAIN_PREFIXES = ("KUBE-", "STOREFLEET-")


class ClusterError(RuntimeError):
    """A step of `up` failed for good; the message says which and what to look at."""


class CommandFailed(RuntimeError):
    """A command exited non-zero; waits retry it until their deadline."""


def log(message: str) -> None:
    print(f"tools/cluster: {message}", file=sys.stderr, flush=True)


# --- locations -------------------------------------------------------------------------------

def tools_dir() -> Path:
    explicit = os.environ.get("STOREFLEET_TOOLS_DIR")
    if explicit:
        return Path(explicit)
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "storefleet" / "bin"


def images_dir() -> Path:
    explicit = os.environ.get("STOREFLEET_CLUSTER_IMAGES")
    return Path(explicit) if explicit else (tools_dir().parent / "cluster-images").resolve()


def state_dir() -> Path:
    return Path(os.environ.get("STOREFLEET_CLUSTER_DIR") or "/tmp/storefleet-cluster")


def containerd_root() -> Path:
    explicit = os.environ.get("STOREFLEET_CLUSTER_CONTAINERD_ROOT")
    return Path(explicit) if explicit else (tools_dir().parent / "cluster-containerd").resolve()


class Paths:
    """Every file of one run, under the state folder."""

    def __init__(self, state: Path) -> None:
        self.state = state
        self.logs = state / "logs"
        self.pki = state / "pki"
        self.processes = state / "processes.json"
        self.before = state / "host-before.json"
        self.containerd_state = state / "containerd"
        self.containerd_config = state / "containerd.toml"
        self.containerd_socket = state / "containerd.sock"
        self.cni_conf = state / "cni"
        self.cni_ipam = state / "cni-ipam"
        self.etcd = state / "etcd"
        self.kubelet_root = state / "kubelet"
        self.pod_logs = state / "pod-logs"
        self.local_path = state / "local-path"
        self.admin_kubeconfig = state / "admin.kubeconfig"


# --- small helpers ---------------------------------------------------------------------------

def run(argv: list[str], check: bool = True, input_bytes: bytes | None = None,
        timeout: float = 120.0) -> subprocess.CompletedProcess[bytes]:
    result = subprocess.run(argv, input=input_bytes, capture_output=True, timeout=timeout,
                            check=False)
    if check and result.returncode != 0:
        raise CommandFailed(f"{shlex.join(argv)} failed ({result.returncode}): "
                           f"{result.stderr.decode(errors='replace').strip()[-2000:]}")
    return result


def quiet(argv: list[str], timeout: float = 60.0) -> bool:
    """Run a clean-up command whose failure only means "nothing to clean"."""
    try:
        return run(argv, check=False, timeout=timeout).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def wait_for(what: str, check: Callable[[], T | None], timeout: float,
             interval: float = 0.5) -> T:
    """Poll `check` until it returns something truthy; raise ClusterError at the deadline."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            result = check()
            if result:
                return result
        except ClusterError:
            raise
        except Exception as exc:  # kept for the failure message
            last_error = exc
        if time.monotonic() > deadline:
            detail = f" (last error: {last_error})" if last_error else ""
            raise ClusterError(f"timed out after {timeout:.0f} s waiting for {what}{detail}")
        time.sleep(interval)


def read_sysctl(name: str) -> str | None:
    try:
        return Path("/proc/sys", *name.split(".")).read_text().strip()
    except OSError:
        return None


def write_sysctl(name: str, value: str) -> None:
    with contextlib.suppress(OSError):
        Path("/proc/sys", *name.split(".")).write_text(value)


def process_start_time(pid: int) -> int | None:
    """The kernel's start time of `pid` (field 22 of /proc/PID/stat): a PID plus this number
    names one process even after the PID is reused."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] in ("Z", "X"):  # a zombie has exited: only its parent's wait is missing
        return None
    return int(fields[19])


def pid_cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def all_pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def stop_pids(pids: Iterable[int], what: str, timeout: float = 20.0) -> None:
    """SIGTERM each process, wait up to `timeout`, then SIGKILL the ones still there."""
    pending = {pid: process_start_time(pid) for pid in pids if pid != os.getpid()}
    pending = {pid: start for pid, start in pending.items() if start is not None}
    if not pending:
        return
    for pid in pending:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        pending = {pid: start for pid, start in pending.items()
                   if process_start_time(pid) == start}
        time.sleep(0.1)
    for pid, start in pending.items():
        if process_start_time(pid) == start:
            log(f"{what} (pid {pid}) ignored SIGTERM; killing it")
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    for pid in pending:  # reap our own children, if any
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)


# --- what the host looks like ----------------------------------------------------------------

def iptables_rules(family: str = "4") -> dict[str, list[str]]:
    """{table: ['-N CHAIN' / '-A CHAIN spec' lines]} without counters, or {} when absent."""
    save = "iptables-save" if family == "4" else "ip6tables-save"
    if shutil.which(save) is None:
        return {}
    try:
        text = run([save], check=False).stdout.decode(errors="replace")
    except (OSError, subprocess.TimeoutExpired):
        return {}
    tables: dict[str, list[str]] = {}
    table = ""
    for line in text.splitlines():
        if line.startswith("*"):
            table = line[1:]
            tables[table] = []
        elif line.startswith(":"):
            tables[table].append("-N " + line[1:].split()[0])
        elif line.startswith("-A "):
            tables[table].append(line)
    return tables


def nft_tables() -> list[str]:
    if shutil.which("nft") is None:
        return []
    result = run(["nft", "list", "tables"], check=False)
    return sorted(result.stdout.decode().splitlines())


def mount_points() -> list[str]:
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].encode().decode("unicode_escape")
        points.append(point)
    return points


# podman and buildah (the image builds, which may run meanwhile) mount their own containers here.
OTHER_RUNTIMES = ("/var/lib/containers/", "/run/containers/")


def cluster_mount_points() -> list[str]:
    return [p for p in mount_points() if not p.startswith(OTHER_RUNTIMES)]


def our_processes(paths: Paths) -> list[dict[str, Any]]:
    """Processes of a cluster: any whose command line names the state folder (every daemon
    of `up` and containerd's shims do), and any in the kubelet's pod cgroups."""
    marker = str(paths.state)
    found = {}
    for pid in all_pids():
        argv = pid_cmdline(pid)
        if argv and any(arg.endswith(marker) or marker + "/" in arg for arg in argv[1:]):
            found[pid] = argv
    for pid in pod_cgroup_pids():
        found.setdefault(pid, pid_cmdline(pid))
    return [{"pid": pid, "argv": argv} for pid, argv in sorted(found.items())]


def cgroup_hierarchies() -> list[Path]:
    if not CGROUP_ROOT.is_dir():
        return []
    hierarchies = []
    for child in sorted(CGROUP_ROOT.iterdir()):
        if (child / "cgroup.procs").exists():
            hierarchies.append(child)
    if (CGROUP_ROOT / "cgroup.procs").exists():  # cgroup v2 only
        hierarchies.append(CGROUP_ROOT)
    return hierarchies


def pod_cgroups() -> list[Path]:
    return [hierarchy / "kubepods" for hierarchy in cgroup_hierarchies()
            if (hierarchy / "kubepods").is_dir()]


def pod_cgroup_pids() -> set[int]:
    pids: set[int] = set()
    for top in pod_cgroups():
        for folder, _, files in os.walk(top):
            if "cgroup.procs" in files:
                with contextlib.suppress(OSError):
                    pids.update(int(x) for x in Path(folder, "cgroup.procs").read_text().split())
    return pids


def snapshot(paths: Paths) -> dict[str, Any]:
    """The host state a cluster changes: links, routes, iptables and nftables, mounts,
    sysctls, host folders, pod cgroups and cluster processes. `down` must bring each back."""
    links = run(["ip", "-o", "link", "show"]).stdout.decode().splitlines()
    routes = run(["ip", "route", "show", "table", "all"]).stdout.decode().splitlines()
    return {
        "links": sorted(line.split(":")[1].strip().split("@")[0] for line in links),
        "routes": sorted(routes),
        "iptables": iptables_rules("4"),
        "ip6tables": iptables_rules("6"),
        "nft_tables": nft_tables(),
        "mounts": sorted(cluster_mount_points()),
        "sysctls": {name: read_sysctl(name) for name in SYSCTLS},
        "host_paths": {path: os.path.lexists(path) for path in HOST_PATHS},
        "pod_cgroups": [str(path) for path in pod_cgroups()],
        "processes": our_processes(paths),
        "state_dir": paths.state.exists(),
    }


# --- records of a run ------------------------------------------------------------------------

def load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def record_process(paths: Paths, name: str, pid: int) -> None:
    records = load_json(paths.processes) or {}
    records[name] = {"pid": pid, "start": process_start_time(pid)}
    paths.processes.write_text(json.dumps(records, indent=1))


def recorded_alive(paths: Paths) -> dict[str, int]:
    records = load_json(paths.processes) or {}
    alive = {}
    for name, record in records.items():
        pid = record.get("pid")
        if pid and record.get("start") is not None and process_start_time(pid) == record["start"]:
            alive[name] = pid
    return alive


def start_daemon(paths: Paths, name: str, argv: list[str]) -> int:
    """Start `argv` detached (own session, so it outlives `up`), logging to logs/NAME.log."""
    paths.logs.mkdir(parents=True, exist_ok=True)
    with open(paths.logs / f"{name}.log", "ab") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, cwd=paths.state,
                                   start_new_session=True)
    record_process(paths, name, process.pid)
    return process.pid


def check_daemons(paths: Paths, names: Iterable[str]) -> None:
    alive = recorded_alive(paths)
    for name in names:
        if name not in alive:
            raise ClusterError(f"{name} exited; its log ends with:\n{log_tail(paths, name)}")


def log_tail(paths: Paths, name: str, lines: int = 25) -> str:
    try:
        text = (paths.logs / f"{name}.log").read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


# --- certificates and kubeconfigs ------------------------------------------------------------

def make_certificates(pki: Path) -> None:
    """A CA for everything, one for the aggregation layer's front proxy, and one ECDSA key
    and certificate per component (client certs name the user and groups RBAC knows)."""
    pki.mkdir(parents=True, exist_ok=True)
    os.chmod(pki, 0o700)
    days = "7"

    def key(name: str) -> str:
        path = str(pki / f"{name}.key")
        run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-out", path])
        return path

    for ca in ("ca", "front-proxy-ca"):
        run(["openssl", "req", "-x509", "-new", "-key", key(ca), "-out", str(pki / f"{ca}.crt"),
             "-days", days, "-subj", f"/CN=storefleet-{ca}"])
    leaves = [
        ("apiserver", "ca", "/CN=kube-apiserver", "serverAuth",
         f"IP:{NODE_IP},IP:{API_SERVICE_IP},IP:127.0.0.1,DNS:kubernetes,"
         f"DNS:kubernetes.default,DNS:kubernetes.default.svc,"
         f"DNS:kubernetes.default.svc.{DOMAIN},DNS:{NODE_NAME}"),
        ("apiserver-kubelet-client", "ca", "/O=system:masters/CN=kube-apiserver-kubelet-client",
         "clientAuth", None),
        ("admin", "ca", "/O=system:masters/CN=storefleet-admin", "clientAuth", None),
        ("controller-manager", "ca", "/CN=system:kube-controller-manager", "clientAuth", None),
        ("scheduler", "ca", "/CN=system:kube-scheduler", "clientAuth", None),
        ("kube-proxy", "ca", "/CN=system:kube-proxy", "clientAuth", None),
        ("kubelet-client", "ca", f"/O=system:nodes/CN=system:node:{NODE_NAME}", "clientAuth",
         None),
        ("kubelet-server", "ca", f"/CN={NODE_NAME}", "serverAuth",
         f"IP:{NODE_IP},DNS:{NODE_NAME}"),
        ("front-proxy-client", "front-proxy-ca", "/CN=front-proxy-client", "clientAuth", None),
    ]
    for name, ca, subject, usage, alt_names in leaves:
        extensions = ["-addext", f"extendedKeyUsage={usage}",
                      "-addext", "keyUsage=critical,digitalSignature,keyEncipherment"]
        if alt_names:
            extensions += ["-addext", f"subjectAltName={alt_names}"]
        csr = str(pki / f"{name}.csr")
        run(["openssl", "req", "-new", "-key", key(name), "-out", csr, "-subj", subject,
             *extensions])
        run(["openssl", "x509", "-req", "-in", csr, "-CA", str(pki / f"{ca}.crt"),
             "-CAkey", str(pki / f"{ca}.key"), "-CAcreateserial", "-days", days,
             "-copy_extensions", "copy", "-out", str(pki / f"{name}.crt")])
    key("sa")
    run(["openssl", "pkey", "-in", str(pki / "sa.key"), "-pubout", "-out", str(pki / "sa.pub")])


def write_kubeconfig(path: Path, pki: Path, user: str) -> Path:
    config = {
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "storefleet", "cluster": {
            "server": f"https://{NODE_IP}:{API_PORT}",
            "certificate-authority": str(pki / "ca.crt")}}],
        "users": [{"name": user, "user": {"client-certificate": str(pki / f"{user}.crt"),
                                          "client-key": str(pki / f"{user}.key")}}],
        "contexts": [{"name": "storefleet", "context": {"cluster": "storefleet",
                                                        "user": user}}],
        "current-context": "storefleet",
    }
    path.write_text(json.dumps(config, indent=1))
    path.chmod(0o600)
    return path


# --- network ---------------------------------------------------------------------------------

def check_address_ranges() -> None:
    """Refuse to start when a range the cluster uses is already routed on this host."""
    ours = [ipaddress.ip_network(POD_CIDR), ipaddress.ip_network(SERVICE_CIDR)]
    for line in run(["ip", "-o", "-4", "route", "show", "table", "all"]).stdout.decode() \
            .splitlines():
        first = line.split()[0]
        if first in {"default", "broadcast", "local", "unreachable", "blackhole", "prohibit"}:
            continue
        with contextlib.suppress(ValueError):
            network = ipaddress.ip_network(first, strict=False)
            for mine in ours:
                if network.overlaps(mine) and f"dev {BRIDGE}" not in line:
                    raise ClusterError(f"the host already routes {network} ({line.strip()}),"
                                       f" which overlaps the cluster's {mine}")


def make_bridge() -> None:
    run(["ip", "link", "add", BRIDGE, "type", "bridge"])
    run(["ip", "addr", "add", f"{NODE_IP}/24", "dev", BRIDGE])
    run(["ip", "link", "set", BRIDGE, "up"])
    # Host traffic to Service addresses goes into the bridge, where kube-proxy's DNAT sends it
    # to a pod; an address no Service owns dies there instead of leaving through eth0.
    run(["ip", "route", "add", SERVICE_CIDR, "dev", BRIDGE, "src", NODE_IP])
    write_sysctl(f"net.ipv4.conf.{BRIDGE}.forwarding", "1")
    for table_cmd in ("iptables", "ip6tables"):
        if shutil.which(table_cmd) is None:
            continue
        # In mangle, so that it is matched before any ACCEPT kube-proxy puts in filter.
        run([table_cmd, "-w", "-t", "mangle", "-N", GUARD_CHAIN])
        run([table_cmd, "-w", "-t", "mangle", "-A", GUARD_CHAIN, "-i", BRIDGE, "!", "-o", BRIDGE,
             "-m", "comment", "--comment", "storefleet: pods never leave the machine",
             "-j", "DROP"])
        run([table_cmd, "-w", "-t", "mangle", "-A", GUARD_CHAIN, "!", "-i", BRIDGE, "-o", BRIDGE,
             "-m", "comment", "--comment", "storefleet: nothing outside reaches the pods",
             "-j", "DROP"])
        run([table_cmd, "-w", "-t", "mangle", "-I", "FORWARD", "1", "-j", GUARD_CHAIN])


def cni_config(paths: Paths) -> None:
    paths.cni_conf.mkdir(parents=True, exist_ok=True)
    conflist = {
        "cniVersion": "1.0.0",
        "name": "storefleet",
        "plugins": [{
            "type": "bridge", "bridge": BRIDGE,
            "isGateway": True, "isDefaultGateway": False, "ipMasq": False,
            "hairpinMode": True,
            "ipam": {
                "type": "host-local",
                "ranges": [[{"subnet": POD_CIDR, "rangeStart": "10.244.0.10",
                             "gateway": NODE_IP}]],
                # Only the pod range (on-link) and the Service range: no default route.
                "routes": [{"dst": SERVICE_CIDR, "gw": NODE_IP}],
                "dataDir": str(paths.cni_ipam),
            },
        }],
    }
    (paths.cni_conf / "10-storefleet.conflist").write_text(json.dumps(conflist, indent=1))


# --- containerd ------------------------------------------------------------------------------

def containerd_config(paths: Paths) -> None:
    root = containerd_root()
    root.mkdir(parents=True, exist_ok=True)
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    paths.containerd_config.write_text(f"""\
version = 2
root = "{root}"
state = "{paths.containerd_state}"
oom_score = 0
disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper"]

[grpc]
  address = "{paths.containerd_socket}"

[ttrpc]
  address = "{paths.containerd_socket}.ttrpc"

[metrics]
  address = ""

[{cri}]
  sandbox_image = "{addons.image("pause")}"
  # No CAP_SYS_RESOURCE here: never lower an OOM score, never ask for AppArmor.
  restrict_oom_score_adj = true
  disable_apparmor = true
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"

[{cri}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"

[{cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[{cri}.containerd.runtimes.runc.options]
  SystemdCgroup = false

[{cri}.cni]
  bin_dir = "/usr/lib/cni"
  conf_dir = "{paths.cni_conf}"
  max_conf_num = 1
""")


def ctr(paths: Paths, *args: str) -> list[str]:
    return ["ctr", "--address", str(paths.containerd_socket), "--namespace", "k8s.io", *args]


def load_archives(paths: Paths, archives: Iterable[str]) -> None:
    """Import image archives (docker or OCI) or local podman images into the cluster."""
    if not paths.containerd_socket.exists():
        raise ClusterError(f"no cluster is running ({paths.containerd_socket} is missing):"
                           " run tools/cluster/up first")
    for item in archives:
        start = time.monotonic()
        if Path(item).is_file():
            if archive_loaded(paths, Path(item)):
                log(f"{item} is loaded already")
                continue
            output = run(ctr(paths, "images", "import", item), timeout=900).stdout.decode()
            remember_archive(Path(item), output)
        elif item.endswith((".tar", ".tar.gz", ".tgz")) or item.startswith(("/", "./", "../")):
            raise ClusterError(f"{item}: no such archive file")
        else:
            if shutil.which("podman") is None:
                raise ClusterError(f"{item} is no file, and podman is missing to export it")
            saved = subprocess.Popen(["podman", "image", "save", "--format", "docker-archive",
                                      item], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            imported = subprocess.run(ctr(paths, "images", "import", "-"), stdin=saved.stdout,
                                      capture_output=True, timeout=900, check=False)
            assert saved.stdout is not None
            saved.stdout.close()
            podman_error = saved.stderr.read().decode(errors="replace") if saved.stderr else ""
            if saved.wait() != 0 or imported.returncode != 0:
                raise ClusterError(f"loading {item} failed: {podman_error.strip()} "
                                   f"{imported.stderr.decode(errors='replace').strip()}")
        log(f"loaded {item} in {time.monotonic() - start:.1f} s")


# containerd's image store outlives `down`: an archive imported before, unchanged since and
# whose images are still there, is not imported again (coredns alone takes ~10 s).
def _archive_marker(archive: Path) -> Path:
    key = hashlib.sha256(str(archive.resolve()).encode()).hexdigest()[:16]
    return containerd_root() / "storefleet-imported" / key


def _archive_identity(archive: Path) -> str:
    stat = archive.stat()
    return f"{archive.resolve()} {stat.st_size} {stat.st_mtime_ns}"


def remember_archive(archive: Path, import_output: str) -> None:
    """Record the references `ctr images import` reported ("unpacking REF (sha256:...)")."""
    refs = [line.split()[1] for line in import_output.splitlines()
            if line.startswith("unpacking ") and len(line.split()) > 1]
    marker = _archive_marker(archive)
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps({"archive": _archive_identity(archive), "refs": refs}))


def archive_loaded(paths: Paths, archive: Path) -> bool:
    record = load_json(_archive_marker(archive))
    if not record or record.get("archive") != _archive_identity(archive) or not record["refs"]:
        return False
    present = set(run(ctr(paths, "images", "list", "--quiet")).stdout.decode().split())
    return all(ref in present for ref in record["refs"])


# --- kubectl ---------------------------------------------------------------------------------

def kubectl(paths: Paths, *args: str, input_text: str | None = None, check: bool = True,
            timeout: float = 60.0) -> str:
    argv = [str(tools_dir() / "kubectl"), f"--kubeconfig={paths.admin_kubeconfig}",
            "--request-timeout=20s", *args]
    result = run(argv, check=check, timeout=timeout,
                 input_bytes=input_text.encode() if input_text is not None else None)
    return result.stdout.decode()


def kubectl_json(paths: Paths, *args: str) -> Any:
    return json.loads(kubectl(paths, *args, "-o", "json"))


def dns_query(server: str, name: str, timeout: float = 2.0) -> list[str]:
    """A-record addresses for `name` from the DNS server at `server`:53 (one UDP query)."""
    query_id = os.getpid() & 0xFFFF
    question = b"".join(bytes([len(part)]) + part.encode() for part in name.split(".")) + b"\0"
    packet = struct.pack(">HHHHHH", query_id, 0x0100, 1, 0, 0, 0) + question + b"\0\1\0\1"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(packet, (server, 53))
        reply = sock.recv(1500)
    answer_id, flags, _, answers = struct.unpack(">HHHH", reply[:8])
    if answer_id != query_id or flags & 0x000F:
        return []
    offset = 12 + len(question) + 4
    addresses = []
    for _ in range(answers):
        while reply[offset] not in (0,) and reply[offset] & 0xC0 != 0xC0:
            offset += reply[offset] + 1
        offset += 2 if reply[offset] & 0xC0 == 0xC0 else 1
        rtype, _, _, length = struct.unpack(">HHIH", reply[offset:offset + 10])
        offset += 10
        if rtype == 1 and length == 4:
            addresses.append(socket.inet_ntoa(reply[offset:offset + 4]))
        offset += length
    return addresses


# --- up --------------------------------------------------------------------------------------

def require_root() -> None:
    if os.geteuid() != 0:
        raise ClusterError("the test cluster needs root (it runs containerd, a bridge and"
                           " iptables rules)")


def check_prerequisites() -> None:
    missing = [name for name in KUBE_BINARIES if not os.access(tools_dir() / name, os.X_OK)]
    missing += [f"{images_dir()}/{name}.tar" for name in BASE_IMAGES
                if not (images_dir() / f"{name}.tar").is_file()]
    if missing:
        raise ClusterError(f"missing {', '.join(missing)}: run tools/cluster/install.sh")
    programs = ["containerd", "containerd-shim-runc-v2", "runc", "ctr", "iptables", "ip",
                "openssl", "conntrack"]
    absent = [name for name in programs if shutil.which(name) is None]
    if not Path("/usr/lib/cni/bridge").exists():
        absent.append("/usr/lib/cni/bridge")
    if absent:
        raise ClusterError(f"missing {', '.join(absent)}: run"
                           " scripts/install-cluster-packages.sh")


def record_host(paths: Paths) -> None:
    """What `down` restores: sysctls, which host folders existed, the iptables rules."""
    before = {
        "sysctls": {name: read_sysctl(name) for name in SYSCTLS},
        "host_paths": {path: os.path.lexists(path) for path in HOST_PATHS},
        "pod_cgroups": [str(path) for path in pod_cgroups()],
        "iptables": iptables_rules("4"),
        "ip6tables": iptables_rules("6"),
        "nft_tables": nft_tables(),
        "shim_sockets": sorted(os.listdir("/run/containerd/s"))
        if os.path.isdir("/run/containerd/s") else [],
    }
    paths.before.write_text(json.dumps(before, indent=1))


def start_control_plane(paths: Paths) -> None:
    tools = tools_dir()
    pki = paths.pki
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        etcd_port = probe.getsockname()[1]
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        etcd_peer_port = probe.getsockname()[1]
    start_daemon(paths, "etcd", [
        str(tools / "etcd"), f"--data-dir={paths.etcd}",
        f"--listen-client-urls=http://127.0.0.1:{etcd_port}",
        f"--listen-peer-urls=http://127.0.0.1:{etcd_peer_port}",
    ])

    def etcd_healthy() -> bool:
        check_daemons(paths, ["etcd"])
        with socket.create_connection(("127.0.0.1", etcd_port), timeout=1):
            return True

    wait_for("etcd", etcd_healthy, 60)
    start_daemon(paths, "kube-apiserver", [
        str(tools / "kube-apiserver"),
        f"--advertise-address={NODE_IP}", f"--bind-address={NODE_IP}",
        f"--secure-port={API_PORT}",
        f"--etcd-servers=http://127.0.0.1:{etcd_port}",
        f"--cert-dir={paths.state / 'apiserver'}",
        f"--client-ca-file={pki / 'ca.crt'}",
        f"--tls-cert-file={pki / 'apiserver.crt'}",
        f"--tls-private-key-file={pki / 'apiserver.key'}",
        f"--kubelet-client-certificate={pki / 'apiserver-kubelet-client.crt'}",
        f"--kubelet-client-key={pki / 'apiserver-kubelet-client.key'}",
        f"--kubelet-certificate-authority={pki / 'ca.crt'}",
        # The node's hostname resolves to 127.0.0.1 here; its InternalIP is the bridge address.
        "--kubelet-preferred-address-types=InternalIP",
        "--authorization-mode=Node,RBAC",
        "--enable-admission-plugins=NodeRestriction",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        f"--service-account-issuer=https://kubernetes.default.svc.{DOMAIN}",
        f"--service-account-key-file={pki / 'sa.pub'}",
        f"--service-account-signing-key-file={pki / 'sa.key'}",
        f"--api-audiences=https://kubernetes.default.svc.{DOMAIN}",
        # The aggregation layer, for metrics-server's metrics.k8s.io.
        f"--requestheader-client-ca-file={pki / 'front-proxy-ca.crt'}",
        "--requestheader-allowed-names=front-proxy-client",
        "--requestheader-extra-headers-prefix=X-Remote-Extra-",
        "--requestheader-group-headers=X-Remote-Group",
        "--requestheader-username-headers=X-Remote-User",
        f"--proxy-client-cert-file={pki / 'front-proxy-client.crt'}",
        f"--proxy-client-key-file={pki / 'front-proxy-client.key'}",
        "--enable-aggregator-routing=true",
        "--allow-privileged=true",
        "--profiling=false",
        "--v=1",
    ])

    def apiserver_ready() -> bool:
        check_daemons(paths, ["etcd", "kube-apiserver"])
        return kubectl(paths, "get", "--raw", "/readyz", check=False).strip() == "ok"

    wait_for("kube-apiserver /readyz", apiserver_ready, 90)
    for name, user in (("kube-controller-manager", "controller-manager"),
                       ("kube-scheduler", "scheduler"), ("kube-proxy", "kube-proxy"),
                       ("kubelet", "kubelet-client")):
        write_kubeconfig(paths.state / f"{name}.kubeconfig", pki, user)
    cm_config = paths.state / "kube-controller-manager.kubeconfig"
    start_daemon(paths, "kube-controller-manager", [
        str(tools / "kube-controller-manager"),
        f"--kubeconfig={cm_config}", f"--authentication-kubeconfig={cm_config}",
        f"--authorization-kubeconfig={cm_config}",
        f"--bind-address={NODE_IP}",
        "--leader-elect=false",
        "--use-service-account-credentials=true",
        # Without these, projected token volumes lack kube-root-ca.crt and tokens go unsigned.
        f"--root-ca-file={pki / 'ca.crt'}",
        f"--service-account-private-key-file={pki / 'sa.key'}",
        f"--cluster-signing-cert-file={pki / 'ca.crt'}",
        f"--cluster-signing-key-file={pki / 'ca.key'}",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        "--allocate-node-cidrs=false",
        "--profiling=false",
        "--v=1",
    ])
    sched_config = paths.state / "kube-scheduler.kubeconfig"
    start_daemon(paths, "kube-scheduler", [
        str(tools / "kube-scheduler"),
        f"--kubeconfig={sched_config}", f"--authentication-kubeconfig={sched_config}",
        f"--authorization-kubeconfig={sched_config}",
        f"--bind-address={NODE_IP}",
        "--leader-elect=false",
        "--profiling=false",
        "--v=1",
    ])


def start_node(paths: Paths) -> None:
    tools = tools_dir()
    pki = paths.pki
    kubelet_config = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
        "address": NODE_IP, "port": 10250, "readOnlyPort": 0,
        "healthzBindAddress": NODE_IP, "healthzPort": 10248,
        "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": True},
                           "x509": {"clientCAFile": str(pki / "ca.crt")}},
        "authorization": {"mode": "Webhook"},
        "tlsCertFile": str(pki / "kubelet-server.crt"),
        "tlsPrivateKeyFile": str(pki / "kubelet-server.key"),
        # cgroup v1 hosts: kubelet >= 1.35 refuses them unless told.
        "failCgroupV1": False,
        "cgroupDriver": "cgroupfs",
        # No CAP_SYS_RESOURCE: the kubelet must not try to lower its own OOM score.
        "oomScoreAdj": 0,
        "containerRuntimeEndpoint": f"unix://{paths.containerd_socket}",
        "clusterDNS": [DNS_IP], "clusterDomain": DOMAIN,
        # Pods never inherit the host's resolver (which is off this machine).
        "resolvConf": "",
        "podLogsDir": str(paths.pod_logs),
        "failSwapOn": False,
        "serializeImagePulls": False,
        "evictionHard": {"memory.available": "100Mi", "nodefs.available": "2%",
                         "imagefs.available": "2%", "nodefs.inodesFree": "2%"},
        # Locally built images cannot be pulled back: never collect them.
        "imageGCHighThresholdPercent": 100, "imageGCLowThresholdPercent": 99,
        "maxPods": 110,
        "rotateCertificates": False, "serverTLSBootstrap": False,
    }
    (paths.state / "kubelet.json").write_text(json.dumps(kubelet_config, indent=1))
    start_daemon(paths, "kubelet", [
        str(tools / "kubelet"),
        f"--config={paths.state / 'kubelet.json'}",
        f"--kubeconfig={paths.state / 'kubelet.kubeconfig'}",
        f"--root-dir={paths.kubelet_root}",
        f"--cert-dir={paths.kubelet_root / 'pki'}",
        f"--hostname-override={NODE_NAME}",
        f"--node-ip={NODE_IP}",
        "--v=1",
    ])
    proxy_config = {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1", "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": str(paths.state / "kube-proxy.kubeconfig")},
        "hostnameOverride": NODE_NAME,
        "mode": "iptables",
        "clusterCIDR": POD_CIDR,
        "healthzBindAddress": f"{NODE_IP}:10256",
        "metricsBindAddress": f"{NODE_IP}:10249",
        # NodePorts only on the bridge address, never on the host's other interfaces.
        "nodePortAddresses": [f"{NODE_IP}/32"],
        "iptables": {"localhostNodePorts": False},
        # Zero means "leave the host's conntrack settings alone".
        "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s",
                      "tcpCloseWaitTimeout": "0s"},
        "oomScoreAdj": 0,
    }
    (paths.state / "kube-proxy.json").write_text(json.dumps(proxy_config, indent=1))
    start_daemon(paths, "kube-proxy", [
        str(tools / "kube-proxy"), f"--config={paths.state / 'kube-proxy.json'}", "--v=1"])


def node_ready(paths: Paths) -> bool:
    check_daemons(paths, DAEMONS)
    node = kubectl_json(paths, "get", "node", NODE_NAME)
    return any(c["type"] == "Ready" and c["status"] == "True"
               for c in node["status"].get("conditions", []))


CHECK_NAMESPACE = "storefleet-node-check"


def storage_check() -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """A namespace with a PVC of the default class, and a busybox pod that writes to it."""
    setup = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": CHECK_NAMESPACE}},
        {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
         "metadata": {"name": "check", "namespace": CHECK_NAMESPACE},
         "spec": {"accessModes": ["ReadWriteOnce"],
                  "resources": {"requests": {"storage": "16Mi"}}}},
    ]
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "check", "namespace": CHECK_NAMESPACE},
           "spec": {"restartPolicy": "Never",
                    "containers": [{"name": "write", "image": addons.image("busybox"),
                                    "imagePullPolicy": "Never",
                                    "command": ["sh", "-c", "echo ok > /data/ok && cat /data/ok"],
                                    "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
                    "volumes": [{"name": "data",
                                 "persistentVolumeClaim": {"claimName": "check"}}]}}
    return setup, pod


def up(paths: Paths, timeout: float) -> Path:
    """Start the cluster; return the admin kubeconfig. Raises ClusterError on any failure
    (the state stays for inspection: `down` removes it)."""
    require_root()
    check_prerequisites()
    if recorded_alive(paths):
        raise ClusterError(f"a cluster is already running (state {paths.state}):"
                           " run tools/cluster/down first")
    if paths.state.exists() or BRIDGE in snapshot_links():
        log(f"removing what an earlier run left ({paths.state}, bridge {BRIDGE})")
        down(paths)
    check_address_ranges()
    paths.state.mkdir(parents=True)
    paths.logs.mkdir()
    record_host(paths)
    started = time.monotonic()
    steps: dict[str, float] = {}

    def step(name: str) -> None:
        steps[name] = round(time.monotonic() - started, 1)
        log(f"{name} ({steps[name]} s)")

    make_bridge()
    make_certificates(paths.pki)
    write_kubeconfig(paths.admin_kubeconfig, paths.pki, "admin")
    cni_config(paths)
    containerd_config(paths)
    step("bridge, certificates and configuration ready")
    start_daemon(paths, "containerd", ["containerd", f"--config={paths.containerd_config}"])

    def containerd_ready() -> bool:
        check_daemons(paths, ["containerd"])
        return run(ctr(paths, "version"), check=False).returncode == 0

    wait_for("containerd", containerd_ready, 60)
    load_archives(paths, [str(images_dir() / f"{name}.tar") for name in BASE_IMAGES])
    step("containerd running with the base images")
    start_control_plane(paths)
    step("control plane ready")
    start_node(paths)
    wait_for(f"node {NODE_NAME} Ready", lambda: node_ready(paths), timeout)
    step("node Ready")
    manifest = {"apiVersion": "v1", "kind": "List",
                "items": addons.all_addons(DNS_IP, str(paths.local_path))}
    kubectl(paths, "apply", "-f", "-", input_text=json.dumps(manifest))
    check_setup, check_pod = storage_check()
    kubectl(paths, "apply", "-f", "-", input_text=json.dumps(
        {"apiVersion": "v1", "kind": "List", "items": check_setup}))

    def dns_answers() -> bool:
        check_daemons(paths, DAEMONS)
        return dns_query(DNS_IP, f"kubernetes.default.svc.{DOMAIN}") == [API_SERVICE_IP]

    wait_for("CoreDNS to answer through its Service", dns_answers, timeout)
    step("CoreDNS answers")
    # A pod is refused until the controller manager made its namespace's default account.
    wait_for(f"the default service account of {CHECK_NAMESPACE}", lambda: kubectl(
        paths, "-n", CHECK_NAMESPACE, "get", "serviceaccount", "default"), 60)
    kubectl(paths, "apply", "-f", "-", input_text=json.dumps(check_pod))

    def claim_written() -> bool:
        check_daemons(paths, DAEMONS)
        claim = kubectl_json(paths, "-n", CHECK_NAMESPACE, "get", "pvc", "check")
        pod = kubectl_json(paths, "-n", CHECK_NAMESPACE, "get", "pod", "check")
        if pod["status"].get("phase") == "Failed":
            raise ClusterError("the storage check pod failed: "
                               + kubectl(paths, "-n", CHECK_NAMESPACE, "logs", "check",
                                         check=False))
        return claim["status"].get("phase") == "Bound" \
            and pod["status"].get("phase") == "Succeeded"

    wait_for("a local-path PVC to bind and be written", claim_written, timeout)
    kubectl(paths, "delete", "namespace", CHECK_NAMESPACE, "--wait=false")
    step("PVC bound and written")

    def metrics_ready() -> bool:
        check_daemons(paths, DAEMONS)
        raw = kubectl(paths, "get", "--raw",
                      f"/apis/metrics.k8s.io/v1beta1/nodes/{NODE_NAME}", check=False)
        return bool(raw) and "usage" in json.loads(raw)

    wait_for("metrics-server to report the node", metrics_ready, timeout)
    step("metrics available")
    (paths.state / "up-steps.json").write_text(json.dumps(steps, indent=1))
    return paths.admin_kubeconfig


def snapshot_links() -> list[str]:
    text = run(["ip", "-o", "link", "show"]).stdout.decode()
    return [line.split(":")[1].strip().split("@")[0] for line in text.splitlines()]


# --- down ------------------------------------------------------------------------------------

def delete_workloads(paths: Paths, timeout: float = 90.0) -> None:
    """Delete every pod through the API while the kubelet still runs, so that the CNI plugin
    removes each pod's veth and address; controllers are stopped first so none comes back."""
    alive = recorded_alive(paths)
    if not {"kube-apiserver", "kubelet", "containerd"} <= alive.keys():
        return
    for name in ("kube-controller-manager", "kube-scheduler"):
        if name in alive:
            stop_pids([alive[name]], name)
    if kubectl(paths, "get", "--raw", "/readyz", check=False).strip() != "ok":
        return
    kubectl(paths, "delete", "pods", "--all", "--all-namespaces", "--grace-period=1",
            "--wait=false", check=False)

    def no_pods_left() -> bool:
        pods = kubectl_json(paths, "get", "pods", "--all-namespaces")["items"]
        return not pods and not bridge_ports()

    try:
        wait_for("every pod to be deleted", no_pods_left, timeout, interval=1.0)
    except ClusterError as exc:
        log(f"{exc}; removing what is left by force")


def bridge_ports() -> list[str]:
    text = run(["ip", "-o", "link", "show", "master", BRIDGE], check=False).stdout.decode()
    return [line.split(":")[1].strip().split("@")[0] for line in text.splitlines()]


def remove_containers(paths: Paths) -> None:
    """Kill and delete what containerd still runs (after a failed or interrupted run)."""
    if not paths.containerd_socket.exists() or "containerd" not in recorded_alive(paths):
        return
    listed = run(ctr(paths, "containers", "list", "--quiet"), check=False).stdout.decode()
    for container in listed.split():
        quiet(ctr(paths, "tasks", "kill", "--signal", "SIGKILL", container))
        quiet(ctr(paths, "tasks", "delete", "--force", container))
        quiet(ctr(paths, "containers", "delete", container))


def kill_pod_processes() -> None:
    for _ in range(20):
        pids = pod_cgroup_pids()
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)


def unmount_under(prefixes: Iterable[str]) -> None:
    prefixes = [p.rstrip("/") + "/" for p in prefixes]
    for _ in range(3):
        points = [p for p in mount_points() if any((p + "/").startswith(x) for x in prefixes)]
        if not points:
            return
        for point in sorted(set(points), key=lambda p: p.count("/"), reverse=True):
            if not quiet(["umount", point]):
                quiet(["umount", "-l", point])


def remove_iptables(before: dict[str, Any]) -> None:
    """Delete every rule added since `up` that belongs to the cluster, then its chains."""
    for family, command in (("4", "iptables"), ("6", "ip6tables")):
        if shutil.which(command) is None:
            continue
        old = before.get("iptables" if family == "4" else "ip6tables") or {}
        now = iptables_rules(family)
        for table, lines in now.items():
            kept = set(old.get(table, []))
            ours = []
            for line in lines:
                if line in kept or not line.startswith("-A "):
                    continue
                parts = shlex.split(line)
                chain = parts[1]
                target = parts[parts.index("-j") + 1] if "-j" in parts else ""
                if (chain.startswith(OUR_CHAIN_PREFIXES) or target.startswith(OUR_CHAIN_PREFIXES)
                        or BRIDGE in parts or POD_CIDR in parts or SERVICE_CIDR in parts):
                    ours.append(parts)
            for parts in ours:
                if not parts[1].startswith(OUR_CHAIN_PREFIXES):
                    quiet([command, "-w", "-t", table, "-D", *parts[1:]])
            chains = [line.split()[1] for line in lines if line.startswith("-N ")
                      and line not in kept and line.split()[1].startswith(OUR_CHAIN_PREFIXES)]
            for chain in chains:
                quiet([command, "-w", "-t", table, "-F", chain])
            for chain in chains:
                quiet([command, "-w", "-t", table, "-X", chain])
        # iptables-nft makes a table on first use; one the host did not have and that is now
        # empty goes too.
        for table, lines in iptables_rules(family).items():
            if table not in old and not any(line.startswith("-A ") for line in lines) \
                    and shutil.which("nft"):
                quiet(["nft", "delete", "table", "ip" if family == "4" else "ip6", table])
    old_tables = set(before.get("nft_tables") or [])
    for table in nft_tables():
        if table not in old_tables and table.split()[-1] in {"kube-proxy", "kubelet"}:
            quiet(["nft", "delete", *table.split()])


def remove_cgroups(before: dict[str, Any]) -> None:
    kept = set(before.get("pod_cgroups") or [])
    for top in pod_cgroups():
        if str(top) in kept:
            continue
        folders = [Path(folder) for folder, _, _ in os.walk(top)]
        for folder in sorted(folders, key=lambda p: len(p.parts), reverse=True):
            with contextlib.suppress(OSError):
                folder.rmdir()


def down(paths: Paths) -> None:
    """Remove the cluster and everything it changed. Safe after a failed or partial `up`, and
    when nothing runs at all (then it only checks)."""
    require_root()
    before = load_json(paths.before) or {}
    delete_workloads(paths)
    alive = recorded_alive(paths)
    for name in ("kubelet", "kube-proxy", "kube-scheduler", "kube-controller-manager"):
        if name in alive:
            stop_pids([alive[name]], name)
    if (tools_dir() / "kube-proxy").exists():
        quiet([str(tools_dir() / "kube-proxy"), "--cleanup", "--v=0"])
    remove_containers(paths)
    kill_pod_processes()
    alive = recorded_alive(paths)
    for name in ("containerd", "kube-apiserver", "etcd"):
        if name in alive:
            stop_pids([alive[name]], name)
    # Shims, and anything else still naming the state folder (a run whose records were lost).
    leftovers = [p["pid"] for p in our_processes(paths)]
    if leftovers:
        stop_pids(leftovers, "leftover cluster process", timeout=10)
    kill_pod_processes()
    unmount_under([str(paths.state), str(containerd_root()), "/run/containerd", "/run/netns",
                   "/var/lib/kubelet"])
    for port in bridge_ports():
        quiet(["ip", "link", "delete", port])
    quiet(["ip", "link", "delete", BRIDGE])
    remove_iptables(before)
    for direction in ("--orig-src", "--orig-dst"):
        for cidr in (POD_CIDR, SERVICE_CIDR):
            quiet(["conntrack", "-D", direction, cidr])
    remove_cgroups(before)
    existed = before.get("host_paths") or {}
    for path in HOST_PATHS:
        if existed.get(path) is False and os.path.lexists(path):
            if path == "/run/netns":  # shared with other runtimes: only when left empty
                with contextlib.suppress(OSError):
                    os.rmdir(path)
            else:
                shutil.rmtree(path, ignore_errors=True)
    shim_dir = Path("/run/containerd/s")
    if existed.get("/run/containerd") is not False and shim_dir.is_dir():
        for name in set(os.listdir(shim_dir)) - set(before.get("shim_sockets") or []):
            with contextlib.suppress(OSError):
                (shim_dir / name).unlink()
    for name, value in (before.get("sysctls") or {}).items():
        if value is not None and read_sysctl(name) != value:
            write_sysctl(name, value)
    if paths.state.exists():
        shutil.rmtree(paths.state, ignore_errors=True)


# --- command line ----------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tools/cluster/node.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    up_parser = commands.add_parser("up", help="start the cluster, print the kubeconfig path")
    up_parser.add_argument("--timeout", type=float, default=180.0,
                           help="seconds each readiness wait may take (default 180)")
    commands.add_parser("down", help="remove the cluster and restore the host")
    load = commands.add_parser("load-image", help="import image archives or podman images")
    load.add_argument("images", nargs="+", metavar="ARCHIVE_OR_IMAGE")
    commands.add_parser("snapshot", help="print the host state `down` restores, as JSON")
    commands.add_parser("kubeconfig", help="print the kubeconfig path of the running cluster")
    args = parser.parse_args(argv)
    paths = Paths(state_dir())
    try:
        if args.command == "up":
            started = time.monotonic()
            kubeconfig = up(paths, args.timeout)
            log(f"cluster up in {time.monotonic() - started:.1f} s;"
                f" export KUBECONFIG={kubeconfig}")
            print(kubeconfig)
        elif args.command == "down":
            started = time.monotonic()
            down(paths)
            log(f"cluster down in {time.monotonic() - started:.1f} s")
        elif args.command == "load-image":
            load_archives(paths, args.images)
        elif args.command == "snapshot":
            print(json.dumps(snapshot(paths), indent=1, sort_keys=True))
        elif args.command == "kubeconfig":
            if not paths.admin_kubeconfig.exists():
                raise ClusterError("no cluster is running: run tools/cluster/up")
            print(paths.admin_kubeconfig)
    except (ClusterError, CommandFailed) as exc:
        log(f"error: {exc}")
        if args.command == "up":
            log(f"logs are in {paths.logs}; run tools/cluster/down to clean up")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
