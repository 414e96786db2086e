"""The Redis contract of the insights: key and channel names, metrics, JSON shape.

Readers (the dashboard, `storefleet insights show`, users' tools) import this module only; it
needs neither Spark nor PostgreSQL.

- key `storefleet:insights:<scope>:<metric>` holds the latest value; a scope is a store id,
  `ALL:<fleet>` (that fleet's stores) or `ALL` (every store of the platform); ':' is never in a
  store id, so the names cannot collide. It holds the value
  as JSON: {"scope", "metric", "window_start", "window_end", "value", "updated_at"}; times are
  RFC 3339 UTC strings. A key only moves forward in time: an update of an older window (a late
  event) goes to the PostgreSQL history but does not replace a newer value in Redis.
- channel `storefleet:insights:<scope>` carries one notice per update:
  {"scope", "metric", "key", "window_start"}. Subscribe to `storefleet:insights:*` for all.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

PREFIX = "storefleet:insights"
ALL = "ALL"
FLEET_ALL_PREFIX = ALL + ":"

# metric -> what its "value" is
METRICS: dict[str, str] = {
    "product_views": "int: product_view events in the minute",
    "units_purchased": "int: Σ quantity of purchases in the minute",
    "revenue": "number: Σ quantity × unit_price of purchases in the minute",
    "unique_viewers": "list of {store_id, product_id, users}: distinct viewers per product "
                      "in the minute, most first",
    "top_purchased": "list of {rank, store_id, product_id, units}: last hour, most units first",
    "top_viewed": "list of {rank, store_id, product_id, views}: last hour, most views first",
    "views_before_purchase": "{purchases, median, mean}: views of the product by the buyer "
                             "before each purchase of the last hour",
    "oversold": "{oversold_units, products_affected}: units sold beyond stock in the minute",
    "errors": "{<component>: count}: DataCat Error lines in the minute",
}


def fleet_all(fleet: str) -> str:
    """The scope of one fleet's stores: `ALL:<fleet>`."""
    return FLEET_ALL_PREFIX + fleet


def fleet_of_scope(scope: str) -> str | None:
    """`ALL:<fleet>` -> fleet; any other scope -> None."""
    return scope[len(FLEET_ALL_PREFIX):] if scope.startswith(FLEET_ALL_PREFIX) else None


def key(scope: str, metric: str) -> str:
    return f"{PREFIX}:{scope}:{metric}"


def channel(scope: str) -> str:
    return f"{PREFIX}:{scope}"


def rfc3339(moment: datetime) -> str:
    """UTC, second precision with a Z; fixed width so strings compare like times."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class InsightValue:
    scope: str
    metric: str
    window_start: datetime
    window_end: datetime
    value: Any

    def payload(self, updated_at: datetime | None = None) -> dict[str, Any]:
        return {
            "scope": self.scope,
            "metric": self.metric,
            "window_start": rfc3339(self.window_start),
            "window_end": rfc3339(self.window_end),
            "value": self.value,
            "updated_at": (updated_at or datetime.now(UTC)).isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
        }

    def notice(self) -> dict[str, Any]:
        return {
            "scope": self.scope,
            "metric": self.metric,
            "key": key(self.scope, self.metric),
            "window_start": rfc3339(self.window_start),
        }


def read_latest(client: Any, scope: str) -> dict[str, Any]:
    """Every metric's latest payload for `scope` (a redis.Redis client); missing ones omitted."""
    names = list(METRICS)
    values = client.mget([key(scope, m) for m in names])
    return {m: json.loads(v) for m, v in zip(names, values, strict=True) if v is not None}
