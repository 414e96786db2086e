"""`storefleet bench <name> --json`: the benchmarks; each prints one JSON object of figures.

A benchmark is the module `storefleet.bench.<name>` (dashes become underscores) exposing a click
command named `command`. `storefleet bench all` runs every one in turn, one JSON line each.
Benchmarks start their own services when no endpoints are given; they never run inside tests.
"""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys

import click

import storefleet.bench as bench_package

NOT_BENCHMARKS = {"commands"}


def benchmark_names() -> list[str]:
    return sorted(
        module.name.replace("_", "-")
        for module in pkgutil.iter_modules(bench_package.__path__)
        if module.name not in NOT_BENCHMARKS and not module.name.startswith("_")
    )


class BenchGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return [*benchmark_names(), "all"]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name == "all":
            return run_all
        if cmd_name not in benchmark_names():
            return None
        module = importlib.import_module(f"storefleet.bench.{cmd_name.replace('-', '_')}")
        return module.command


@click.group(cls=BenchGroup)
def bench() -> None:
    """Benchmarks of the targets in DESIGN.md §6 (JSON out)."""


@click.command("all")
@click.option("--json", "as_json", is_flag=True, default=True, help="JSON lines (always).")
def run_all(as_json: bool) -> None:
    """Run every benchmark, each in its own process, printing one JSON object per line."""
    failed = []
    for name in benchmark_names():
        result = subprocess.run(
            [sys.executable, "-m", "storefleet", "bench", name, "--json"], check=False
        )
        if result.returncode != 0:
            failed.append(name)
    if failed:
        raise click.ClickException(f"benchmarks failed: {', '.join(failed)}")
