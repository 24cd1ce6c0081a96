"""The JSON forms of the HTTP/JSON API's messages. Pure functions: no I/O.

An ``Any`` (a command, a state, a ``meta.data`` value) has two forms:

- base64 of the serialized ``google.protobuf.Any`` (type URL and value), a JSON string:
  Chief of State's form, which every client can use;
- protobuf's JSON form of ``Any`` (``{"@type": "type.googleapis.com/pkg.Msg", ...}``), an
  object: for the message types of ``COS_PROTO_DESCRIPTORS``.

A request may send either. A reply shows a value as JSON when its type (and every ``Any``
nested in it) is known, as base64 otherwise, and always as base64 when the caller asks
for it (``?encoding=base64``).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from typing import TypeAlias

from google.protobuf import any_pb2, descriptor_pool, json_format
from google.protobuf.message import DecodeError

from chief_of_state.v1 import common_pb2, persistence_pb2
from cos.errors import InvalidRequestError, shorten
from cos.http._descriptors import DescriptorSet, load_pool
from cos.writeside import EntityState

Json: TypeAlias = "dict[str, Json] | list[Json] | str | int | float | bool | None"
_PARSE_ERRORS = (json_format.ParseError, DecodeError, ValueError, TypeError, RecursionError)


class AnyCodec:
    """Converts ``Any`` values to and from JSON, knowing the types of ``pool`` (none
    without one: then every value is base64, as in Chief of State)."""

    def __init__(self, pool: descriptor_pool.DescriptorPool | None = None) -> None:
        self._pool = pool

    def knows(self, type_url: str) -> bool:
        """Whether the message type named by ``type_url`` is in the pool."""
        if self._pool is None:
            return False
        try:
            self._pool.FindMessageTypeByName(type_url.rsplit("/", 1)[-1])
        except KeyError:
            return False
        return True

    def to_json(self, value: any_pb2.Any, *, base64_only: bool = False) -> Json:
        """``value`` as a JSON object when its type is known, else as a base64 string."""
        if base64_only or not self.knows(value.type_url):
            return to_base64(value)
        try:
            return json_format.MessageToDict(
                value, preserving_proto_field_name=True, descriptor_pool=self._pool
            )
        except (TypeError, ValueError, DecodeError):  # an unknown nested Any, bad bytes
            return to_base64(value)

    def from_json(self, value: Json, field: str) -> any_pb2.Any:
        """The ``Any`` sent as ``value`` in ``field``: a base64 string, a JSON object with
        ``"@type"``, or nothing (an empty ``Any``); raises :class:`InvalidRequestError`."""
        if value is None:
            return any_pb2.Any()
        if isinstance(value, str):
            return from_base64(value, field)
        if isinstance(value, dict):
            return self._from_object(value, field)
        raise InvalidRequestError(
            f'{field} must be a base64 string or a JSON object with "@type",'
            f" not {_json_type(value)}"
        )

    def _from_object(self, value: dict[str, Json], field: str) -> any_pb2.Any:
        type_url = value.get("@type")
        if not isinstance(type_url, str) or not type_url:
            raise InvalidRequestError(f'{field} is a JSON object without "@type" (a string)')
        if not self.knows(type_url):
            raise InvalidRequestError(
                f"{field} has @type {shorten(type_url)}, a type no descriptor set of"
                " COS_PROTO_DESCRIPTORS holds: send it as base64 or add its descriptor set"
            )
        try:
            return json_format.ParseDict(value, any_pb2.Any(), descriptor_pool=self._pool)
        except _PARSE_ERRORS as exc:
            raise InvalidRequestError(
                f"{field} is not a valid {type_url.rsplit('/', 1)[-1]}: {shorten(str(exc), 300)}"
            ) from None


def to_base64(value: any_pb2.Any) -> str:
    """The serialized ``Any``, base64 encoded (Chief of State's form)."""
    return base64.b64encode(value.SerializeToString(deterministic=True)).decode("ascii")


def from_base64(text: str, field: str) -> any_pb2.Any:
    """The ``Any`` serialized in ``text`` (standard or URL-safe base64, padding optional)."""
    normal = text.replace("-", "+").replace("_", "/")
    normal += "=" * (-len(normal) % 4)
    try:
        data = base64.b64decode(normal, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequestError(
            f"{field} is not valid base64 (or a JSON object with @type): {shorten(text)}"
        ) from None
    try:
        return any_pb2.Any.FromString(data)
    except DecodeError:
        raise InvalidRequestError(
            f"{field} is base64 but not a serialized google.protobuf.Any"
        ) from None


def meta_to_json(
    meta: common_pb2.MetaData, codec: AnyCodec, *, base64_only: bool = False
) -> dict[str, Json]:
    """``MetaData`` with snake_case names; ``revision_date`` in RFC 3339 (ISO 8601, UTC)."""
    result: dict[str, Json] = {
        "entity_id": meta.entity_id,
        "revision_number": meta.revision_number,
    }
    if meta.HasField("revision_date"):
        result["revision_date"] = meta.revision_date.ToJsonString()
    if meta.data:
        result["data"] = {
            key: codec.to_json(meta.data[key], base64_only=base64_only) for key in sorted(meta.data)
        }
    if meta.headers:
        result["headers"] = [
            json_format.MessageToDict(header, preserving_proto_field_name=True)
            for header in meta.headers
        ]
    return result


def state_to_json(
    result: EntityState, codec: AnyCodec, *, base64_only: bool = False
) -> dict[str, Json]:
    """A ``ProcessCommandResponse`` or ``GetStateResponse``: ``state`` and ``meta``."""
    return {
        "state": codec.to_json(result.state, base64_only=base64_only),
        "meta": meta_to_json(result.meta, codec, base64_only=base64_only),
    }


def event_to_json(
    wrapper: persistence_pb2.EventWrapper, codec: AnyCodec, *, base64_only: bool = False
) -> dict[str, Json]:
    """A stored event (``cos.v1.GetEventsResponse``): ``event``, ``resulting_state``, ``meta``."""
    return {
        "event": codec.to_json(wrapper.event, base64_only=base64_only),
        "resulting_state": codec.to_json(wrapper.resulting_state, base64_only=base64_only),
        "meta": meta_to_json(wrapper.meta, codec, base64_only=base64_only),
    }


def _json_type(value: Json) -> str:
    names = {bool: "a boolean", int: "a number", float: "a number", list: "an array"}
    return names.get(type(value), type(value).__name__)


def codec_for(sets: Sequence[DescriptorSet]) -> AnyCodec:
    """The codec knowing the types of the descriptor sets (COS_PROTO_DESCRIPTORS);
    :class:`DescriptorsError` when one is unusable."""
    return AnyCodec(load_pool(sets)) if sets else AnyCodec()
