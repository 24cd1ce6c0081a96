"""What a request or a handler reply may hold, checked before anything is written.

A value the journal cannot store (a NUL byte, an index row over PostgreSQL's limit) or a
message no client could receive must fail its own command with a clear status, before it
joins a group-commit transaction where it would fail the commands of other entities too.
Pure functions: no I/O.
"""

from __future__ import annotations

from google.protobuf import any_pb2

from chief_of_state.v1 import persistence_pb2
from cos.errors import HandlerReplyError, InvalidRequestError, TooLargeError, shorten

# PostgreSQL indexes (entity_id, revision) in a B-tree, whose rows must stay under
# ~2.7 kB; ids are far shorter in practice.
MAX_ENTITY_ID_BYTES = 1024
MAX_TYPE_URL_CHARS = 2048
# What a HandleReadSideRequest adds to an event record: the read side id and field tags.
_READ_SIDE_HEADROOM = 1024


def check_entity_id(entity_id: str) -> None:
    """Raise :class:`InvalidRequestError` for an id the journal cannot key."""
    if not entity_id:
        raise InvalidRequestError("empty entity ID")  # Chief of State's words: clients match them
    size = len(entity_id.encode())
    if size > MAX_ENTITY_ID_BYTES:
        raise InvalidRequestError(
            f"entity ID is {size} bytes; the longest allowed is {MAX_ENTITY_ID_BYTES} bytes"
        )
    if "\x00" in entity_id:
        raise InvalidRequestError(f"entity ID {shorten(entity_id)} contains a NUL character")


def check_command(command: any_pb2.Any) -> None:
    """Raise :class:`InvalidRequestError` for a command that is missing or malformed."""
    if not command.type_url:
        raise InvalidRequestError("no command sent")  # Chief of State's words
    problem = _type_url_problem(command.type_url)
    if problem:
        raise InvalidRequestError(f"the command's type URL {problem}")


def check_event(event: any_pb2.Any, number: int) -> None:
    """Raise :class:`HandlerReplyError` for an event the journal cannot store.

    ``number`` counts the events of the reply from 1. (An ``Any`` with neither type URL
    nor value is no event at all, as in Chief of State; the caller leaves those out.)
    """
    if not event.type_url:
        raise HandlerReplyError(
            f"write handler returned event {number} with a value but no type URL"
        )
    problem = _type_url_problem(event.type_url)
    if problem:
        raise HandlerReplyError(f"write handler returned event {number} whose type URL {problem}")


def check_record_size(record: persistence_pb2.EventWrapper, limit: int) -> None:
    """Raise :class:`TooLargeError` when an event with its resulting state could not be
    delivered to a read handler, or the state sent to a client, within ``limit`` bytes."""
    size = record.ByteSize() + _READ_SIDE_HEADROOM
    if size > limit:
        raise TooLargeError(
            f"event {record.event.type_url.rsplit('/', 1)[-1]!r} of entity"
            f" {shorten(record.meta.entity_id)} with its resulting state takes {size} bytes;"
            f" the largest message is {limit} bytes (COS_MAX_MESSAGE_BYTES): nothing was"
            " written"
        )


def _type_url_problem(type_url: str) -> str:
    if len(type_url) > MAX_TYPE_URL_CHARS:
        return f"is {len(type_url)} characters; the longest allowed is {MAX_TYPE_URL_CHARS}"
    if "\x00" in type_url:
        return f"{shorten(type_url)} contains a NUL character"
    return ""
