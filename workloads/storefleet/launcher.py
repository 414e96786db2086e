"""`storefleet up -f FILE.yaml`: the whole platform on one machine (local mode, DESIGN.md §5).

Reads StoreFleet manifests (the same YAML `kubectl apply` takes); starts the local services
(unless they already run), then every component of the fleets as child processes with logs under
`<state>/components/`; prints where things are; stops the components, and the services it
started, on Ctrl-C, SIGTERM, when `--duration` ends, or when a component dies.

    storefleet up -f examples/storefleet.yaml [--duration 60] [--state-dir .storefleet]
"""

from __future__ import annotations

import os
import secrets
import signal
import time
from pathlib import Path

import click

from storefleet.components import ComponentSpec, LocalContext, missing_extras, plan_components
from storefleet.fleet import Fleet, ManifestError, load_manifest
from storefleet.paths import state_dir as resolve_state_dir
from storefleet.services.manager import ServicesManager
from storefleet.services.process import (
    ProcessRecord,
    ServiceError,
    free_port,
    is_running,
    log_tail,
    port_in_use,
    spawn,
    stop,
)

TOKEN_ENV = "STOREFLEET_INGEST_TOKEN"
TOKEN_KEY_ENV = "STOREFLEET_INGEST_TOKEN_KEY"


class _Stop(Exception):
    pass


def ingest_token(state: Path, env: str = TOKEN_ENV, name: str = "ingest-token") -> str:
    """The webhook's admin token ($STOREFLEET_INGEST_TOKEN) or, with `env`/`name` given, the key
    of the per-fleet tokens; else one generated once per state directory (file `name`, 0600)."""
    if os.environ.get(env):
        return os.environ[env]
    path = state / name
    if not path.is_file():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(24))
    return path.read_text().strip()


def choose_port(requested: int, what: str, flag: str) -> int:
    if requested == 0:
        return free_port()
    if port_in_use(requested):
        raise click.ClickException(
            f"port {requested} for the {what} is already in use; choose another with {flag} "
            f"(0 picks a free one)"
        )
    return requested


@click.command()
@click.option(
    "-f",
    "--file",
    "manifest",
    required=True,
    type=click.Path(dir_okay=False),
    help="StoreFleet manifest (YAML, one or more fleets).",
)
@click.option(
    "--duration",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Stop after this many seconds (default: run until Ctrl-C).",
)
@click.option(
    "--state-dir",
    envvar="STOREFLEET_STATE_DIR",
    default=None,
    help="Folder for data, logs and pids (default .storefleet/).",
)
@click.option(
    "--webhook-port",
    type=click.IntRange(0, 65535),
    default=18080,
    show_default=True,
    envvar="STOREFLEET_WEBHOOK_PORT",
    help="Port of the ingest webhook (0: any free).",
)
@click.option(
    "--dashboard-port",
    type=click.IntRange(0, 65535),
    default=15006,
    show_default=True,
    envvar="STOREFLEET_DASHBOARD_PORT",
    help="Port of the dashboard (0: any free).",
)
@click.option(
    "--price-monitor-port",
    type=click.IntRange(0, 65535),
    default=18090,
    show_default=True,
    envvar="STOREFLEET_PRICE_MONITOR_PORT",
    help="Port of the price monitor's HTTP API (0: any free).",
)
@click.option(
    "--keep-services", is_flag=True, help="Leave PostgreSQL, Redis and Kafka running when stopping."
)
def up(manifest: str, duration: float | None, state_dir: str | None, webhook_port: int,
       dashboard_port: int, price_monitor_port: int,
       keep_services: bool) -> None:  # fmt: skip
    """Run the services and every component of the fleets in FILE until stopped."""
    try:
        fleets = load_manifest(manifest)
    except ManifestError as exc:
        raise click.ClickException(str(exc)) from None
    state = resolve_state_dir(state_dir)
    state.mkdir(parents=True, exist_ok=True)
    ports = {
        "webhook": choose_port(webhook_port, "ingest webhook", "--webhook-port"),
        "dashboard": choose_port(dashboard_port, "dashboard", "--dashboard-port"),
        "price-monitor": choose_port(price_monitor_port, "price monitor", "--price-monitor-port"),
    }
    manager = ServicesManager(state)
    already_running = {s.name for s in manager.status() if s.running}
    # Stop on SIGTERM like on Ctrl-C, so `kill` and container runtimes get a clean shutdown.
    signal.signal(signal.SIGTERM, _raise_stop)
    started: list[tuple[ComponentSpec, ProcessRecord]] = []
    try:
        click.echo("starting PostgreSQL, Redis and Kafka ...")
        try:
            endpoints = manager.up()
        except ServiceError as exc:
            raise click.ClickException(str(exc)) from None
        context = LocalContext(
            state_dir=state, ports=ports, env={TOKEN_ENV: ingest_token(state)},
            token_key=ingest_token(state, TOKEN_KEY_ENV, "ingest-token-key").encode(),
        )
        base_env = {**os.environ, **endpoints.as_env(), **context.env}
        for note in missing_extras(fleets):
            click.echo(f"note: {note}")
        for spec in plan_components(fleets, context):
            log_file = state / "components" / f"{spec.name}.log"
            record = spawn(spec.argv, log_file, env={**base_env, **spec.env})
            started.append((spec, record))
        _print_summary(fleets, manager, started, state)
        _watch(started, state, duration)
    except (KeyboardInterrupt, _Stop):
        click.echo("\nstopping ...")
    finally:
        for spec, record in reversed(started):
            stop(record, signal.SIGTERM, timeout=30.0)
            click.echo(f"  stopped {spec.name}")
        if not keep_services:
            for name in _stop_services_started_here(manager, already_running):
                click.echo(f"  stopped {name}")
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _raise_stop(signum: int, frame: object) -> None:
    raise _Stop()


def _watch(started: list[tuple[ComponentSpec, ProcessRecord]], state: Path,
           duration: float | None) -> None:  # fmt: skip
    deadline = None if duration is None else time.monotonic() + duration
    while deadline is None or time.monotonic() < deadline:
        for spec, record in started:
            if not is_running(record):
                log_file = state / "components" / f"{spec.name}.log"
                raise click.ClickException(
                    f"component {spec.name} exited; its log ({log_file}) ends with:\n"
                    f"{log_tail(log_file)}"
                )
        time.sleep(0.5 if deadline is None else min(0.5, max(0.0, deadline - time.monotonic())))


def _stop_services_started_here(manager: ServicesManager, already_running: set[str]) -> list[str]:
    if already_running:
        # Services that ran before `up` belong to whoever started them: leave them all.
        return []
    return manager.down()


def _print_summary(
    fleets: list[Fleet],
    manager: ServicesManager,
    started: list[tuple[ComponentSpec, ProcessRecord]],
    state: Path,
) -> None:
    click.echo(f"fleets: {', '.join(f'{f.name} ({f.spec.stores} stores)' for f in fleets)}")
    click.echo(f"state directory: {state}")
    rows = [(s.name, f"127.0.0.1:{s.port}", s.log_file) for s in manager.status()]
    rows += [
        (spec.name, spec.url or f"pid {record.pid}", str(state / "components" / f"{spec.name}.log"))
        for spec, record in started
    ]
    name_width = max(len(name) for name, _, _ in rows)
    where_width = max(len(where) for _, where, _ in rows)
    for name, where, log_file in rows:
        click.echo(f"  {name:<{name_width}}  {where:<{where_width}}  log {log_file}")
    click.echo(f'endpoints: eval "$(storefleet services env --state-dir {state})"')
    click.echo("press Ctrl-C to stop")
