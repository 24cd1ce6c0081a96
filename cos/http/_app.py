"""The Starlette application of the HTTP/JSON API: Chief of State's two routes over the
node's chain of interceptors, and ``/openapi.json``.

Requests take the same path as gRPC calls (``cos.service.command``), with the request
headers as the call's metadata, so propagated and persisted headers, the trace context
and the ``x-cos-*`` extension headers work the same.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from cos.errors import InvalidRequestError, shorten
from cos.history import HistoryReader
from cos.http._convert import AnyCodec, Json, event_to_json, state_to_json
from cos.http._openapi import openapi_document
from cos.http._status import failure, status_body
from cos.transport import FORWARDED, Metadata
from cos.writeside import CommandHandler, process_command, read_state

# Headers of the HTTP connection itself, not of the call; FORWARDED marks calls between
# nodes and no client may set it.
_NOT_METADATA = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
        FORWARDED,
    }
)
_ENCODINGS = ("auto", "base64")
EVENTS_LIMIT = 100  # events per reply by default; at most EVENTS_LIMIT_MAX
EVENTS_LIMIT_MAX = 1000
_UINT32 = 2**32 - 1


class JsonResponse(JSONResponse):
    """JSON in ASCII: a lone surrogate a client sent cannot break the encoding."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, separators=(",", ":")).encode("ascii")


class HttpApi:
    """The route handlers, over ``commands`` (the node's chain of interceptors)."""

    def __init__(
        self,
        commands: CommandHandler,
        history: HistoryReader,
        *,
        codec: AnyCodec,
        max_message: int,
    ) -> None:
        self._commands = commands
        self._history = history
        self._codec = codec
        self._max_message = max_message
        # A command in base64 or JSON takes more room than in protobuf.
        self._max_body = 2 * max_message

    async def process(self, request: Request) -> Response:
        """``POST /v1/commands/{entityId}/process``."""
        return await self._answer(request, "ProcessCommand", self._process)

    async def state(self, request: Request) -> Response:
        """``GET /v1/entities/{entityId}/state``, or ``?revision=N``: the state then."""
        if "revision" in request.query_params:
            return await self._answer(request, "GetStateAt", self._state_at)
        return await self._answer(request, "GetState", self._state)

    async def events(self, request: Request) -> Response:
        """``GET /v1/entities/{entityId}/events``: stored events (``HistoryService``)."""
        return await self._answer(request, "GetEvents", self._events)

    async def openapi(self, request: Request) -> Response:
        """``GET /openapi.json``."""
        return JsonResponse(openapi_document())

    async def _process(self, request: Request, base64_only: bool) -> Json:
        body = _object(await _read_body(request, self._max_body))
        entity_id = request.path_params["entity_id"]  # the path wins over the body
        command = self._codec.from_json(body.get("command"), "command")
        if command.ByteSize() > self._max_message:
            raise InvalidRequestError(
                f"the command takes {command.ByteSize()} bytes; the largest message is"
                f" {self._max_message} bytes (COS_MAX_MESSAGE_BYTES)"
            )
        result = await process_command(self._commands, entity_id, command, metadata_of(request))
        return state_to_json(result, self._codec, base64_only=base64_only)

    async def _state(self, request: Request, base64_only: bool) -> Json:
        entity_id = request.path_params["entity_id"]
        result = await read_state(self._commands, entity_id, metadata_of(request))
        return state_to_json(result, self._codec, base64_only=base64_only)

    async def _state_at(self, request: Request, base64_only: bool) -> Json:
        revision = _number(request, "revision", None)
        result = await self._history.state_at(request.path_params["entity_id"], revision)
        return state_to_json(result, self._codec, base64_only=base64_only)

    async def _events(self, request: Request, base64_only: bool) -> Json:
        limit = _number(request, "limit", EVENTS_LIMIT)
        if not 1 <= limit <= EVENTS_LIMIT_MAX:
            raise InvalidRequestError(f"limit must be 1 to {EVENTS_LIMIT_MAX}, not {limit}")
        events = self._history.events(
            request.path_params["entity_id"],
            _number(request, "from_revision", 0),
            _number(request, "to_revision", 0),
            limit,
        )
        found: list[Json] = [
            event_to_json(wrapper, self._codec, base64_only=base64_only) async for wrapper in events
        ]
        return {"events": found}

    async def _answer(
        self,
        request: Request,
        method: str,
        call: Callable[[Request, bool], Awaitable[Json]],
    ) -> Response:
        """The call's JSON, or its failure as a status (the servicer's mapping)."""
        try:
            return JsonResponse(await call(request, _base64_only(request)))
        except Exception as exc:
            code, body = failure(exc, method, self._codec)
            return JsonResponse(body, status_code=code)


