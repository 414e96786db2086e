"""Which scopes one insights job computes (STOREFLEET_INSIGHTS_SCOPE), in plain Python.

- `fleet` (needs STOREFLEET_FLEET_NAME): that fleet's stores and `ALL:<fleet>`; events of other
  fleets' stores are not its business;
- `platform`: only `ALL`, over every store (one such job per platform);
- `all` (local mode, the default): every store, every fleet's `ALL:<fleet>` and `ALL`.

Each job's working rows in PostgreSQL are keyed by its `job` label (`fleet:<name>`, `platform`,
`all`), so jobs with different settings never overwrite or prune each other's rows. The Spark
side of the same rules is in transforms.py (`scope_names`, `in_scope`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from storefleet.endpoints import SettingError
from storefleet.events.bounds import fleet_of_store
from storefleet.insights.contract import ALL, fleet_all

SCOPE_ENV = "STOREFLEET_INSIGHTS_SCOPE"
FLEET_ENV = "STOREFLEET_FLEET_NAME"
MODES = ("fleet", "platform", "all")


@dataclass(frozen=True)
class JobScope:
    """`mode` is one of MODES; `fleet` is set exactly when mode is "fleet"."""

    mode: str = "all"
    fleet: str | None = None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise SettingError(f"{SCOPE_ENV} must be one of {', '.join(MODES)}, got {self.mode!r}")
        if (self.mode == "fleet") != bool(self.fleet):
            raise SettingError(f"{SCOPE_ENV}=fleet needs {FLEET_ENV} (and only it uses it)")

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> JobScope:
        """From STOREFLEET_INSIGHTS_SCOPE (default all) and, for `fleet`, STOREFLEET_FLEET_NAME;
        raises SettingError naming the variable when they do not fit."""
        mode = (env.get(SCOPE_ENV) or "all").strip()
        fleet = (env.get(FLEET_ENV) or "").strip() or None
        return cls(mode, fleet if mode == "fleet" else None)

    @property
    def job(self) -> str:
        """The label keying this job's working rows: `fleet:<name>`, `platform` or `all`."""
        return f"fleet:{self.fleet}" if self.mode == "fleet" else self.mode

    @property
    def has_stores(self) -> bool:
        """Whether the job computes per-store scopes (every mode but `platform`)."""
        return self.mode != "platform"

    @property
    def anchor(self) -> str:
        """The widest scope the job computes: `ALL:<fleet>` or `ALL`."""
        return fleet_all(self.fleet) if self.fleet else ALL

    def owns(self, store_id: str) -> bool:
        """Whether events of `store_id` are this job's business."""
        return self.mode != "fleet" or fleet_of_store(store_id) == self.fleet

    def scopes_of(self, store_id: str) -> list[str]:
        """The scopes an event of `store_id` counts in, for this job (empty if not its own)."""
        if not self.owns(store_id):
            return []
        if self.mode == "platform":
            return [ALL]
        fleet = fleet_of_store(store_id)
        scopes = [store_id] + ([fleet_all(fleet)] if fleet else [])
        return scopes + ([ALL] if self.mode == "all" else [])


ALL_SCOPES = JobScope("all")
