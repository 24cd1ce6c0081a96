"""Pure decision logic of an entity: what a handler reply means for its state.

Nothing here does I/O. The shard calls the write handler and the journal; these
functions decide which events count, which revisions they get, what meta they
carry and what gets stored, so the rules are unit-testable on their own.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

from google.protobuf import any_pb2, empty_pb2, timestamp_pb2

from chief_of_state.v1 import common_pb2, persistence_pb2, writeside_pb2
from cos.errors import HandlerReplyError
from cos.storage import EntityAppend, NewEvent, NewSnapshot, Recovered
from cos.transport import Metadata


@dataclass(frozen=True)
class EntityState:
    """The state of an entity after its last persisted revision."""

    state: any_pb2.Any
    meta: common_pb2.MetaData

    @property
    def revision(self) -> int:
        return int(self.meta.revision_number)


def initial_state(entity_id: str) -> EntityState:
    """A new entity: ``Any(Empty)`` at revision 0, as Chief of State defines it."""
    state = any_pb2.Any()
    state.Pack(empty_pb2.Empty())
    return EntityState(state, common_pb2.MetaData(entity_id=entity_id, revision_number=0))


def events_of(reply: writeside_pb2.HandleCommandResponse) -> list[any_pb2.Any]:
    """The events a command produced, in order. Empty ``Any`` values (no type URL and no
    value) are ignored, as in Chief of State; the deprecated single ``event`` field counts
    when ``events`` holds none. A value without a type URL is kept, for the caller to
    refuse (``cos.writeside.limits.check_event``)."""
    events = [event for event in reply.events if event.type_url or event.value]
    if not events and reply.HasField("event") and (reply.event.type_url or reply.event.value):
        events = [reply.event]
    return events


def type_name(value: any_pb2.Any) -> str:
    """The full message name of a packed value (the type URL after its last '/')."""
    return value.type_url.rsplit("/", 1)[-1]


def check_types(values: Iterable[any_pb2.Any], allowed: Sequence[str], what: str) -> None:
    """Refuse a value whose type is not in ``allowed`` (proto validation)."""
    for value in values:
        if type_name(value) not in allowed:
            # Chief of State's words first ("invalid event: <type url>").
            setting = f"COS_WRITE_SIDE_{what.upper()}_PROTOS"
            raise HandlerReplyError(
                f"invalid {what}: {value.type_url} (the write handler returned a type"
                f" not listed in {setting})"
            )


def select_headers(metadata: Metadata, names: Sequence[str]) -> list[tuple[str, str | bytes]]:
    """The request metadata entries whose key is in ``names`` (keys are lower case)."""
    wanted = set(names)
    return [(key, value) for key, value in metadata if key in wanted]


def to_headers(entries: Metadata) -> list[common_pb2.Header]:
    """Metadata entries as ``Header`` messages (``-bin`` keys carry bytes)."""
    headers = []
    for key, value in entries:
        if isinstance(value, bytes):
            headers.append(common_pb2.Header(key=key, bytes_value=value))
        else:
            headers.append(common_pb2.Header(key=key, string_value=value))
    return headers


def event_meta(
    entity_id: str,
    revision: int,
    when: datetime,
    headers: Sequence[common_pb2.Header],
) -> common_pb2.MetaData:
    """Meta of the event that takes the entity to ``revision``."""
    date = timestamp_pb2.Timestamp()
    date.FromDatetime(when)
    return common_pb2.MetaData(
        entity_id=entity_id, revision_number=revision, revision_date=date, headers=headers
    )


def require_state(reply: writeside_pb2.HandleEventResponse, event: any_pb2.Any) -> any_pb2.Any:
    """The resulting state of a ``HandleEvent`` reply; a reply without one is an error."""
    if not reply.HasField("resulting_state") or not reply.resulting_state.type_url:
        raise HandlerReplyError(  # Chief of State's words first
            "event handler replied with empty state: HandleEvent returned no"
            f" resulting_state for event {type_name(event)!r}"
        )
    return reply.resulting_state


def wrap_event(
    event: any_pb2.Any, state: any_pb2.Any, meta: common_pb2.MetaData
) -> persistence_pb2.EventWrapper:
    """The journal record of one event."""
    return persistence_pb2.EventWrapper(event=event, resulting_state=state, meta=meta)


def snapshot_due(before: int, after: int, frequency: int) -> bool:
    """True when the revisions ``before+1..after`` cross a multiple of ``frequency``."""
    return after // frequency > before // frequency


def state_from_event(wrapper: persistence_pb2.EventWrapper) -> EntityState:
    """The entity state recorded with its newest event."""
    return EntityState(wrapper.resulting_state, wrapper.meta)


def state_from_snapshot(wrapper: persistence_pb2.StateWrapper) -> EntityState:
    """The entity state recorded in a snapshot."""
    return EntityState(wrapper.state, wrapper.meta)


def build_append(
    entity_id: str,
    before: int,
    wrappers: Sequence[persistence_pb2.EventWrapper],
    snapshot_frequency: int | None,
) -> EntityAppend:
    """The journal append of one command: its events and, when due, a snapshot of
    the last state (``snapshot_frequency=None`` disables snapshots)."""
    events = [
        NewEvent(
            revision=int(w.meta.revision_number),
            event_type=type_name(w.event),
            created_at=w.meta.revision_date.ToDatetime(tzinfo=timezone.utc),
            payload=w.SerializeToString(),
        )
        for w in wrappers
    ]
    last = wrappers[-1]
    snapshot = None
    if snapshot_frequency and snapshot_due(
        before, int(last.meta.revision_number), snapshot_frequency
    ):
        state = persistence_pb2.StateWrapper(state=last.resulting_state, meta=last.meta)
        snapshot = NewSnapshot(int(last.meta.revision_number), state.SerializeToString())
    return EntityAppend(entity_id, events, snapshot)


def recovered_state(entity_id: str, record: Recovered | None) -> EntityState:
    """The entity state from its newest journal record (or a new entity's)."""
    if record is None:
        return initial_state(entity_id)
    if record.kind == "snapshot":
        return state_from_snapshot(persistence_pb2.StateWrapper.FromString(record.payload))
    return state_from_event(persistence_pb2.EventWrapper.FromString(record.payload))
