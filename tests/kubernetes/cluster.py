"""A real, tiny Kubernetes control plane for tests: etcd, kube-apiserver, kube-controller-manager.

The binaries come from tools/kube/install.sh (`make setup`) in the StoreFleet tools folder.
The API server uses certificates made here with openssl, authenticates an admin by client
certificate (group system:masters), and authorizes with RBAC, so permissions are real. The
controller manager runs only the garbage collector: deleting an owner really deletes its
dependents. There is no scheduler and no kubelet: pods never run, and tests play the kubelet's
or the Spark operator's part by writing status subresources.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def tools_dir() -> Path:
    explicit = os.environ.get("STOREFLEET_TOOLS_DIR")
    if explicit:
        return Path(explicit)
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "storefleet" / "bin"


def tool(name: str) -> str:
    path = tools_dir() / name
    if not os.access(path, os.X_OK):
        raise FileNotFoundError(
            f"{path} is missing: run `make setup` (tools/kube/install.sh builds kube-apiserver,"
            f" kube-controller-manager, etcd, kubectl, helm and kubeconform into {tools_dir()})"
        )
    return str(path)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(what: str, check: Callable[[], T | None], timeout: float = 60.0,
             interval: float = 0.2) -> T:
    """Poll `check` until it returns something truthy; fail naming `what` at the deadline."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            result = check()
            if result:
                return result
        except Exception as exc:  # kept for the failure message
            last_error = exc
        if time.monotonic() > deadline:
            detail = f" (last error: {last_error!r})" if last_error else ""
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}{detail}")
        time.sleep(interval)


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_certificates(folder: Path) -> None:
    """CA, API server serving cert (127.0.0.1/localhost), admin client cert, SA signing key."""
    folder.mkdir(parents=True, exist_ok=True)
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key",
             "-out", "ca.crt", "-days", "2", "-subj", "/CN=storefleet-test-ca", cwd=folder)
    for name, subject, extensions in (
        ("server", "/CN=kube-apiserver",
         "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes.default.svc"),
        ("admin", "/O=system:masters/CN=storefleet-test-admin", "extendedKeyUsage=clientAuth"),
    ):
        _openssl("req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key",
                 "-out", f"{name}.csr", "-subj", subject, "-addext", extensions, cwd=folder)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                 "-CAcreateserial", "-days", "2", "-copy_extensions", "copy",
                 "-out", f"{name}.crt", cwd=folder)
    _openssl("genrsa", "-out", "sa.key", "2048", cwd=folder)


def write_kubeconfig(path: Path, server: str, ca: Path, user: dict[str, str]) -> Path:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "test", "cluster": {"server": server,
                                                  "certificate-authority": str(ca)}}],
        "users": [{"name": "user", "user": user}],
        "contexts": [{"name": "test", "context": {"cluster": "test", "user": "user"}}],
        "current-context": "test",
    }
    path.write_text(json.dumps(config, indent=2))
    path.chmod(0o600)
    return path


@dataclass
class Process:
    name: str
    popen: subprocess.Popen
    log: Path

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 20.0) -> None:
        if self.popen.poll() is not None:
            return
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(10)


def start_process(name: str, argv: list[str], folder: Path,
                  env: dict[str, str] | None = None) -> Process:
    log = folder / f"{name}.log"
    with open(log, "ab") as out:
        popen = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL, env=env, cwd=folder)
    return Process(name, popen, log)


@dataclass
class Cluster:
    folder: Path
    server: str
    kubeconfig: Path
    processes: list[Process] = field(default_factory=list)

    @property
    def certs(self) -> Path:
        return self.folder / "pki"

    def ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.certs / "ca.crt"))
        context.load_cert_chain(self.certs / "admin.crt", self.certs / "admin.key")
        return context

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(self.server + path, context=self.ssl_context(),
                                        timeout=10) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode(errors="replace")

    def kubeconfig_for_token(self, name: str, token: str) -> Path:
        return write_kubeconfig(self.folder / f"{name}.kubeconfig", self.server,
                                self.certs / "ca.crt", {"token": token})

    def check_alive(self) -> None:
        for process in self.processes:
            if not process.alive():
                raise RuntimeError(f"{process.name} exited ({process.popen.returncode}):\n"
                                   f"{process.tail()}")

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()


def start_cluster(folder: Path, before_controllers: Callable[[Cluster], Any] | None = None,
                  timeout: float = 120.0) -> Cluster:
    """Start etcd and kube-apiserver, run `before_controllers` (e.g. install CRDs, so the
    garbage collector knows them from the start), then kube-controller-manager."""
    binaries = {name: tool(name) for name in ("etcd", "kube-apiserver",
                                              "kube-controller-manager")}
    if shutil.which("openssl") is None:
        raise FileNotFoundError("openssl is missing: run `make setup`")
    pki = folder / "pki"
    make_certificates(pki)
    etcd_port, etcd_peer, api_port = free_port(), free_port(), free_port()
    server = f"https://127.0.0.1:{api_port}"
    admin = write_kubeconfig(folder / "admin.kubeconfig", server, pki / "ca.crt", {
        "client-certificate": str(pki / "admin.crt"), "client-key": str(pki / "admin.key")})
    cluster = Cluster(folder=folder, server=server, kubeconfig=admin)
    try:
        etcd = start_process("etcd", [
            binaries["etcd"], "--data-dir", str(folder / "etcd-data"),
            "--listen-client-urls", f"http://127.0.0.1:{etcd_port}",
            "--listen-peer-urls", f"http://127.0.0.1:{etcd_peer}",
        ], folder)
        cluster.processes.append(etcd)

        def etcd_healthy() -> bool:
            cluster.check_alive()
            url = f"http://127.0.0.1:{etcd_port}/health"
            with urllib.request.urlopen(url, timeout=5) as response:
                return json.load(response).get("health") == "true"

        wait_for("etcd /health", etcd_healthy, timeout)
        apiserver = start_process("kube-apiserver", [
            binaries["kube-apiserver"],
            f"--etcd-servers=http://127.0.0.1:{etcd_port}",
            "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
            f"--secure-port={api_port}",
            f"--cert-dir={folder / 'apiserver-certs'}",
            f"--tls-cert-file={pki / 'server.crt'}",
            f"--tls-private-key-file={pki / 'server.key'}",
            f"--client-ca-file={pki / 'ca.crt'}",
            "--authorization-mode=RBAC",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={pki / 'sa.key'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            "--service-cluster-ip-range=10.96.0.0/16",
            "--api-audiences=https://kubernetes.default.svc.cluster.local",
            "--profiling=false",
            "--enable-priority-and-fairness=false",
            "--v=1",
        ], folder)
        cluster.processes.append(apiserver)

        def apiserver_ready() -> bool:
            cluster.check_alive()
            status, _ = cluster.get("/readyz")
            return status == 200

        wait_for("kube-apiserver /readyz", apiserver_ready, timeout)
        if before_controllers is not None:
            before_controllers(cluster)
        controllers = start_process("kube-controller-manager", [
            binaries["kube-controller-manager"],
            f"--kubeconfig={admin}",
            "--controllers=garbagecollector",
            "--leader-elect=false",
            "--use-service-account-credentials=false",
            "--secure-port=0",
            "--concurrent-gc-syncs=5",
            "--v=1",
        ], folder)
        cluster.processes.append(controllers)
        # The controller manager has no health port here: give it a moment to die if it will.
        with contextlib.suppress(subprocess.TimeoutExpired):
            controllers.popen.wait(2)
        cluster.check_alive()
        return cluster
    except BaseException:
        cluster.stop()
        raise
