"""Idempotency keys and expected revisions: parsing, comparing, the original reply (pure)."""

from __future__ import annotations

import pytest
from google.protobuf import any_pb2, timestamp_pb2

from chief_of_state.v1 import common_pb2, persistence_pb2
from cos.errors import (
    CosError,
    IdempotencyKeyReusedError,
    InvalidRequestError,
    RevisionMismatchError,
)
from cos.storage import IdempotencyRecord
from cos.writeside import EntityState
from cos.writeside._entity import initial_state
from cos.writeside._guards import (
    NO_GUARDS,
    KeyUse,
    check_expected_revision,
    check_same_command,
    command_hash,
    guards_of,
    needs_event,
    original_reply,
)
from tests.support.commands import command


def state_at(entity_id: str, revision: int, total: float) -> EntityState:
    return EntityState(
        command(total=total),
        common_pb2.MetaData(
            entity_id=entity_id,
            revision_number=revision,
            revision_date=timestamp_pb2.Timestamp(seconds=1000 + revision),
        ),
    )


def test_a_command_without_the_headers_has_no_guards() -> None:
    assert guards_of([("x-other", "1"), ("traceparent", "00-ab")], command(add=[1])) is NO_GUARDS


def test_both_headers_are_read() -> None:
    sent = command(add=[1])
    guards = guards_of([("x-cos-idempotency-key", "k-1"), ("x-cos-expected-revision", "7")], sent)
    assert guards.key == KeyUse("k-1", command_hash(sent))
    assert guards.expected_revision == 7


@pytest.mark.parametrize(
    ("key", "said"),
    [
        ("", "the key is empty"),
        ("k" * 201, "201 characters long; at most 200"),
        ("caf\u00e9", "not printable ASCII"),
        ("tab\there", "not printable ASCII"),
    ],
)
def test_a_bad_key_is_invalid_naming_the_header(key: str, said: str) -> None:
    with pytest.raises(InvalidRequestError) as bad:
        guards_of([("x-cos-idempotency-key", key)], command())
    assert "x-cos-idempotency-key" in str(bad.value)
    assert said in str(bad.value)


def test_the_longest_key_and_every_printable_character_pass() -> None:
    printable = "".join(chr(c) for c in range(32, 127))
    for key in ("k" * 200, printable):
        guards = guards_of([("x-cos-idempotency-key", key)], command())
        assert guards.key is not None and guards.key.key == key


@pytest.mark.parametrize("value", ["", "-1", "1.5", "abc", " 3", "\u0663", str(2**63)])
def test_a_malformed_expected_revision_is_invalid_naming_the_header(value: str) -> None:
    with pytest.raises(InvalidRequestError) as bad:
        guards_of([("x-cos-expected-revision", value)], command())
    assert "x-cos-expected-revision" in str(bad.value)


def test_a_header_given_twice_is_invalid() -> None:
    with pytest.raises(InvalidRequestError, match="x-cos-expected-revision.*more than once"):
        guards_of([("x-cos-expected-revision", "1"), ("x-cos-expected-revision", "1")], command())


def test_the_hash_tells_commands_apart_by_value_and_type() -> None:
    one, other = command(add=[1]), command(add=[2])
    renamed = any_pb2.Any(type_url="type.googleapis.com/other.Type", value=one.value)
    assert command_hash(one) == command_hash(command(add=[1]))
    assert len({command_hash(one), command_hash(other), command_hash(renamed)}) == 3


def test_expected_revision_names_current_and_expected() -> None:
    check_expected_revision("e-1", 3, 3)
    with pytest.raises(RevisionMismatchError) as moved:
        check_expected_revision("e-1", 4, 3)
    assert "at revision 4, not at revision 3" in str(moved.value)
    assert "'e-1'" in str(moved.value)


def test_the_same_key_with_another_command_names_key_entity_and_revision() -> None:
    record = IdempotencyRecord("k-1", command_hash(command(add=[1])), 5)
    check_same_command("e-1", record, KeyUse("k-1", command_hash(command(add=[1]))))
    with pytest.raises(IdempotencyKeyReusedError) as reused:
        check_same_command("e-1", record, KeyUse("k-1", command_hash(command(add=[2]))))
    message = str(reused.value)
    assert "'k-1'" in message and "'e-1'" in message and "revision 5" in message


def test_the_original_reply_of_the_current_revision_is_the_current_state() -> None:
    current = state_at("e-1", 4, 10.0)
    record = IdempotencyRecord("k", b"h", 4)
    assert not needs_event(record, current)
    assert original_reply("e-1", record, current, None) is current


def test_the_original_reply_at_revision_zero_is_a_new_entitys_state() -> None:
    record = IdempotencyRecord("k", b"h", 0)
    assert not needs_event(record, state_at("e-1", 2, 1.0))
    assert original_reply("e-1", record, state_at("e-1", 2, 1.0), None) == initial_state("e-1")


def test_an_older_reply_comes_from_the_event_at_its_revision() -> None:
    then = state_at("e-1", 2, 3.0)
    event = persistence_pb2.EventWrapper(
        event=command(amount=1), resulting_state=then.state, meta=then.meta
    )
    record = IdempotencyRecord("k", b"h", 2)
    now = state_at("e-1", 5, 9.0)
    assert needs_event(record, now)
    assert original_reply("e-1", record, now, event.SerializeToString()) == then
    with pytest.raises(CosError, match="revision 2"):
        original_reply("e-1", record, now, None)
