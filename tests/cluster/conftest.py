"""Fixtures for the cluster tests: one real single-node Kubernetes per session (tools/cluster).

`node_cluster` records the host's state, runs `tools/cluster/up`, and ALWAYS runs
`tools/cluster/down` at the end of the session, also when a check (or `up` itself) fails.
Run with `make cluster-test` (root; it builds the tools first). Missing tools make the tests
fail with the command to run, never skip. Every module is marked `cluster`; `make test` leaves
them out (`-m "not cluster"` in pyproject.toml) until the platform's cluster test joins it.
test_teardown.py runs last: it takes the cluster down itself and checks what is left.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest

ROOT = Path(__file__).resolve().parents[2]
NODE = ROOT / "tools" / "cluster" / "node.py"
sys.path.insert(0, str(NODE.parent))
import node  # noqa: E402  (tools/cluster/node.py: its paths and names, not its logic)

T = TypeVar("T")


def wait_for(what: str, check: Callable[[], T | None], timeout: float = 120.0,
             interval: float = 0.5) -> T:
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


def node_command(*args: str, timeout: float = 900.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(NODE), *args], capture_output=True, text=True,
                          timeout=timeout, check=False)


def host_snapshot() -> dict[str, Any]:
    result = node_command("snapshot", timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@dataclass
class NodeCluster:
    """The running cluster: its kubeconfig, and the host as it was before and during it."""

    kubeconfig: Path
    before: dict[str, Any]
    during: dict[str, Any] = field(default_factory=dict)
    down_result: subprocess.CompletedProcess[str] | None = None

    def kubectl(self, *args: str, input_text: str | None = None, check: bool = True,
                timeout: float = 60.0) -> str:
        argv = [str(node.tools_dir() / "kubectl"), f"--kubeconfig={self.kubeconfig}", *args]
        result = subprocess.run(argv, input=input_text, capture_output=True, text=True,
                                timeout=timeout, check=False)
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {result.stderr}")
        return result.stdout

    def kubectl_json(self, *args: str) -> Any:
        return json.loads(self.kubectl(*args, "-o", "json"))

    def apply(self, *objects: dict[str, Any]) -> None:
        self.kubectl("apply", "-f", "-", input_text=json.dumps(
            {"apiVersion": "v1", "kind": "List", "items": list(objects)}))

    def down(self) -> subprocess.CompletedProcess[str]:
        """Take the cluster down (once; later calls return the first result)."""
        if self.down_result is None:
            self.down_result = node_command("down")
        return self.down_result


@pytest.fixture(scope="session")
def node_cluster() -> Iterator[NodeCluster]:
    before = host_snapshot()
    try:
        result = node_command("up")
        if result.returncode != 0:
            pytest.fail(f"tools/cluster/up failed:\n{result.stderr[-6000:]}", pytrace=False)
        cluster = NodeCluster(kubeconfig=Path(result.stdout.strip().splitlines()[-1]),
                              before=before)
        cluster.during = host_snapshot()
        yield cluster
    finally:
        # Whatever happened above: nothing of the cluster may outlive the session.
        final = node_command("down")
        if final.returncode != 0:
            print(f"tools/cluster/down failed:\n{final.stderr}", file=sys.stderr)


@pytest.fixture
def namespace(node_cluster: NodeCluster) -> Iterator[str]:
    """A fresh namespace per test, deleted afterwards."""
    name = f"t-{uuid.uuid4().hex[:8]}"
    node_cluster.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    wait_for(f"the default service account in {name}", lambda: node_cluster.kubectl(
        "-n", name, "get", "serviceaccount", "default", check=False), 30)
    yield name
    node_cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The teardown check runs after every other cluster test (a stable sort keeps the rest)."""
    items.sort(key=lambda item: Path(str(item.fspath)).name == "test_teardown.py")
