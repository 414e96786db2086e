"""What a client may ask the price-monitor service, checked the same way for HTTP and Redis.

A deals request: months M (1..60), discount D% (0 < D < 100), optionally a store, a limit (>= 1)
and an instant `at` to evaluate at (default now). A watch request: months, discount, optionally a
store and an owner label. A bad field is refused before any query runs, with an error naming it
(`RequestError`, HTTP 400); an unknown store is refused by the service (`NotFound`, HTTP 404).
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from storefleet.events.bounds import MAX_ID_CHARS, store_id_problem
from storefleet.prices.monitor import MAX_MONTHS, MIN_MONTHS, check_discount, check_months

MAX_OWNER_CHARS = 128


class RequestError(ValueError):
    """A bad request field: `field` names it, the message says what is wrong."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field

    def as_json(self) -> dict[str, str]:
        return {"error": str(self), "field": self.field}


class NotFound(LookupError):
    """Something named by the request does not exist (an unknown store or watch)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field

    def as_json(self) -> dict[str, str]:
        return {"error": str(self), "field": self.field}


def _months(value: Any) -> int:
    return check_months(value)


def _discount(value: Any) -> Decimal:
    return check_discount(value)


def _store(value: Any) -> str | None:
    if value is None or value == "":
        return None
    problem = store_id_problem(value)
    if problem:
        raise ValueError(problem)
    return value


class DealsRequest(BaseModel):
    """GET /v1/deals query parameters, or the fields of a Redis request."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    months: int = Field(ge=MIN_MONTHS, le=MAX_MONTHS,
                        description="Period M in months (a month is 30.44 days).")
    discount: Decimal = Field(gt=0, lt=100,
                              description="Discount D in percent below the period's average.")
    store: str | None = Field(None, max_length=MAX_ID_CHARS,
                              description="Only this store_id (404 when unknown).")
    limit: int | None = Field(None, ge=1, description="At most this many deals, the best.")
    at: datetime | None = Field(None, description="Evaluate as of this instant (RFC 3339; "
                                                  "default now).")

    _check_months = field_validator("months", mode="before")(_months)
    _check_discount = field_validator("discount", mode="before")(_discount)
    _check_store = field_validator("store", mode="before")(_store)

    @field_validator("limit", mode="before")
    @classmethod
    def _check_limit(cls, value: Any) -> Any:
        if value is None or value == "":
            return None
        try:
            number = int(str(value).strip())
        except ValueError:
            raise ValueError(f"limit must be a whole number, got {value!r}") from None
        if number < 1:
            raise ValueError(f"limit must be at least 1, got {number}")
        return number

    @field_validator("at", mode="after")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class WatchRequest(BaseModel):
    """POST /v1/watches body: a standing watch."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    months: int = Field(ge=MIN_MONTHS, le=MAX_MONTHS, description="Period M in months.")
    discount: Decimal = Field(gt=0, lt=100, description="Discount D in percent.")
    store: str | None = Field(None, max_length=MAX_ID_CHARS, description="Only this store_id.")
    owner: str | None = Field(None, max_length=MAX_OWNER_CHARS,
                              description="A label to list one user's watches by.")

    _check_months = field_validator("months", mode="before")(_months)
    _check_discount = field_validator("discount", mode="before")(_discount)
    _check_store = field_validator("store", mode="before")(_store)


def first_error(errors: list[dict[str, Any]]) -> RequestError:
    """The first pydantic error as a RequestError naming its field."""
    error = errors[0]
    location = [str(part) for part in error.get("loc", ()) if part not in ("query", "body")]
    field = location[0] if location else "request"
    if error.get("type") == "missing":
        return RequestError(field, f"{field} is required")
    if error.get("type") == "extra_forbidden":
        return RequestError(field, f"{field} is not a known field")
    message = str(error.get("msg", "invalid"))
    message = message.removeprefix("Value error, ")
    if not message.startswith(field):
        message = f"{field}: {message}"
    return RequestError(field, message)


def parse_deals_request(fields: dict[str, Any]) -> DealsRequest:
    """A DealsRequest from loose fields (JSON or query strings), else RequestError."""
    try:
        return DealsRequest.model_validate(fields)
    except ValidationError as exc:
        raise first_error(exc.errors()) from None


def parse_watch_request(fields: Any) -> WatchRequest:
    if not isinstance(fields, dict):
        raise RequestError("body", "the body must be a JSON object")
    try:
        return WatchRequest.model_validate(fields)
    except ValidationError as exc:
        raise first_error(exc.errors()) from None
