"""Fixtures of the image smoke checks: images built by tools/images/build.sh, run with podman.

Every container runs with `--network none` (loopback only), as the user the chart runs it as;
each test removes what it started. Building is cached by build.sh (a warm run only checks
hashes), so asking for an image here costs seconds once the images exist.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TOOLS = REPO / "tools" / "images"
PREFIX = "localhost/storefleet"
ENV = {**os.environ, "CONTAINERS_CONF": str(TOOLS / "containers.conf")}


def podman(*args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess:
    """Run `podman ARGS` with the project's containers.conf; returns the finished process
    (stdout/stderr as text). Raises AssertionError naming the command when `check` and it fails."""
    done = subprocess.run(
        ["podman", *args], env=ENV, capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and done.returncode != 0:
        raise AssertionError(
            f"podman {' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
        )
    return done


@pytest.fixture(scope="session")
def image() -> Callable[[str], str]:
    """image(name) -> "localhost/storefleet/<name>:dev", built (or found up to date) once."""
    built: set[str] = set()

    def build(name: str) -> str:
        if name not in built:
            subprocess.run([str(TOOLS / "build.sh"), name], env=ENV, check=True, timeout=3600)
            built.add(name)
        return f"{PREFIX}/{name}:dev"

    return build


def run(
    image_ref: str,
    *args: str,
    user: str | None = None,
    entrypoint: str | None = None,
    env: dict[str, str] | None = None,
    volumes: tuple[str, ...] = (),
    timeout: float = 300,
) -> subprocess.CompletedProcess:
    """Run a throw-away container of `image_ref` with no network; returns the finished process."""
    opts = ["run", "--rm", "--network", "none"]
    if user:
        opts += ["--user", user]
    if entrypoint is not None:
        opts += ["--entrypoint", entrypoint]
    for key, value in (env or {}).items():
        opts += ["-e", f"{key}={value}"]
    for volume in volumes:
        opts += ["-v", volume]
    return podman(*opts, image_ref, *args, timeout=timeout, check=False)


@pytest.fixture
def container() -> Iterator[Callable[..., str]]:
    """container(image_ref, *args, **opts) starts a detached container (no network) and returns
    its name; every container started this way is removed at the end of the test.
    opts: user, env (dict), volumes (list of host:container[:opts]), read_only, tmpfs (list)."""
    names: list[str] = []

    def start(
        image_ref: str,
        *args: str,
        user: str | None = None,
        env: dict[str, str] | None = None,
        volumes: tuple[str, ...] = (),
        read_only: bool = False,
        tmpfs: tuple[str, ...] = (),
    ) -> str:
        name = f"storefleet-smoke-{uuid.uuid4().hex[:10]}"
        opts = ["run", "-d", "--name", name, "--network", "none"]
        if user:
            opts += ["--user", user]
        if read_only:
            # As readOnlyRootFilesystem in a pod: nothing is writable but the declared volumes
            # (podman would otherwise add its own /run and /tmp).
            opts += ["--read-only", "--read-only-tmpfs=false"]
        for path in tmpfs:
            opts += ["--tmpfs", path]
        for key, value in (env or {}).items():
            opts += ["-e", f"{key}={value}"]
        for volume in volumes:
            opts += ["-v", volume]
        podman(*opts, image_ref, *args)
        names.append(name)
        return name

    yield start
    for name in names:
        # Shown by pytest only when the test failed: what the container said.
        logs = podman("logs", "--tail", "40", name, check=False)
        print(f"--- podman logs {name}\n{logs.stdout}{logs.stderr}")
        podman("rm", "-f", "-t", "2", name, check=False)


@pytest.fixture
def shared_dir(tmp_path: Path) -> Path:
    """An empty folder any container user can read and write (bind-mounted as a volume)."""
    folder = tmp_path / "shared"
    folder.mkdir()
    for path in (tmp_path, folder):
        path.chmod(0o777)
    return folder
