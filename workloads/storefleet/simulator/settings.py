"""Settings of a simulator process: which fleet, which of its stores, and where to write.

The fleet comes from a manifest (`-f FILE --fleet NAME`, local runs) or from the environment the
operator's StatefulSet sets (STOREFLEET_FLEET_NAME, STOREFLEET_FLEET_SPEC holding the FleetSpec as
camelCase JSON). The stores a process drives are a half-open range of positions: from flags, from
STOREFLEET_STORE_RANGE ("FROM:TO"), from STOREFLEET_POD_ORDINAL times `storesPerPod`, or else
the whole fleet. Everything is checked at start; a bad value fails naming the setting.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from storefleet import endpoints
from storefleet.envvars import env_int
from storefleet.fleet import API_GROUP, API_VERSION, KIND, Fleet, ManifestError, load_manifest
from storefleet.fleet import parse_fleet as _parse_fleet

FLEET_NAME = "STOREFLEET_FLEET_NAME"
FLEET_SPEC = "STOREFLEET_FLEET_SPEC"
STORE_RANGE = "STOREFLEET_STORE_RANGE"
POD_ORDINAL = "STOREFLEET_POD_ORDINAL"
INGEST_URL = "STOREFLEET_INGEST_URL"
INGEST_TOKEN = "STOREFLEET_INGEST_TOKEN"
LOGS_DIR = "STOREFLEET_LOGS_DIR"
COUPONS_TOPIC = "STOREFLEET_COUPONS_TOPIC"
BUFFER_EVENTS = "STOREFLEET_SIM_BUFFER_EVENTS"
BATCH_EVENTS = "STOREFLEET_SIM_BATCH_EVENTS"

_RANGE = re.compile(r"^\s*(\d+)\s*:\s*(\d+)\s*$")


class SettingError(endpoints.SettingError):
    """A simulator or price-updater setting that cannot be used; the message names it."""


@dataclass(frozen=True)
class SimulatorSettings:
    fleet: Fleet
    store_from: int
    store_to: int
    ingest_url: str
    ingest_token: str
    logs_dir: Path
    pg_dsn: str
    kafka_bootstrap: str | None
    coupons_topic: str
    buffer_events: int = 100_000
    batch_events: int = 2_000
    # Stop after this many cycles (tests, benchmarks); None runs until stopped.
    cycles: int | None = None
    seed: int | None = None

    @property
    def store_ids(self) -> list[str]:
        return [self.fleet.store_id(p) for p in range(self.store_from, self.store_to)]


def load_fleet(
    manifest: str | None, fleet_name: str | None, environ: Mapping[str, str] | None = None
) -> Fleet:
    """The fleet from a manifest file, or from STOREFLEET_FLEET_NAME / STOREFLEET_FLEET_SPEC."""
    env = os.environ if environ is None else environ
    name = fleet_name or env.get(FLEET_NAME, "").strip() or None
    if manifest:
        try:
            fleets = load_manifest(manifest)
        except ManifestError as exc:
            raise SettingError(str(exc)) from None
        if name is None:
            if len(fleets) != 1:
                raise SettingError(
                    f"--fleet: {manifest} holds {len(fleets)} fleets"
                    f" ({', '.join(f.name for f in fleets)}); name one"
                )
            return fleets[0]
        for fleet in fleets:
            if fleet.name == name:
                return fleet
        raise SettingError(f"--fleet: no fleet named {name!r} in {manifest}")
    if name is None:
        raise SettingError(f"no fleet given: pass -f MANIFEST [--fleet NAME] or set {FLEET_NAME}")
    raw = env.get(FLEET_SPEC, "").strip() or "{}"
    try:
        spec = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise SettingError(f"{FLEET_SPEC}: not valid JSON: {exc}") from None
    document = {
        "apiVersion": f"{API_GROUP}/{API_VERSION}",
        "kind": KIND,
        "metadata": {"name": name},
        "spec": spec,
    }
    try:
        return _parse_fleet(document, FLEET_SPEC)
    except ManifestError as exc:
        raise SettingError(str(exc)) from None


def store_range(
    fleet: Fleet,
    stores_from: int | None,
    stores_to: int | None,
    environ: Mapping[str, str] | None = None,
) -> tuple[int, int]:
    """The half-open range of store positions this process drives."""
    env = os.environ if environ is None else environ
    total = fleet.spec.stores
    if stores_from is not None or stores_to is not None:
        lo = 0 if stores_from is None else stores_from
        hi = total if stores_to is None else stores_to
        source = "--stores-from/--stores-to"
    elif env.get(STORE_RANGE, "").strip():
        match = _RANGE.match(env[STORE_RANGE])
        if not match:
            raise SettingError(
                f"{STORE_RANGE} must be FROM:TO (half-open), got {env[STORE_RANGE]!r}"
            )
        lo, hi = int(match.group(1)), int(match.group(2))
        source = STORE_RANGE
    elif env.get(POD_ORDINAL, "").strip():
        try:
            ordinal = int(env[POD_ORDINAL])
        except ValueError:
            raise SettingError(
                f"{POD_ORDINAL} must be an integer, got {env[POD_ORDINAL]!r}"
            ) from None
        if ordinal < 0:
            raise SettingError(f"{POD_ORDINAL} must be >= 0, got {ordinal}")
        per_pod = fleet.spec.stores_per_pod
        lo, hi = ordinal * per_pod, min((ordinal + 1) * per_pod, total)
        source = f"{POD_ORDINAL} x spec.storesPerPod"
    else:
        lo, hi = 0, total
        source = "spec.stores"
    if lo < 0 or hi < 0:
        raise SettingError(f"{source}: store positions must be >= 0, got {lo}:{hi}")
    if hi > total:
        raise SettingError(f"{source}: range {lo}:{hi} goes past spec.stores = {total}")
    if lo >= hi:
        raise SettingError(f"{source}: no stores to simulate in range {lo}:{hi}"
                           f" (spec.stores = {total})")
    return lo, hi


def events_url(base: str) -> str:
    """The webhook's batch endpoint from STOREFLEET_INGEST_URL (a base URL or the full path)."""
    base = base.strip().rstrip("/")
    if not re.match(r"^https?://[^/]+", base):
        raise SettingError(f"{INGEST_URL} must be an http(s) URL, got {base!r}")
    return base if base.endswith("/v1/events") else base + "/v1/events"


