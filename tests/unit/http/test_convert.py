"""JSON forms of Any values, descriptor sets and status mapping of the HTTP API (pure)."""

from __future__ import annotations

import base64
from pathlib import Path

import grpc
import pytest
from google.protobuf import any_pb2, descriptor_pb2, empty_pb2, timestamp_pb2
from google.rpc import error_details_pb2, status_pb2

from chief_of_state.v1 import common_pb2
from cos.errors import (
    ConflictError,
    DescriptorsError,
    HandlerCallError,
    InvalidRequestError,
    NotFoundError,
    TooLargeError,
    UnavailableError,
)
from cos.http import AnyCodec, read_sets
from cos.http._convert import from_base64, meta_to_json, to_base64
from cos.http._descriptors import descriptor_paths, load_pool
from cos.http._status import HTTP_STATUS, failure, http_status
from cos.status import DETAILS_KEY
from tests.support.commands import command

STRUCT_URL = "type.googleapis.com/google.protobuf.Struct"
NOTE_URL = "type.googleapis.com/tests.http.v1.Note"


def _note_file() -> descriptor_pb2.FileDescriptorProto:
    """``tests/http/v1/note.proto``: ``Note{text, extra Struct}``, importing struct.proto."""
    note = descriptor_pb2.DescriptorProto(name="Note")
    note.field.add(name="text", number=1, type=9, label=1)  # string
    note.field.add(name="extra", number=2, type=11, label=1, type_name=".google.protobuf.Struct")
    return descriptor_pb2.FileDescriptorProto(
        name="tests/http/v1/note.proto",
        package="tests.http.v1",
        dependency=["google/protobuf/struct.proto"],
        message_type=[note],
        syntax="proto3",
    )


def _write_set(path: Path, *files: descriptor_pb2.FileDescriptorProto) -> str:
    path.write_bytes(descriptor_pb2.FileDescriptorSet(file=list(files)).SerializeToString())
    return str(path)


@pytest.fixture
def codec(tmp_path: Path) -> AnyCodec:
    # Without --include_imports: struct.proto comes from the runtime's well-known types.
    return AnyCodec(load_pool(read_sets(_write_set(tmp_path / "notes.pb", _note_file()))))


def test_known_types_are_json_and_unknown_ones_base64(codec: AnyCodec) -> None:
    assert codec.to_json(command(add=[1])) == {"@type": STRUCT_URL, "value": {"add": [1.0]}}
    empty = any_pb2.Any()
    empty.Pack(empty_pb2.Empty())
    assert codec.to_json(empty) == to_base64(empty)
    assert codec.to_json(command(add=[1]), base64_only=True) == to_base64(command(add=[1]))


def test_without_descriptor_sets_everything_is_base64() -> None:
    value = command(add=[1])
    assert AnyCodec().to_json(value) == base64.b64encode(value.SerializeToString()).decode()


def test_a_user_type_round_trips_through_json(codec: AnyCodec) -> None:
    sent = {"@type": NOTE_URL, "text": "hi", "extra": {"k": 1}}
    value = codec.from_json(sent, "command")
    assert value.type_url == NOTE_URL
    assert codec.to_json(value) == {"@type": NOTE_URL, "text": "hi", "extra": {"k": 1.0}}


def test_base64_commands_standard_or_url_safe_unpadded(codec: AnyCodec) -> None:
    value = command(note="x" * 7)
    raw = value.SerializeToString()
    assert codec.from_json(base64.b64encode(raw).decode(), "command") == value
    assert codec.from_json(base64.urlsafe_b64encode(raw).decode().rstrip("="), "c") == value
    assert codec.from_json(None, "command") == any_pb2.Any()


@pytest.mark.parametrize(
    ("sent", "words"),
    [
        ("not base64!", "command is not valid base64"),
        ("////", "not a serialized google.protobuf.Any"),
        ({"text": "no type"}, 'without "@type"'),
        ({"@type": "type.googleapis.com/x.Unknown"}, "COS_PROTO_DESCRIPTORS"),
        ({"@type": NOTE_URL, "text": 5}, "command is not a valid tests.http.v1.Note"),
        ({"@type": NOTE_URL, "nope": 1}, "command is not a valid tests.http.v1.Note"),
        (12, "not a number"),
        ([1], "not an array"),
    ],
)
def test_a_bad_command_is_refused_naming_the_problem(
    codec: AnyCodec, sent: object, words: str
) -> None:
    with pytest.raises(InvalidRequestError, match=words):
        codec.from_json(sent, "command")


