"""`storefleet bench cluster --json`: the platform on a real single-node cluster (DESIGN.md §6).

Brings the project's test node up (tools/cluster/up), loads the locally built images, `helm
install`s the chart with charts/storefleet/ci/cluster-values.yaml, applies
examples/storefleet.yaml, scales it from 4 to 40 stores, loads the webhook until its HPA adds a
pod, and always takes the node down again. Prints one JSON object: load_images_s,
install_to_ready_s, fleet_ready_s, scale_4_to_40_s, hpa_scale_up_s (seconds).

Needs a checkout of the repository (the cluster tools live in tools/cluster, outside the
package), root, and what `make cluster-tools images` builds. Run from the repository root.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import click


def _release_script() -> Path:
    for folder in (Path.cwd(), *Path(__file__).resolve().parents):
        script = folder / "tools" / "cluster" / "release.py"
        if script.is_file():
            return script
    raise click.ClickException(
        "tools/cluster/release.py not found: run this benchmark from a checkout of the repository"
    )


@click.command("cluster")
@click.option("--json", "as_json", is_flag=True, default=True, help="JSON out (always).")
def command(as_json: bool) -> None:
    """Warm install-to-Ready, 4 -> 40 stores, and HPA reaction on the test node (JSON)."""
    result = subprocess.run([sys.executable, str(_release_script()), "bench"], check=False)
    if result.returncode != 0:
        raise click.ClickException(f"the cluster benchmark failed (exit {result.returncode})")
