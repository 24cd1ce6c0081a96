"""The OpenAPI 3 document of the HTTP/JSON API, served at ``/openapi.json``."""

from __future__ import annotations

from cos.http._convert import Json

_REF = "#/components/schemas/"


def _json(schema: str) -> dict[str, Json]:
    return {"application/json": {"schema": {"$ref": _REF + schema}}}


def _answer(description: str, schema: str = "Status") -> dict[str, Json]:
    return {"description": description, "content": _json(schema)}


_ENTITY_ID: Json = {
    "name": "entityId",
    "in": "path",
    "required": True,
    "description": "the entity's id (URL-encoded); it wins over a body's entity_id",
    "schema": {"type": "string", "minLength": 1},
}
_ENCODING: Json = {
    "name": "encoding",
    "in": "query",
    "required": False,
    "description": "base64: every Any of the reply as base64, as Chief of State sends it;"
    " auto (default): known types as JSON",
    "schema": {"type": "string", "enum": ["auto", "base64"], "default": "auto"},
}


def _count(name: str, description: str, default: int | None = None) -> dict[str, Json]:
    schema: dict[str, Json] = {"type": "integer", "minimum": 0, "maximum": 2**32 - 1}
    if default is not None:
        schema["default"] = default
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema,
    }


_REVISION = _count(
    "revision",
    "the state right after this past revision (1 or more);"
    " unset: the current state (GetStateAt of cos.v1.HistoryService)",
)
_EVENTS_PARAMETERS: list[Json] = [
    _ENTITY_ID,
    _ENCODING,
    _count("from_revision", "the first revision (0 or 1: the first)", 0),
    _count("to_revision", "the last revision (0: the newest)", 0),
    _count("limit", "at most this many events, 1 to 1000", 100),
]
_ERRORS: dict[str, Json] = {
    "400": _answer("the request is unusable (bad JSON, base64, @type, entity id, size)"),
    "404": _answer("the entity has no revision yet"),
    "default": _answer("any other failure, as google.rpc.Status (see docs/api.md)"),
}

_SCHEMAS: dict[str, Json] = {
    "AnyValue": {
        "description": "google.protobuf.Any: base64 of the serialized Any, or protobuf's"
        ' JSON form ({"@type": ..., fields}) for types of COS_PROTO_DESCRIPTORS',
        "oneOf": [
            {"type": "string", "format": "byte"},
            {
                "type": "object",
                "required": ["@type"],
                "properties": {"@type": {"type": "string"}},
                "additionalProperties": True,
            },
        ],
    },
    "Header": {
        "type": "object",
        "properties": {
            "key": {"type": "string"},
            "string_value": {"type": "string"},
            "bytes_value": {"type": "string", "format": "byte"},
        },
    },
    "MetaData": {
        "type": "object",
        "required": ["entity_id", "revision_number"],
        "properties": {
            "entity_id": {"type": "string"},
            "revision_number": {"type": "integer", "format": "int64", "minimum": 0},
            "revision_date": {"type": "string", "format": "date-time"},
            "data": {"type": "object", "additionalProperties": {"$ref": _REF + "AnyValue"}},
            "headers": {"type": "array", "items": {"$ref": _REF + "Header"}},
        },
    },
    "ProcessCommandRequest": {
        "type": "object",
        "properties": {
            "entity_id": {"type": "string", "description": "optional; the path's id wins"},
            "command": {"$ref": _REF + "AnyValue"},
        },
        "required": ["command"],
    },
    "StateResponse": {
        "type": "object",
        "required": ["state", "meta"],
        "properties": {
            "state": {"$ref": _REF + "AnyValue"},
            "meta": {"$ref": _REF + "MetaData"},
        },
    },
    "EventsResponse": {
        "type": "object",
        "required": ["events"],
        "properties": {
            "events": {"type": "array", "items": {"$ref": _REF + "StoredEvent"}},
        },
    },
    "StoredEvent": {
        "type": "object",
        "required": ["event", "resulting_state", "meta"],
        "properties": {
            "event": {"$ref": _REF + "AnyValue"},
            "resulting_state": {"$ref": _REF + "AnyValue"},
            "meta": {"$ref": _REF + "MetaData"},
        },
    },
    "Status": {
        "type": "object",
        "description": "google.rpc.Status as JSON; error repeats message, as Chief of State",
        "required": ["code", "message", "details", "error"],
        "properties": {
            "code": {"type": "integer", "description": "the gRPC status code"},
            "message": {"type": "string"},
            "details": {"type": "array", "items": {"$ref": _REF + "AnyValue"}},
            "error": {"type": "string"},
        },
    },
}


def openapi_document() -> dict[str, Json]:
    """The document (a fresh dict each call)."""
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "cos HTTP/JSON API",
            "version": "1",
            "description": "Chief of State's HTTP API: ProcessCommand and GetState, and an"
            " entity's history. Request headers become the call's metadata.",
        },
        "paths": {
            "/v1/commands/{entityId}/process": {
                "post": {
                    "operationId": "processCommand",
                    "summary": "Run a command on an entity (ProcessCommand)",
                    "parameters": [_ENTITY_ID, _ENCODING],
                    "requestBody": {"required": True, "content": _json("ProcessCommandRequest")},
                    "responses": {"200": _answer("the new state", "StateResponse"), **_ERRORS},
                }
            },
            "/v1/entities/{entityId}/state": {
                "get": {
                    "operationId": "getState",
                    "summary": "The entity's current state (GetState), or at a past revision",
                    "parameters": [_ENTITY_ID, _ENCODING, _REVISION],
                    "responses": {"200": _answer("the state", "StateResponse"), **_ERRORS},
                }
            },
            "/v1/entities/{entityId}/events": {
                "get": {
                    "operationId": "getEvents",
                    "summary": "The entity's stored events in revision order (GetEvents)",
                    "parameters": _EVENTS_PARAMETERS,
                    "responses": {"200": _answer("the events", "EventsResponse"), **_ERRORS},
                }
            },
        },
        "components": {"schemas": _SCHEMAS},
    }