def test_from_base64_refuses_non_ascii() -> None:
    with pytest.raises(InvalidRequestError, match="not valid base64"):
        from_base64("é", "command")


def test_meta_is_snake_case_with_an_iso_date(codec: AnyCodec) -> None:
    date = timestamp_pb2.Timestamp(seconds=1738317600, nanos=5_000_000)
    meta = common_pb2.MetaData(
        entity_id="e1",
        revision_number=2,
        revision_date=date,
        headers=[common_pb2.Header(key="x-b-bin", bytes_value=b"\x01")],
    )
    meta.data["k"].CopyFrom(command(a=1))
    assert meta_to_json(meta, codec) == {
        "entity_id": "e1",
        "revision_number": 2,
        "revision_date": "2025-01-31T10:00:00.005Z",
        "data": {"k": {"@type": STRUCT_URL, "value": {"a": 1.0}}},
        "headers": [{"key": "x-b-bin", "bytes_value": "AQ=="}],
    }


def test_descriptor_set_problems_name_the_setting(tmp_path: Path) -> None:
    with pytest.raises(DescriptorsError, match="COS_PROTO_DESCRIPTORS: cannot read"):
        load_pool(read_sets(str(tmp_path / "missing.pb")))
    (tmp_path / "junk.pb").write_bytes(b"\xff\xff\xff")
    with pytest.raises(DescriptorsError, match="is not a descriptor set"):
        load_pool(read_sets(str(tmp_path / "junk.pb")))
    orphan = _note_file()
    orphan.dependency[:] = ["company/common.proto"]
    with pytest.raises(DescriptorsError, match="--include_imports"):
        load_pool(read_sets(_write_set(tmp_path / "orphan.pb", orphan)))
    assert descriptor_paths(" a.pb, ,b.pb,") == ["a.pb", "b.pb"]
    assert descriptor_paths(None) == []


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("INVALID_ARGUMENT", 400),
        ("FAILED_PRECONDITION", 400),
        ("OUT_OF_RANGE", 400),
        ("UNAUTHENTICATED", 401),
        ("PERMISSION_DENIED", 403),
        ("NOT_FOUND", 404),
        ("ALREADY_EXISTS", 409),
        ("ABORTED", 409),
        ("RESOURCE_EXHAUSTED", 429),
        ("CANCELLED", 499),
        ("UNIMPLEMENTED", 501),
        ("UNAVAILABLE", 503),
        ("DEADLINE_EXCEEDED", 504),
        ("INTERNAL", 500),
        ("UNKNOWN", 500),
        ("DATA_LOSS", 500),
    ],
)
def test_grpc_codes_map_to_google_api_http_statuses(code: str, status: int) -> None:
    assert http_status(grpc.StatusCode[code]) == status


def test_the_table_covers_the_codes_that_are_not_500() -> None:
    assert {c for c in grpc.StatusCode if http_status(c) == 500} == {
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.DATA_LOSS,
    }
    assert len(HTTP_STATUS) == 14


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (InvalidRequestError("bad"), 400, 3),
        (NotFoundError("gone"), 404, 5),
        (ConflictError("taken"), 409, 10),
        (TooLargeError("big"), 429, 8),
        (UnavailableError("later"), 503, 14),
    ],
)
def test_domain_errors_answer_as_the_servicer_does(
    error: Exception, status: int, code: int
) -> None:
    answer = failure(error, "ProcessCommand", AnyCodec())
    message = str(error)
    assert answer == (
        status,
        {"code": code, "message": message, "details": [], "error": message},
    )


def test_handler_details_appear_as_json(codec: AnyCodec) -> None:
    info = any_pb2.Any()
    info.Pack(error_details_pb2.ErrorInfo(reason="TEST_FAILURE", domain="tests"))
    odd = any_pb2.Any(type_url="type.googleapis.com/x.Odd", value=b"\x08\x01")
    details = status_pb2.Status(code=9, message="no", details=[info, odd]).SerializeToString()
    status, body = failure(HandlerCallError("FAILED_PRECONDITION", "no", details), "P", codec)
    assert status == 400
    assert body["code"] == 9
    assert body["details"] == [
        {
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": "TEST_FAILURE",
            "domain": "tests",
        },
        to_base64(odd),
    ]
    assert DETAILS_KEY == "grpc-status-details-bin"


def test_an_unexpected_error_is_internal() -> None:
    status, body = failure(RuntimeError("boom"), "GetState", AnyCodec())
    assert (status, body["code"]) == (500, 13)
    assert body["message"] == "GetState failed: RuntimeError: boom"