def build_app(
    commands: CommandHandler, history: HistoryReader, *, codec: AnyCodec, max_message: int
) -> Starlette:
    """The application; ``max_message`` (COS_MAX_MESSAGE_BYTES) caps a command, twice it
    a request body."""
    api = HttpApi(commands, history, codec=codec, max_message=max_message)
    routes = [
        Route("/v1/commands/{entity_id:path}/process", api.process, methods=["POST"]),
        Route("/v1/entities/{entity_id:path}/state", api.state, methods=["GET"]),
        Route("/v1/entities/{entity_id:path}/events", api.events, methods=["GET"]),
        Route("/openapi.json", api.openapi, methods=["GET"]),
    ]
    return Starlette(routes=routes, exception_handlers={HTTPException: _http_error})


def metadata_of(request: Request) -> Metadata:
    """The request headers as call metadata: keys lower case, ``-bin`` values decoded
    from base64 (as gRPC's text form carries them)."""
    entries: list[tuple[str, str | bytes]] = []
    for raw_key, raw_value in request.headers.raw:
        key = raw_key.decode("latin-1").lower()
        if key in _NOT_METADATA:
            continue
        value = raw_value.decode("latin-1")
        if key.endswith("-bin"):
            entries.append((key, _binary(key, value)))
        elif value.isascii() and value.isprintable():
            entries.append((key, value))
        else:
            raise InvalidRequestError(
                f"header {key} is not printable ASCII, which call metadata cannot carry"
                " (send bytes in base64 in a header named *-bin)"
            )
    return tuple(entries)


def _binary(key: str, value: str) -> bytes:
    try:
        return base64.b64decode(value + "=" * (-len(value) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequestError(
            f"header {key} is not base64 (a -bin header carries bytes)"
        ) from None


def _number(request: Request, name: str, default: int | None) -> int:
    """A query parameter that is a revision or a count (0 to 2^32-1)."""
    text = request.query_params.get(name)
    if text is None and default is not None:
        return default
    if text is None or not text.isdigit() or int(text) > _UINT32:
        raise InvalidRequestError(
            f"{name} must be a whole number from 0 to {_UINT32}, not {shorten(text or '')}"
        )
    return int(text)


def _base64_only(request: Request) -> bool:
    encoding = request.query_params.get("encoding", "auto")
    if encoding not in _ENCODINGS:
        raise InvalidRequestError(f"encoding must be auto or base64, not {shorten(encoding)}")
    return encoding == "base64"


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, refused once it passes ``limit`` bytes (before reading it all)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(int(declared), limit)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(size, limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(size: int, limit: int) -> InvalidRequestError:
    return InvalidRequestError(
        f"request body is larger than {limit} bytes (twice COS_MAX_MESSAGE_BYTES):"
        f" {size} bytes or more"
    )


def _object(body: bytes) -> dict[str, Json]:
    try:
        value = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise InvalidRequestError(f"request body is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise InvalidRequestError("request body must be a JSON object")
    entity_id = value.get("entity_id")
    if entity_id is not None and not isinstance(entity_id, str):
        raise InvalidRequestError("entity_id must be a string")
    return value


async def _http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own refusals (no such route, wrong method) as a status too."""
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    code = {404: grpc.StatusCode.NOT_FOUND, 405: grpc.StatusCode.UNIMPLEMENTED}.get(
        status, grpc.StatusCode.INVALID_ARGUMENT
    )
    detail = exc.detail if isinstance(exc, HTTPException) else str(exc)
    message = f"{request.method} {shorten(request.url.path, 200)}: {detail}"
    return JsonResponse(status_body(code, message, [], AnyCodec()), status_code=status)
