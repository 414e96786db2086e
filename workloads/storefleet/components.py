"""The components `storefleet up` runs locally for a set of fleets.

Each component is the same `storefleet <subcommand>` its container runs on Kubernetes, started
here as a child process with the services' endpoints in its environment. Start order matters:
consumers (persister, Spark jobs) before producers (simulators), so nothing waits on a reader.
Components whose optional dependencies are not installed are left out, and `missing_extras`
says so, so `storefleet up` can tell the user rather than run a silently smaller platform.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from storefleet.events.tokens import fleet_token
from storefleet.fleet import Fleet

# The `storefleet` command of this very installation (a venv's python, not whatever is on PATH).
STOREFLEET = [sys.executable, "-m", "storefleet"]

# Optional parts of the platform: the extra that brings them, and the module that proves it.
EXTRAS = {"spark": "pyspark", "dashboard": "panel"}


@dataclass(frozen=True)
class LocalContext:
    """What every local component may need to know besides the endpoints."""

    state_dir: Path
    # Ports chosen by `storefleet up` for HTTP components (webhook, dashboard, ...).
    ports: dict[str, int] = field(default_factory=dict)
    # Extra environment every component gets (e.g. the webhook token, generated per run).
    env: dict[str, str] = field(default_factory=dict)
    # Key of the per-fleet ingest tokens (events/tokens.py): only the webhook gets it; each
    # fleet's simulator gets its own fleet's token. Empty: every component uses the admin token.
    token_key: bytes = b""


@dataclass(frozen=True)
class ComponentSpec:
    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    # Printed by `storefleet up` so users know where to look (e.g. the dashboard URL).
    url: str | None = None


def has_extra(extra: str) -> bool:
    return importlib.util.find_spec(EXTRAS[extra]) is not None


def missing_extras(fleets: list[Fleet]) -> list[str]:
    """Notes on the components left out because their extra is not installed."""
    notes = []
    if any(f.spec.analytics.enabled for f in fleets) and not has_extra("spark"):
        notes.append("insights and bonus jobs left out: pip install -e '.[spark]'")
    if not has_extra("dashboard"):
        notes.append("dashboard left out: pip install -e '.[dashboard]'")
    return notes


def plan_components(fleets: list[Fleet], context: LocalContext) -> list[ComponentSpec]:
    """Every component to start for these fleets, in start order (consumers before producers)."""
    analytics = [f for f in fleets if f.spec.analytics.enabled] if has_extra("spark") else []
    components = ingest_components(context)
    if analytics:
        components.append(insights_component(analytics[0], context))
        components += [bonus_component(fleet, context) for fleet in analytics]
    for fleet in fleets:
        components += fleet_components(fleet, context)
    if "price-monitor" in context.ports:
        components.append(price_monitor_component(context))
    if has_extra("dashboard"):
        components.append(dashboard_component(context))
    return components


def fleet_env(fleet: Fleet) -> dict[str, str]:
    """How a fleet's pods learn their fleet: name and spec (camelCase JSON), as on Kubernetes."""
    return {
        "STOREFLEET_FLEET_NAME": fleet.name,
        "STOREFLEET_FLEET_SPEC": json.dumps(fleet.spec.model_dump(by_alias=True, mode="json")),
    }


def ingest_components(context: LocalContext) -> list[ComponentSpec]:
    """The persister (Kafka -> analytics.events) and the webhook the simulators post to."""
    port = context.ports["webhook"]
    return [
        ComponentSpec(name="persister", argv=[*STOREFLEET, "persister"]),
        ComponentSpec(
            name="webhook",
            argv=[*STOREFLEET, "webhook", "--host", "127.0.0.1", "--port", str(port)],
            env={"STOREFLEET_INGEST_TOKEN_KEY": context.token_key.decode()}
            if context.token_key else {},
            url=f"http://127.0.0.1:{port}/v1/events",
        ),
    ]


