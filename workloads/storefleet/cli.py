"""The `storefleet` command: one subcommand per component, each also its container entrypoint.

Subcommands are imported only when run, so `storefleet --help` stays fast and a component's
heavy dependencies (Spark, Panel, kopf) load only where that component runs.
Add a component by naming its click command in COMMANDS as "module:attribute".
"""

from __future__ import annotations

import importlib

import click

COMMANDS: dict[str, str] = {
    "services": "storefleet.services.commands:services",
    "db": "storefleet.db.commands:db",
    "up": "storefleet.launcher:up",
    "bench": "storefleet.bench.commands:bench",
    "operator": "storefleet_operator.cli:operator",
    "webhook": "storefleet.ingest.command:webhook",
    "persister": "storefleet.persister.command:persister",
    "simulate": "storefleet.simulator.command:simulate",
    "price-updater": "storefleet.prices.command:price_updater",
    "prices": "storefleet.prices.monitor_command:prices",
    "price-monitor": "storefleet.prices.service_command:price_monitor",
    "insights": "storefleet.insights.job:insights",
    "bonus": "storefleet.bonus.job:bonus",
    "dashboard": "storefleet_dashboard.command:dashboard",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attribute = target.split(":")
        return getattr(importlib.import_module(module_name), attribute)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="storefleet")
def main() -> None:
    """StoreFleet: real-time analytics for a fleet of e-commerce stores."""
