"""The webhook's OpenAPI 3.1 document, served on GET /openapi.json."""

from __future__ import annotations

from typing import Any

from storefleet import __version__
from storefleet.ingest.settings import IngestSettings
from storefleet.ingest.validation import EVENT_TYPES, MAX_PRICE

_ERROR = {
    "type": "object",
    "properties": {
        "error": {"type": "string"},
        "invalid": {"type": "integer", "description": "number of bad events (400 only)"},
        "errors": {
            "type": "array",
            "description": "the first 100 bad events: index in the batch and the reason",
            "items": {
                "type": "object",
                "properties": {
                    "index": {"type": "integer"},
                    "line": {"type": "integer"},
                    "reason": {"type": "string"},
                },
            },
        },
        "retry_after_s": {"type": "integer"},
    },
    "required": ["error"],
}

EVENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["event_id", "ts", "store_id", "user_id", "type"],
    "properties": {
        "event_id": {"type": "string", "minLength": 1, "maxLength": 64},
        "ts": {"type": "string", "format": "date-time", "example": "2026-11-26T16:00:00.123Z"},
        "store_id": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"},
        "user_id": {"type": "integer", "minimum": 0},
        "type": {"type": "string", "enum": sorted(EVENT_TYPES)},
        "product_id": {
            "type": ["integer", "null"],
            "minimum": 0,
            "description": "required for product_view, add_to_cart, purchase",
        },
        "quantity": {
            "type": ["integer", "null"],
            "minimum": 1,
            "description": "add_to_cart and purchase only; default 1",
        },
        "unit_price": {
            "type": ["number", "null"],
            "minimum": 0,
            "maximum": MAX_PRICE,
            "description": "required for purchase: price paid per unit after any coupon",
        },
        "coupon_code": {"type": ["string", "null"], "description": "purchase only"},
    },
}


def _responses(accepted: str) -> dict[str, Any]:
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    return {
        "202": {
            "description": accepted,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "properties": {"accepted": {"type": "integer"}},
                    }
                }
            },
        },
        "400": {"description": "malformed body or invalid events; nothing accepted",
                "content": error},
        "401": {"description": "missing or wrong bearer token", "content": error},
        "413": {"description": "body or batch too large", "content": error},
        "503": {
            "description": "Kafka unavailable or saturated; nothing guaranteed accepted, retry",
            "headers": {"Retry-After": {"schema": {"type": "integer"}}},
            "content": error,
        },
    }


def openapi_document(settings: IngestSettings) -> dict[str, Any]:
    paths: dict[str, Any] = {
        "/v1/events": {
            "post": {
                "summary": "Ingest behaviour events",
                "description": (
                    f"A JSON array or NDJSON of at most {settings.max_events} events and "
                    f"{settings.max_body_bytes} bytes. Answered 202 only once Kafka acknowledged "
                    "every event. A batch with any invalid event is refused whole."
                ),
                "security": [{"bearer": []}],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "array",
                                "items": {"$ref": "#/components/schemas/Event"},
                            }
                        },
                        "application/x-ndjson": {"schema": {"type": "string"}},
                    },
                },
                "responses": _responses("every event is in Kafka"),
            }
        },
        "/healthz": {"get": {"summary": "Liveness", "responses": {"200": {"description": "up"}}}},
        "/readyz": {
            "get": {
                "summary": "Readiness: the Kafka topic is reachable",
                "responses": {"200": {"description": "ready"}, "503": {"description": "not"}},
            }
        },
        "/metrics": {
            "get": {"summary": "Prometheus metrics", "responses": {"200": {"description": "ok"}}}
        },
    }
    if settings.legacy_enabled:
        paths["/log"] = {
            "post": {
                "summary": "Ingest the original system's text lines",
                "description": (
                    "One line per event: `<ns>;<store_id>;User;<user_id>;<stimulus>;<content>`. "
                    "The event id is derived from the line, so a line posted twice is one event."
                ),
                "security": [{"bearer": []}],
                "requestBody": {
                    "required": True,
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                },
                "responses": _responses("every line's event is in Kafka"),
            }
        }
    return {
        "openapi": "3.1.0",
        "info": {"title": "StoreFleet ingest webhook", "version": __version__},
        "paths": paths,
        "components": {
            "schemas": {"Event": EVENT_SCHEMA, "Error": _ERROR},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
