"""`storefleet services up|down|status|env`: the local PostgreSQL, Redis and Kafka.

Reads the state directory (`--state-dir`, $STOREFLEET_STATE_DIR, default `.storefleet/`) and
port settings (flags or STOREFLEET_{PG,REDIS,KAFKA,KAFKA_CONTROLLER}_PORT; 0/auto = free port);
writes data, logs, pids and `services.env` under the state directory.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from storefleet.paths import state_dir as resolve_state_dir
from storefleet.services.manager import PORT_FLAG, ServicesManager
from storefleet.services.process import ServiceError

state_dir_option = click.option(
    "--state-dir",
    envvar="STOREFLEET_STATE_DIR",
    default=None,
    help="Folder for data, logs and pids (default .storefleet/).",
)


def _manager(
    state_dir: str | None, ports: dict[str, int | None] | None = None, partitions: int = 6
) -> ServicesManager:
    return ServicesManager(
        resolve_state_dir(state_dir), requested_ports=dict(ports or {}), kafka_partitions=partitions
    )


@click.group()
def services() -> None:
    """Local PostgreSQL, Redis and Kafka for development, demos and tests."""


@services.command()
@state_dir_option
@click.option(PORT_FLAG["postgres"], "pg_port", type=int, default=None, help="PostgreSQL port.")
@click.option(PORT_FLAG["redis"], "redis_port", type=int, default=None, help="Redis port.")
@click.option(PORT_FLAG["kafka"], "kafka_port", type=int, default=None, help="Kafka port.")
@click.option(
    PORT_FLAG["kafka_controller"],
    "kafka_controller_port",
    type=int,
    default=None,
    help="Kafka KRaft controller port.",
)
@click.option(
    "--kafka-partitions",
    type=click.IntRange(1, 1000),
    default=6,
    show_default=True,
    envvar="STOREFLEET_KAFKA_PARTITIONS",
    help="Partitions of the events topic when it is created (coupons gets half).",
)
def up(
    state_dir: str | None,
    pg_port: int | None,
    redis_port: int | None,
    kafka_port: int | None,
    kafka_controller_port: int | None,
    kafka_partitions: int,
) -> None:
    """Start the services (a no-op for those already running), migrate, create topics."""
    ports = {
        "postgres": pg_port,
        "redis": redis_port,
        "kafka": kafka_port,
        "kafka_controller": kafka_controller_port,
    }
    manager = _manager(state_dir, ports, kafka_partitions)
    try:
        manager.up()
    except ServiceError as exc:
        raise click.ClickException(str(exc)) from None
    _print_status(manager)
    click.echo(f'endpoints: eval "$(storefleet services env --state-dir {manager.state_dir})"')


@services.command()
@state_dir_option
def down(state_dir: str | None) -> None:
    """Stop exactly the service processes `up` started."""
    try:
        stopped = _manager(state_dir).down()
    except ServiceError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo("stopped: " + ", ".join(stopped) if stopped else "nothing was running")


@services.command()
@state_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def status(state_dir: str | None, as_json: bool) -> None:
    """Say which services run, where, and where their logs are. Exits 1 unless all run."""
    manager = _manager(state_dir)
    statuses = manager.status()
    if as_json:
        click.echo(json.dumps([s.__dict__ for s in statuses], indent=2))
    else:
        _print_status(manager)
    if not all(s.running for s in statuses):
        raise SystemExit(1)


@services.command()
@state_dir_option
def env(state_dir: str | None) -> None:
    """Print `export` lines with the endpoints, for `eval "$(storefleet services env)"`."""
    manager = _manager(state_dir)
    try:
        endpoints = manager.endpoints()
    except ServiceError as exc:
        raise click.ClickException(str(exc)) from None
    for key, value in endpoints.as_env().items():
        click.echo(f"export {key}='{value}'")


def _print_status(manager: ServicesManager) -> None:
    click.echo(f"state directory: {manager.state_dir}")
    for s in manager.status():
        where = f"127.0.0.1:{s.port} (pid {s.pid})" if s.running else "stopped"
        click.echo(f"  {s.name:<9} {where:<28} log {Path(s.log_file)}")