def insights_component(fleet: Fleet, context: LocalContext) -> ComponentSpec:
    """One insights job for the platform (it reads every store's events), with the analytics
    settings of the first fleet that has analytics enabled. Scope `all`: every store, every
    fleet's ALL:<fleet> and ALL, in one job (on a cluster: a job per fleet and one platform job)."""
    analytics = fleet.spec.analytics
    return ComponentSpec(
        name="insights",
        argv=[
            *STOREFLEET,
            "insights",
            "run",
            "--trigger-seconds",
            str(analytics.trigger_seconds),
            "--watermark-seconds",
            str(analytics.watermark_seconds),
            "--shuffle-partitions",
            str(analytics.shuffle_partitions),
        ],
        env={
            "STOREFLEET_INSIGHTS_SCOPE": "all",
            "STOREFLEET_LOGS_DIR": str(context.state_dir / "logs"),
            "STOREFLEET_INSIGHTS_CHECKPOINT_DIR": str(
                context.state_dir / "insights" / "checkpoints"
            ),
            "STOREFLEET_SPARK_MASTER": "local[2]",
        },
    )


def bonus_component(fleet: Fleet, context: LocalContext) -> ComponentSpec:
    """The fleet's bonus job. Its query keeps no Spark state (the windows live in PostgreSQL), so
    one core and a small driver do, beside the insights JVM on a 2-core laptop."""
    return ComponentSpec(
        name=f"bonus-{fleet.name}",
        argv=[
            *STOREFLEET,
            "bonus",
            "run",
            "--trigger-seconds",
            str(fleet.spec.analytics.trigger_seconds),
        ],
        env={
            **fleet_env(fleet),
            "STOREFLEET_BONUS_CHECKPOINT_DIR": str(
                context.state_dir / "bonus" / fleet.name / "checkpoints"
            ),
            "STOREFLEET_SPARK_MASTER": "local[1]",
            "STOREFLEET_BONUS_SHUFFLE_PARTITIONS": "1",
            "STOREFLEET_BONUS_DRIVER_MEMORY": "512m",
        },
    )


def fleet_components(fleet: Fleet, context: LocalContext) -> list[ComponentSpec]:
    """One simulator process for all the fleet's stores (none without stores), one price updater."""
    components = []
    if fleet.spec.stores > 0:
        components.append(
            ComponentSpec(
                name=f"simulate-{fleet.name}",
                argv=[*STOREFLEET, "simulate"],
                env={
                    **fleet_env(fleet),
                    "STOREFLEET_INGEST_URL": f"http://127.0.0.1:{context.ports['webhook']}",
                    "STOREFLEET_LOGS_DIR": str(context.state_dir / "logs"),
                    # A token that posts only for this fleet's stores (issue 10).
                    **({"STOREFLEET_INGEST_TOKEN": fleet_token(context.token_key, fleet.name)}
                       if context.token_key else {}),
                },
            )
        )
    components.append(
        ComponentSpec(
            name=f"price-updater-{fleet.name}",
            argv=[*STOREFLEET, "price-updater"],
            env=fleet_env(fleet),
        )
    )
    return components


def price_monitor_component(context: LocalContext) -> ComponentSpec:
    """The price-monitor service: deals over HTTP and Redis request/reply (the dashboard asks
    it), standing watches. Locally it connects with the services' DSN (see docs/price-monitor.md
    for its own role on Kubernetes)."""
    port = context.ports["price-monitor"]
    return ComponentSpec(
        name="price-monitor",
        argv=[*STOREFLEET, "price-monitor", "--host", "127.0.0.1", "--port", str(port)],
        url=f"http://127.0.0.1:{port}/v1/deals",
    )


def dashboard_component(context: LocalContext) -> ComponentSpec:
    port = context.ports["dashboard"]
    return ComponentSpec(
        name="dashboard",
        argv=[*STOREFLEET, "dashboard", "--host", "127.0.0.1", "--port", str(port)],
        url=f"http://127.0.0.1:{port}/",
    )
