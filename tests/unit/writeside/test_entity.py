from __future__ import annotations

from datetime import datetime, timezone

import pytest
from google.protobuf import any_pb2, empty_pb2, struct_pb2, wrappers_pb2

from chief_of_state.v1 import common_pb2, persistence_pb2, writeside_pb2
from cos.errors import HandlerReplyError
from cos.storage import Recovered
from cos.writeside import _entity as entity

WHEN = datetime(2026, 3, 4, 5, 6, 7, tzinfo=timezone.utc)


def packed(value: str) -> any_pb2.Any:
    result = any_pb2.Any()
    result.Pack(wrappers_pb2.StringValue(value=value))
    return result


def test_initial_state_is_empty_at_revision_zero() -> None:
    start = entity.initial_state("e")
    assert start.state.Is(empty_pb2.Empty.DESCRIPTOR)
    assert (start.meta.entity_id, start.revision) == ("e", 0)


def test_events_skip_empty_values_and_fall_back_to_the_deprecated_field() -> None:
    reply = writeside_pb2.HandleCommandResponse(events=[packed("a"), any_pb2.Any(), packed("b")])
    assert [e.type_url for e in entity.events_of(reply)] == [packed("a").type_url] * 2
    legacy = writeside_pb2.HandleCommandResponse(event=packed("old"))
    assert entity.events_of(legacy) == [packed("old")]
    assert entity.events_of(writeside_pb2.HandleCommandResponse()) == []
    assert entity.events_of(writeside_pb2.HandleCommandResponse(events=[any_pb2.Any()])) == []


def test_require_state_names_the_event() -> None:
    with pytest.raises(HandlerReplyError, match="google.protobuf.StringValue"):
        entity.require_state(writeside_pb2.HandleEventResponse(), packed("x"))
    state = packed("s")
    assert (
        entity.require_state(writeside_pb2.HandleEventResponse(resulting_state=state), packed("x"))
        == state
    )


def test_headers_selected_by_name_and_bin_values_become_bytes() -> None:
    metadata = [("x-a", "1"), ("x-b", "2"), ("x-c-bin", b"\x00\x01")]
    chosen = entity.select_headers(metadata, ["x-a", "x-c-bin"])
    assert chosen == [("x-a", "1"), ("x-c-bin", b"\x00\x01")]
    assert entity.to_headers(chosen) == [
        common_pb2.Header(key="x-a", string_value="1"),
        common_pb2.Header(key="x-c-bin", bytes_value=b"\x00\x01"),
    ]


@pytest.mark.parametrize(
    ("before", "after", "due"),
    [(0, 99, False), (99, 100, True), (98, 103, True), (100, 101, False), (150, 250, True)],
)
def test_snapshot_due_when_a_multiple_is_crossed(before: int, after: int, due: bool) -> None:
    assert entity.snapshot_due(before, after, 100) is due


def wrappers(first: int, count: int) -> list[persistence_pb2.EventWrapper]:
    return [
        entity.wrap_event(packed(f"e{r}"), packed(f"s{r}"), entity.event_meta("id", r, WHEN, []))
        for r in range(first, first + count)
    ]


def test_build_append_carries_revisions_types_and_dates() -> None:
    append = entity.build_append("id", 4, wrappers(5, 3), snapshot_frequency=100)
    assert [e.revision for e in append.events] == [5, 6, 7]
    assert {e.event_type for e in append.events} == {"google.protobuf.StringValue"}
    assert {e.created_at for e in append.events} == {WHEN}
    assert (
        persistence_pb2.EventWrapper.FromString(append.events[0].payload).meta.revision_number == 5
    )
    assert append.snapshot is None


def test_build_append_snapshots_the_last_state_when_due_unless_disabled() -> None:
    append = entity.build_append("id", 98, wrappers(99, 3), snapshot_frequency=100)
    assert append.snapshot is not None and append.snapshot.revision == 101
    snap = persistence_pb2.StateWrapper.FromString(append.snapshot.payload)
    assert snap.state == packed("s101") and snap.meta.revision_number == 101
    assert entity.build_append("id", 98, wrappers(99, 3), snapshot_frequency=None).snapshot is None


def test_recovered_state_from_event_snapshot_or_nothing() -> None:
    event = wrappers(7, 1)[0]
    from_event = entity.recovered_state("id", Recovered(7, "event", event.SerializeToString()))
    assert (from_event.state, from_event.revision) == (packed("s7"), 7)
    snap = persistence_pb2.StateWrapper(state=packed("snap"), meta=event.meta)
    from_snap = entity.recovered_state("id", Recovered(7, "snapshot", snap.SerializeToString()))
    assert from_snap.state == packed("snap")
    assert entity.recovered_state("new", None).revision == 0


def test_check_types_refuses_unlisted_types() -> None:
    entity.check_types([packed("a")], ["google.protobuf.StringValue"], "event")
    struct = any_pb2.Any()
    struct.Pack(struct_pb2.Struct())
    with pytest.raises(HandlerReplyError, match="google.protobuf.Struct"):
        entity.check_types([struct], ["google.protobuf.StringValue"], "event")
