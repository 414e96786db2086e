"""The webhook's OpenAPI 3.1 document, served on GET /openapi.json.

The event schema is generated from the contract (events.contract.Event); only the paths and the
error shape are written here.
"""

from __future__ import annotations

from typing import Any

from storefleet import __version__
from storefleet.events.contract import openapi_schema
from storefleet.ingest.settings import IngestSettings

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

def event_schemas() -> dict[str, Any]:
    """The component schemas of the event, generated from the contract's msgspec Struct."""
    _, components = openapi_schema()
    return components


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
        "400": {"description": "malformed body, invalid events, an event_id twice, or an "
                "event time outside the window; nothing accepted", "content": error},
        "401": {"description": "missing or wrong bearer token", "content": error},
        "403": {"description": "a fleet token posting for a store of another fleet",
                "content": error},
        "408": {"description": "headers or body not received within their deadline",
                "content": error},
        "413": {"description": "body or batch too large", "content": error},
        "431": {"description": "request line and headers too large", "content": error},
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
                    "The event id is derived from the line, so a line posted twice is one event. "
                    "One bad line refuses the whole body."
                ),
                "security": [{"bearer": []}, {"queryToken": []}] if settings.url_token
                else [{"bearer": []}],
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
            "schemas": {**event_schemas(), "Error": _ERROR},
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "queryToken": {"type": "apiKey", "in": "query", "name": "token",
                               "description": "POST /log only; STOREFLEET_INGEST_URL_TOKEN"},
            },
        },
    }
