"""The components `storefleet up` runs locally for a set of fleets.

Each component is the same `storefleet <subcommand>` its container runs on Kubernetes, started
here as a child process with the services' endpoints in its environment. A component that a
later capability adds appends itself in `plan_components`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from storefleet.fleet import Fleet


@dataclass(frozen=True)
class LocalContext:
    """What every local component may need to know besides the endpoints."""

    state_dir: Path
    # Ports chosen by `storefleet up` for HTTP components (webhook, dashboard, ...).
    ports: dict[str, int] = field(default_factory=dict)
    # Extra environment every component gets (e.g. the webhook token, generated per run).
    env: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ComponentSpec:
    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    # Printed by `storefleet up` so users know where to look (e.g. the dashboard URL).
    url: str | None = None


def plan_components(fleets: list[Fleet], context: LocalContext) -> list[ComponentSpec]:
    """Every component to start for these fleets, in start order (consumers before producers)."""
    components: list[ComponentSpec] = []
    components += _ingest_components(context)
    components += _insights_components(fleets, context)
    components += _simulator_components(fleets, context)
    components += _dashboard_components(context)
    return components


def _simulator_components(fleets: list[Fleet], context: LocalContext) -> list[ComponentSpec]:
    """One simulator process per fleet (all its stores) and one price updater per fleet."""
    import json
    import sys

    specs = []
    for fleet in fleets:
        fleet_env = {
            "STOREFLEET_FLEET_NAME": fleet.name,
            "STOREFLEET_FLEET_SPEC": json.dumps(fleet.spec.model_dump(by_alias=True, mode="json")),
        }
        run = [sys.executable, "-c", "from storefleet.cli import main; main()"]
        if fleet.spec.stores > 0:
            specs.append(ComponentSpec(
                name=f"simulate-{fleet.name}",
                argv=[*run, "simulate"],
                env={
                    **fleet_env,
                    "STOREFLEET_INGEST_URL": f"http://127.0.0.1:{context.ports['webhook']}",
                    "STOREFLEET_INGEST_TOKEN": context.env.get("STOREFLEET_INGEST_TOKEN", ""),
                    "STOREFLEET_LOGS_DIR": str(context.state_dir / "logs"),
                },
            ))
        specs.append(ComponentSpec(name=f"price-updater-{fleet.name}",
                                   argv=[*run, "price-updater"], env=fleet_env))
    return specs


def _ingest_components(context: LocalContext) -> list[ComponentSpec]:
    """The persister (Kafka -> analytics.events) and the webhook the simulators post to."""
    import sys

    run = [sys.executable, "-c", "from storefleet.cli import main; main()"]
    port = context.ports["webhook"]
    return [
        ComponentSpec(name="persister", argv=[*run, "persister"]),
        ComponentSpec(
            name="webhook",
            argv=[*run, "webhook", "--host", "127.0.0.1", "--port", str(port)],
            env={"STOREFLEET_INGEST_TOKEN": context.env["STOREFLEET_INGEST_TOKEN"]},
            url=f"http://127.0.0.1:{port}/v1/events",
        ),
    ]


def _insights_components(fleets: list[Fleet], context: LocalContext) -> list[ComponentSpec]:
    """One insights Spark job for the platform (it reads every store's events), with the
    analytics settings of the first fleet that has analytics enabled. Needs the `spark` extra
    (pyspark) and tools/spark/fetch-jars.sh; without pyspark it is left out."""
    import importlib.util
    import sys

    enabled = [f for f in fleets if f.spec.analytics.enabled]
    if not enabled or importlib.util.find_spec("pyspark") is None:
        return []
    analytics = enabled[0].spec.analytics
    run = [sys.executable, "-c", "from storefleet.cli import main; main()"]
    return [ComponentSpec(
        name="insights",
        argv=[*run, "insights", "run",
              "--trigger-seconds", str(analytics.trigger_seconds),
              "--watermark-seconds", str(analytics.watermark_seconds),
              "--shuffle-partitions", str(analytics.shuffle_partitions)],
        env={
            "STOREFLEET_LOGS_DIR": str(context.state_dir / "logs"),
            "STOREFLEET_INSIGHTS_CHECKPOINT_DIR": str(
                context.state_dir / "insights" / "checkpoints"),
            "STOREFLEET_SPARK_MASTER": "local[2]",
        },
    )]


def _dashboard_components(context: LocalContext) -> list[ComponentSpec]:
    """The Panel dashboard (needs the `dashboard` extra); left out when Panel is missing."""
    import importlib.util
    import sys

    if importlib.util.find_spec("panel") is None:
        return []
    port = context.ports["dashboard"]
    run = [sys.executable, "-c", "from storefleet.cli import main; main()"]
    return [ComponentSpec(
        name="dashboard",
        argv=[*run, "dashboard", "--host", "127.0.0.1", "--port", str(port)],
        url=f"http://127.0.0.1:{port}/",
    )]