def simulator_settings(
    *,
    manifest: str | None = None,
    fleet_name: str | None = None,
    stores_from: int | None = None,
    stores_to: int | None = None,
    ingest_url: str | None = None,
    logs_dir: str | None = None,
    cycles: int | None = None,
    seed: int | None = None,
    environ: Mapping[str, str] | None = None,
) -> SimulatorSettings:
    env = os.environ if environ is None else environ
    fleet = load_fleet(manifest, fleet_name, env)
    lo, hi = store_range(fleet, stores_from, stores_to, env)
    url = ingest_url or env.get(INGEST_URL, "").strip()
    if not url:
        raise SettingError(f"{INGEST_URL} is not set (the ingest webhook's base URL)")
    token = env.get(INGEST_TOKEN, "").strip()
    if not token:
        raise SettingError(f"{INGEST_TOKEN} is not set (the webhook's bearer token)")
    if cycles is not None and cycles < 1:
        raise SettingError(f"--cycles must be >= 1, got {cycles}")
    if seed is not None and seed < 0:
        raise SettingError(f"--seed must be >= 0, got {seed}")
    logs = logs_dir or env.get(LOGS_DIR, "").strip() or ".storefleet/logs"
    return SimulatorSettings(
        fleet=fleet,
        store_from=lo,
        store_to=hi,
        ingest_url=events_url(url),
        ingest_token=token,
        logs_dir=Path(logs).expanduser().resolve(),
        pg_dsn=endpoints.require(endpoints.PG_DSN, dict(env)),
        kafka_bootstrap=env.get(endpoints.KAFKA_BOOTSTRAP, "").strip() or None,
        coupons_topic=env.get(COUPONS_TOPIC, "").strip() or "coupons",
        buffer_events=env_int(env, BUFFER_EVENTS, 100_000, 1, 100_000_000),
        batch_events=env_int(env, BATCH_EVENTS, 2_000, 1, 1_000_000),
        cycles=cycles,
        seed=seed if seed is not None else fleet.spec.simulation.seed,
    )
