"""Command guards, the pure rules: idempotency keys and expected revisions.

A command may carry two request headers:

- ``x-cos-idempotency-key``: a retry of a command already applied under the same key (to
  the same entity, within ``COS_IDEMPOTENCY_WINDOW_SECONDS``) gets the original reply and
  does not run again; the same key with another command is refused.
- ``x-cos-expected-revision``: the command runs only if the entity is at that revision.

The shard runs a command with guards through :class:`Guarded`, in the entity's mailbox,
key first, so they are serial with the entity's other commands. The rules themselves are
pure functions. The key is written in the transaction of the command's events, and the
journal refuses a key another writer recorded meanwhile (``ConflictError``): then the
recorded reply is the answer, if it was this command.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from google.protobuf import any_pb2

from chief_of_state.v1 import persistence_pb2
from cos.errors import (
    ConflictError,
    CosError,
    IdempotencyKeyReusedError,
    InvalidRequestError,
    RevisionMismatchError,
    shorten,
)
from cos.storage import IdempotencyRecord, JournalStore
from cos.transport import Metadata
from cos.writeside._entity import EntityState, initial_state, state_from_event

IDEMPOTENCY_KEY = "x-cos-idempotency-key"
EXPECTED_REVISION = "x-cos-expected-revision"
MAX_KEY_LENGTH = 200
# Revisions are bigint in the journal.
_MAX_REVISION = 2**63 - 1


@dataclass(frozen=True, slots=True)
class KeyUse:
    """A command sent under an idempotency key: the key and the hash of the command."""

    key: str
    command_hash: bytes

    def at(self, revision: int) -> IdempotencyRecord:
        """The record of this command applied, its reply showing ``revision``."""
        return IdempotencyRecord(self.key, self.command_hash, revision)


@dataclass(frozen=True, slots=True)
class Guards:
    """The guards a command carries (None: that header was not sent)."""

    key: KeyUse | None = None
    expected_revision: int | None = None


NO_GUARDS = Guards()


def guards_of(metadata: Metadata, command: any_pb2.Any) -> Guards:
    """The guards of a command from its request headers; raises InvalidRequestError,
    naming the header, for a malformed or repeated one."""
    key = expected = None
    for name, value in metadata:
        if name == IDEMPOTENCY_KEY:
            key = _once(key, name, value)
        elif name == EXPECTED_REVISION:
            expected = _once(expected, name, value)
    if key is None and expected is None:
        return NO_GUARDS
    return Guards(
        None if key is None else KeyUse(parse_key(key), command_hash(command)),
        None if expected is None else parse_revision(expected),
    )


def _once(seen: str | None, name: str, value: str | bytes) -> str:
    if seen is not None:
        raise InvalidRequestError(f"{name}: the header is given more than once")
    if isinstance(value, bytes):  # only -bin headers carry bytes; be safe anyway
        return value.decode("latin-1")
    return value


def parse_key(value: str) -> str:
    """An idempotency key: 1 to 200 printable ASCII characters."""
    if not value:
        raise InvalidRequestError(f"{IDEMPOTENCY_KEY}: the key is empty")
    if len(value) > MAX_KEY_LENGTH:
        raise InvalidRequestError(
            f"{IDEMPOTENCY_KEY}: the key is {len(value)} characters long;"
            f" at most {MAX_KEY_LENGTH} are allowed"
        )
    if not all(" " <= char <= "~" for char in value):
        raise InvalidRequestError(
            f"{IDEMPOTENCY_KEY}: the key {shorten(value)} has characters that are not"
            " printable ASCII"
        )
    return value


def parse_revision(value: str) -> int:
    """An expected revision: a whole number, 0 (a new entity) or more."""
    if not (value.isascii() and value.isdigit()) or int(value) > _MAX_REVISION:
        raise InvalidRequestError(
            f"{EXPECTED_REVISION}: {shorten(value)} is not a revision number"
            " (a whole number, 0 for an entity with no event yet)"
        )
    return int(value)


def command_hash(command: any_pb2.Any) -> bytes:
    """What tells two commands apart: SHA-256 of the type URL and the serialized value."""
    digest = hashlib.sha256(command.type_url.encode())
    digest.update(b"\n")
    digest.update(command.value)
    return digest.digest()


def check_expected_revision(entity_id: str, current: int, expected: int) -> None:
    """Refuse the command when the entity is not at the ``expected`` revision."""
    if current != expected:
        raise RevisionMismatchError(
            f"entity {shorten(entity_id)} is at revision {current}, not at revision"
            f" {expected} ({EXPECTED_REVISION}); the command was not run"
        )


def check_same_command(entity_id: str, record: IdempotencyRecord, key: KeyUse) -> None:
    """Refuse a key already applied to the entity with another command."""
    if record.command_hash != key.command_hash:
        raise IdempotencyKeyReusedError(
            f"{IDEMPOTENCY_KEY} {shorten(key.key)} was already used on entity"
            f" {shorten(entity_id)} with another command (applied at revision"
            f" {record.revision}); a new command needs a new key"
        )


def needs_event(record: IdempotencyRecord, current: EntityState) -> bool:
    """Whether the original reply must be read from the journal (it is not the entity's
    current state, nor a new entity's)."""
    return record.revision not in (0, current.revision)


def original_reply(
    entity_id: str, record: IdempotencyRecord, current: EntityState, event: bytes | None
) -> EntityState:
    """The reply a command applied under ``record`` gave: the state at its revision, from
    ``event`` (the journal's ``EventWrapper`` at that revision) when :func:`needs_event`."""
    if record.revision == current.revision:
        return current
    if record.revision == 0:
        return initial_state(entity_id)
    if event is None:
        raise CosError(
            f"entity {shorten(entity_id)}: the event at revision {record.revision}, recorded"
            f" for {IDEMPOTENCY_KEY} {shorten(record.key)}, is not in the journal"
        )
    return state_from_event(persistence_pb2.EventWrapper.FromString(event))


# Runs the command on the state given, with its key's record when it has a key.
Apply = Callable[[EntityState, "KeyUse | None"], Awaitable[EntityState]]


class Guarded:
    """Runs a command under its guards: a retry under a key already applied gets the
    original reply without running; a command not at its expected revision does not run."""

    def __init__(self, journal: JournalStore) -> None:
        self._journal = journal

    async def run(
        self,
        entity_id: str,
        current: EntityState,
        guards: Guards,
        *,
        apply: Apply,
        reload: Callable[[], Awaitable[EntityState]],
    ) -> EntityState:
        """The command's reply: ``apply`` run on ``current``, or the original reply of the
        command its key records (``reload`` gives the entity's state after a conflict)."""
        key = guards.key
        if key is not None:
            found = await self._journal.find_idempotency(entity_id, key.key)
            if found is not None:
                return await self._replay(entity_id, current, found, key)
        if guards.expected_revision is not None:
            check_expected_revision(entity_id, current.revision, guards.expected_revision)
        try:
            return await apply(current, key)
        except ConflictError:
            if key is None:
                raise
            # The key was recorded meanwhile by another writer of the entity (a zombie
            # owner, a race across a hand-over): its reply is the answer, if it was ours.
            found = await self._journal.find_idempotency(entity_id, key.key)
            if found is None:
                raise
            return await self._replay(entity_id, await reload(), found, key)

    async def _replay(
        self, entity_id: str, current: EntityState, found: IdempotencyRecord, key: KeyUse
    ) -> EntityState:
        """The original reply of the command ``found`` records; the handler is not called."""
        check_same_command(entity_id, found, key)
        event = None
        if needs_event(found, current):
            event = await self._journal.event_at(entity_id, found.revision)
        return original_reply(entity_id, found, current, event)
