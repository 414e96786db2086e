"""The StoreFleet resource: what a fleet is, as users write it in YAML.

The same manifest goes to `kubectl apply` on a cluster and to `storefleet up -f` locally, so
this model is the one definition of the spec in Python. The CRD in charts/ mirrors it (field
names, defaults, bounds); a test keeps the two in step.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

API_GROUP = "storefleet.io"
API_VERSION = "v1alpha1"
KIND = "StoreFleet"

# A fleet name becomes part of store ids and Kubernetes object names: keep it a DNS label.
NAME_PATTERN = re.compile(r"^[a-z]([-a-z0-9]{0,38}[a-z0-9])?$")


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


class Simulation(_Spec):
    cycle_seconds: float = Field(5.0, alias="cycleSeconds", gt=0, le=3600)
    users_per_cycle: int = Field(15, alias="usersPerCycle", ge=0, le=10_000)
    new_users_per_cycle: int = Field(3, alias="newUsersPerCycle", ge=0, le=10_000)
    new_products_per_cycle: int = Field(1, alias="newProductsPerCycle", ge=0, le=10_000)
    initial_users: int = Field(20, alias="initialUsers", ge=0, le=1_000_000)
    initial_products: int = Field(20, alias="initialProducts", ge=1, le=1_000_000)
    error_rate: float = Field(0.02, alias="errorRate", ge=0, le=1)
    oversell_rate: float = Field(0.05, alias="oversellRate", ge=0, le=1)
    seed: int | None = Field(None, ge=0)


class Bonus(_Spec):
    short_window_minutes: int = Field(10, alias="shortWindowMinutes", ge=1, le=1440)
    short_window_threshold: float = Field(500.0, alias="shortWindowThreshold", ge=0)
    long_window_hours: int = Field(6, alias="longWindowHours", ge=1, le=168)
    long_window_threshold: float = Field(2000.0, alias="longWindowThreshold", ge=0)

    @model_validator(mode="after")
    def _long_covers_short(self) -> Bonus:
        if self.long_window_hours * 60 < self.short_window_minutes:
            raise ValueError("bonus.longWindowHours must cover bonus.shortWindowMinutes")
        return self


class Coupons(_Spec):
    discount_percent: float = Field(10.0, alias="discountPercent", gt=0, le=90)
    cooldown_minutes: int = Field(60, alias="cooldownMinutes", ge=0, le=100_000)


class PriceUpdater(_Spec):
    interval_seconds: float = Field(60.0, alias="intervalSeconds", gt=0)
    products_per_run: int = Field(10, alias="productsPerRun", ge=1)
    max_change_percent: float = Field(10.0, alias="maxChangePercent", gt=0, le=90)
    min_price: float = Field(1.0, alias="minPrice", gt=0)
    backfill_months: int = Field(6, alias="backfillMonths", ge=0, le=60)


class SparkPod(_Spec):
    cores: int = Field(1, ge=1)
    memory: str = Field("1g", pattern=r"^[0-9]+[mg]$")


class SparkExecutor(SparkPod):
    instances: int = Field(1, ge=1)


class Spark(_Spec):
    driver: SparkPod = SparkPod()
    executor: SparkExecutor = SparkExecutor()


class Analytics(_Spec):
    enabled: bool = True
    trigger_seconds: float = Field(1.0, alias="triggerSeconds", gt=0, le=600)
    watermark_seconds: int = Field(120, alias="watermarkSeconds", ge=0, le=86_400)
    # Frozen into the streaming checkpoint at first start (DESIGN.md §8): small locally.
    shuffle_partitions: int = Field(4, alias="shufflePartitions", ge=1, le=10_000)


class FleetSpec(_Spec):
    stores: int = Field(4, ge=0, le=100_000)
    stores_per_pod: int = Field(10, alias="storesPerPod", ge=1, le=10_000)
    simulation: Simulation = Simulation()
    bonus: Bonus = Bonus()
    coupons: Coupons = Coupons()
    price_updater: PriceUpdater = Field(PriceUpdater(), alias="priceUpdater")
    analytics: Analytics = Analytics()
    spark: Spark = Spark()


class Fleet(BaseModel):
    """A named fleet with its validated spec."""

    model_config = ConfigDict(frozen=True)

    name: str
    spec: FleetSpec

    def store_id(self, position: int) -> str:
        """The stable id of the store at `position` (0-based), e.g. `demo-0003`."""
        return store_id(self.name, position)

    @property
    def store_ids(self) -> list[str]:
        return [self.store_id(i) for i in range(self.spec.stores)]


class ManifestError(ValueError):
    """A StoreFleet manifest that cannot be used, with a message naming what is wrong."""


def store_id(fleet_name: str, position: int) -> str:
    return f"{fleet_name}-{position:04d}"


def parse_fleet(document: dict[str, Any], source: str = "manifest") -> Fleet:
    """Validate one StoreFleet document (already parsed YAML/JSON) into a Fleet."""
    if not isinstance(document, dict):
        raise ManifestError(f"{source}: expected a mapping, got {type(document).__name__}")
    api_version = document.get("apiVersion")
    if api_version != f"{API_GROUP}/{API_VERSION}":
        raise ManifestError(
            f"{source}: apiVersion must be {API_GROUP}/{API_VERSION}, got {api_version!r}"
        )
    if document.get("kind") != KIND:
        raise ManifestError(f"{source}: kind must be {KIND}, got {document.get('kind')!r}")
    name = (document.get("metadata") or {}).get("name")
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise ManifestError(
            f"{source}: metadata.name must be a lowercase DNS label of at most 40 characters,"
            f" got {name!r}"
        )
    try:
        spec = FleetSpec.model_validate(document.get("spec") or {})
    except ValidationError as exc:
        problems = "; ".join(
            f"spec.{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise ManifestError(f"{source}: {problems}") from None
    return Fleet(name=name, spec=spec)


def load_manifest(path: str | Path) -> list[Fleet]:
    """Read every StoreFleet in a YAML file (several documents allowed)."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ManifestError(f"cannot read {path}: {exc.strerror}") from None
    try:
        documents = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        raise ManifestError(f"{path}: not valid YAML: {exc}") from None
    if not documents:
        raise ManifestError(f"{path}: no StoreFleet document found")
    fleets = [parse_fleet(doc, f"{path} document {i + 1}") for i, doc in enumerate(documents)]
    names = [f.name for f in fleets]
    if len(set(names)) != len(names):
        raise ManifestError(f"{path}: fleet names must be unique, got {names}")
    return fleets
