"""`storefleet up -f`: the platform from a manifest, stopped cleanly by Ctrl-C or --duration."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import make_state_dir
from tests.integration.test_services_manager import STOREFLEET, processes_under

EXAMPLE = str(Path(__file__).resolve().parents[2] / "examples" / "storefleet.yaml")
FREE = {"STOREFLEET_PG_PORT": "auto", "STOREFLEET_REDIS_PORT": "auto",
        "STOREFLEET_KAFKA_PORT": "auto", "STOREFLEET_KAFKA_CONTROLLER_PORT": "auto",
        "STOREFLEET_WEBHOOK_PORT": "0", "STOREFLEET_DASHBOARD_PORT": "0",
        "STOREFLEET_PRICE_MONITOR_PORT": "0"}  # fmt: skip

pytestmark = pytest.mark.services


@pytest.fixture
def state_dir():
    folder = make_state_dir("storefleet-up-")
    yield folder
    subprocess.run([STOREFLEET, "services", "down", "--state-dir", str(folder)],
                   capture_output=True, timeout=120, check=False)  # fmt: skip
    shutil.rmtree(folder, ignore_errors=True)


def test_ctrl_c_stops_components_and_services(state_dir: Path) -> None:
    proc = subprocess.Popen(
        [STOREFLEET, "up", "-f", EXAMPLE, "--state-dir", str(state_dir)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, **FREE},
    )  # fmt: skip
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if "press Ctrl-C to stop" in line:
            break
    output = "".join(lines)
    assert "press Ctrl-C to stop" in output, output
    assert "fleets: demo (4 stores)" in output
    assert processes_under(state_dir), "nothing runs under the state directory"
    proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=180)
    assert proc.returncode == 0, output + rest
    assert "stopped postgres" in rest
    assert processes_under(state_dir) == []


def test_duration_ends_the_run(state_dir: Path) -> None:
    out = subprocess.run(
        [STOREFLEET, "up", "-f", EXAMPLE, "--state-dir", str(state_dir), "--duration", "3"],
        capture_output=True, text=True, timeout=300, env={**os.environ, **FREE}, check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "stopped kafka" in out.stdout
    assert processes_under(state_dir) == []


def test_invalid_manifest_starts_nothing(state_dir: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: storefleet.io/v1alpha1\nkind: StoreFleet\n"
                   "metadata: {name: demo}\nspec: {stores: -2}\n")  # fmt: skip
    out = subprocess.run(
        [STOREFLEET, "up", "-f", str(bad), "--state-dir", str(state_dir)],
        capture_output=True, text=True, timeout=60, env={**os.environ, **FREE}, check=False,
    )
    assert out.returncode != 0
    assert "spec.stores" in out.stderr
    assert not (state_dir / "services.json").exists()
    assert processes_under(state_dir) == []
