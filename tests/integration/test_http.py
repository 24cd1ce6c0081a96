"""The HTTP/JSON API (COS_HTTP_*) of a running node: Chief of State's two routes, the
JSON and base64 forms, headers, errors as google.rpc.Status, the OpenAPI document."""

from __future__ import annotations

import base64
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
import schemathesis
from google.protobuf import any_pb2
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from chief_of_state.v1 import service_pb2
from cos.http import read_sets
from cos.postgres import DatabaseTarget
from tests.support.commands import base64_command, struct_of
from tests.support.database import db_env
from tests.support.processes import free_port
from tests.support.runtimes import RunningRuntime, StartRuntime
from tests.support.serve import Serve, refused_start, serve_env

STRUCT = "type.googleapis.com/google.protobuf.Struct"
NOTE = "type.googleapis.com/tests.http.v1.Note"
PROTOS = Path(__file__).parent / "protos"
TRACE = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.fixture(scope="module")
def descriptor_set(tmp_path_factory: pytest.TempPathFactory) -> str:
    """note.proto built as a user would: protoc --descriptor_set_out --include_imports."""
    out = tmp_path_factory.mktemp("descriptors") / "notes.pb"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{PROTOS}",
            f"--descriptor_set_out={out}",
            "--include_imports",
            "note.proto",
        ],
        check=True,
    )
    return str(out)


@dataclass
class Api:
    running: RunningRuntime
    client: httpx.AsyncClient


@pytest.fixture
async def api(start_cos: StartRuntime, descriptor_set: str) -> AsyncIterator[Api]:
    """A node serving HTTP, knowing Note and Struct, with an httpx client on it."""
    port = free_port()
    running = await start_cos(
        http_enabled=True,
        http_address="127.0.0.1",
        http_port=port,
        proto_descriptors=descriptor_set,
        descriptor_sets=read_sets(descriptor_set),
        write_side_propagated_headers="x-propagated,x-persisted",
        write_persisted_headers="x-persisted",
        command_handler_timeout=1.0,
        max_message_bytes=64 * 1024,
    )
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
        yield Api(running, client)


def json_command(**fields: Any) -> dict[str, Any]:
    return {"@type": STRUCT, "value": fields}


async def test_commands_and_state_as_json_or_base64(api: Api) -> None:
    client = api.client
    headers = {"X-Propagated": "p1", "X-Persisted": "s1", "X-Other": "o1", "traceparent": TRACE}
    reply = await client.post(
        "/v1/commands/acct-1/process",
        json={"command": json_command(add=[1, 2])},
        headers=headers,
    )
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["state"]["@type"] == STRUCT
    state = body["state"]["value"]
    assert state["total"] == 3
    # The handler saw the request headers as metadata (the propagated ones, the trace).
    assert state["last_headers"] == {
        "x-propagated": "p1",
        "x-persisted": "s1",
        "traceparent": TRACE,
    }
    meta = body["meta"]
    assert (meta["entity_id"], meta["revision_number"]) == ("acct-1", 2)
    assert datetime.fromisoformat(meta["revision_date"].replace("Z", "+00:00"))
    assert meta["headers"] == [{"key": "x-persisted", "string_value": "s1"}]

    # Chief of State's form: base64 in, and out when asked; the path's id wins.
    reply = await client.post(
        "/v1/commands/acct-1/process?encoding=base64",
        json={"entity_id": "someone-else", "command": base64_command(add=[4])},
    )
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert isinstance(body["state"], str)
    assert struct_of(any_pb2.Any.FromString(base64.b64decode(body["state"])))["total"] == 7
    assert (body["meta"]["entity_id"], body["meta"]["revision_number"]) == ("acct-1", 3)

    got = (await client.get("/v1/entities/acct-1/state")).json()
    assert got["state"]["value"]["total"] == 7
    assert got["meta"]["revision_number"] == 3
    raw = (await client.get("/v1/entities/acct-1/state", params={"encoding": "base64"})).json()
    assert struct_of(any_pb2.Any.FromString(base64.b64decode(raw["state"])))["total"] == 7

    # The same entity over gRPC.
    grpc_state = await api.running.stub.GetState(service_pb2.GetStateRequest(entity_id="acct-1"))
    assert grpc_state.meta.revision_number == 3


async def test_types_of_the_descriptor_set_and_unknown_types(api: Api) -> None:
    client = api.client
    # A Note (from the descriptor set) reaches the handler, which ignores it: a no-op on a
    # new entity, whose Empty state is no known type, so it comes back as base64.
    reply = await client.post(
        "/v1/commands/ids%2Fwith%2Fslashes/process",
        json={"command": {"@type": NOTE, "text": "hello", "extra": {"k": 1}}},
    )
    assert reply.status_code == 200, reply.text
    body = reply.json()
    empty = any_pb2.Any.FromString(base64.b64decode(body["state"]))
    assert empty.type_url == "type.googleapis.com/google.protobuf.Empty"
    assert body["meta"] == {"entity_id": "ids/with/slashes", "revision_number": 0}
    # A state whose type is unknown is base64 even without ?encoding=base64.
    reply = await client.post(
        "/v1/commands/odd-1/process", json={"command": json_command(add=[1], type_url="x/a.B")}
    )
    assert reply.status_code == 200, reply.text
    assert reply.json()["state"]["@type"] == STRUCT  # the state is a Struct; the event not

    document = (await client.get("/openapi.json")).json()
    assert document["openapi"].startswith("3.")
    assert set(document["paths"]) == {
        "/v1/commands/{entityId}/process",
        "/v1/entities/{entityId}/state",
        "/v1/entities/{entityId}/events",
    }


# The write handler's failures, passed on with their code, message and rich details.
HANDLER_CODES = {
    "INVALID_ARGUMENT": 400,
    "FAILED_PRECONDITION": 400,
    "OUT_OF_RANGE": 400,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "ABORTED": 409,
    "RESOURCE_EXHAUSTED": 429,
    "CANCELLED": 499,
    "UNIMPLEMENTED": 501,
    "UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504,
    "INTERNAL": 500,
    "DATA_LOSS": 500,
}


def assert_status(reply: httpx.Response, http: int, code: str, words: str) -> dict[str, Any]:
    assert reply.status_code == http, reply.text
    body = reply.json()
    assert body["code"] == grpc.StatusCode[code].value[0]
    assert words in body["message"], body
    assert body["error"] == body["message"]
    return body


async def test_handler_errors_keep_their_code_and_details(api: Api) -> None:
    for code, http in HANDLER_CODES.items():
        reply = await api.client.post(
            "/v1/commands/failing/process",
            json={"command": json_command(fail=code, message=f"refused: {code}")},
        )
        body = assert_status(reply, http, code, f"refused: {code}")
        assert body["details"] == [
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "TEST_FAILURE",
                "domain": "tests",
            }
        ], code


async def test_bad_requests_are_400_naming_the_problem(api: Api) -> None:
    post = api.client.post
    cases: list[tuple[httpx.Response, str]] = [
        (await post("/v1/commands/e/process", content=b"{not json"), "not valid JSON"),
        (await post("/v1/commands/e/process", json=[1]), "must be a JSON object"),
        (await post("/v1/commands/e/process", json={"command": "%%%"}), "not valid base64"),
        (await post("/v1/commands/e/process", json={}), "no command sent"),
        (
            await post("/v1/commands/e/process", json={"command": {"@type": "x/y.Unknown"}}),
            "COS_PROTO_DESCRIPTORS",
        ),
        (
            await post("/v1/commands/e/process", json={"command": {"text": "no type"}}),
            '"@type"',
        ),
        (
            await post("/v1/commands//process", json={"command": base64_command(add=[1])}),
            "empty entity ID",
        ),
        (
            await post("/v1/commands/e/process", content=b" " * (200 * 1024)),
            "twice COS_MAX_MESSAGE_BYTES",
        ),
        (
            await post("/v1/commands/e/process?encoding=hex", json={"command": ""}),
            "encoding must be auto or base64",
        ),
        (
            await post(
                "/v1/commands/e/process",
                json={"command": json_command(add=[1])},
                headers={"x-trace-bin": "***"},
            ),
            "header x-trace-bin is not base64",
        ),
        (await api.client.get("/v1/entities//state"), "empty entity ID"),
    ]
    for reply, words in cases:
        assert_status(reply, 400, "INVALID_ARGUMENT", words)


async def test_idempotency_key_and_expected_revision_headers_work_over_http(api: Api) -> None:
    client, url = api.client, "/v1/commands/keyed/process"
    keyed = {"x-cos-idempotency-key": "deposit-1"}
    first = await client.post(url, json={"command": json_command(add=[5])}, headers=keyed)
    again = await client.post(url, json={"command": json_command(add=[5])}, headers=keyed)
    assert first.status_code == again.status_code == 200, (first.text, again.text)
    assert again.json() == first.json()  # the original reply: same state, same meta
    assert first.json()["meta"]["revision_number"] == 1
    assert_status(
        await client.post(url, json={"command": json_command(add=[6])}, headers=keyed),
        409,
        "ALREADY_EXISTS",
        "deposit-1",
    )
    stale = {"x-cos-expected-revision": "0"}
    assert_status(
        await client.post(url, json={"command": json_command(add=[1])}, headers=stale),
        400,
        "FAILED_PRECONDITION",
        "revision 1",
    )
    current = {"x-cos-expected-revision": "1"}
    reply = await client.post(url, json={"command": json_command(add=[1])}, headers=current)
    assert reply.json()["meta"]["revision_number"] == 2, reply.text
    assert_status(
        await client.post(
            url, json={"command": json_command(add=[1])}, headers={"x-cos-expected-revision": "two"}
        ),
        400,
        "INVALID_ARGUMENT",
        "x-cos-expected-revision",
    )


async def test_an_entitys_history_over_http(api: Api) -> None:
    client = api.client
    for amounts in ([1, 2], [3], [4]):
        reply = await client.post(
            "/v1/commands/history/process", json={"command": json_command(add=amounts)}
        )
        assert reply.status_code == 200, reply.text
    events = (await client.get("/v1/entities/history/events")).json()["events"]
    assert [e["meta"]["revision_number"] for e in events] == [1, 2, 3, 4]
    assert [e["event"]["value"]["amount"] for e in events] == [1, 2, 3, 4]
    assert [e["resulting_state"]["value"]["total"] for e in events] == [1, 3, 6, 10]
    page = await client.get(
        "/v1/entities/history/events",
        params={"from_revision": 2, "limit": 2, "encoding": "base64"},
    )
    found = [any_pb2.Any.FromString(base64.b64decode(e["event"])) for e in page.json()["events"]]
    assert [struct_of(e)["amount"] for e in found] == [2, 3]

    past = (await client.get("/v1/entities/history/state", params={"revision": 2})).json()
    assert (past["state"]["value"]["total"], past["meta"]["revision_number"]) == (3, 2)
    assert_status(
        await client.get("/v1/entities/history/state", params={"revision": 5}),
        400,
        "OUT_OF_RANGE",
        "entity 'history' is at revision 4: revision 5 is past it",
    )
    assert_status(
        await client.get("/v1/entities/nobody/events"), 404, "NOT_FOUND", "'nobody' not found"
    )
    assert_status(
        await client.get("/v1/entities/history/events", params={"limit": 1001}),
        400,
        "INVALID_ARGUMENT",
        "limit must be 1 to 1000",
    )
    assert_status(
        await client.get("/v1/entities/history/events", params={"from_revision": "-1"}),
        400,
        "INVALID_ARGUMENT",
        "from_revision must be a whole number",
    )


async def test_runtime_failures_map_to_their_statuses(api: Api) -> None:
    client = api.client
    missing = await client.get("/v1/entities/nobody/state")
    assert_status(missing, 404, "NOT_FOUND", "entity 'nobody' not found")
    slow = await client.post(
        "/v1/commands/slow/process", json={"command": json_command(sleep=3, add=[1])}
    )
    assert_status(slow, 504, "DEADLINE_EXCEEDED", "")
    no_state = await client.post(
        "/v1/commands/broken/process", json={"command": json_command(add=[1], no_state_at=1)}
    )
    assert_status(no_state, 500, "INTERNAL", "empty state")
    unknown = await client.get("/v1/nowhere")
    assert_status(unknown, 404, "NOT_FOUND", "/v1/nowhere")


async def test_the_openapi_document_holds_against_the_server(api: Api) -> None:
    """Generated requests, valid and invalid, per operation: never a 5xx, every answer
    as documented, invalid ones refused. Random ids and commands mostly fail, so a pass
    of each operation keeps one part valid (an existing entity, a command the handler
    runs) and lets the rest vary, to check successful answers as well."""
    base = str(api.client.base_url)
    created = await api.client.post(
        "/v1/commands/fuzzed/process", json={"command": json_command(add=[1])}
    )
    assert created.status_code == 200, created.text
    schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
    process = schema["/v1/commands/{entityId}/process"]["POST"]
    state = schema["/v1/entities/{entityId}/state"]["GET"]
    events = schema["/v1/entities/{entityId}/events"]["GET"]
    for operation in (process, state, events):
        fuzz(operation.as_strategy(), base, CHECKS)
        negative = operation.as_strategy(generation_mode=GenerationMode.NEGATIVE)
        fuzz(negative, base, [*CHECKS, negative_data_rejection])
    fuzzed = {"entityId": "fuzzed"}
    # (the state at revision 1, the one the entity has; without it, most revisions drawn
    # would be past the entity's)
    fuzz(
        state.as_strategy(path_parameters=fuzzed, query={"revision": 1}), base, CHECKS, success=True
    )
    fuzz(
        events.as_strategy(path_parameters=fuzzed, query={"from_revision": 1, "limit": 10}),
        base,
        CHECKS,
        success=True,
    )
    body = {"command": base64_command(add=[1])}
    fuzz(process.as_strategy(body=body), base, CHECKS, success=True)


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


def fuzz(strategy: Any, base: str, checks: list[Any], *, success: bool = False) -> None:
    """A few dozen calls drawn from ``strategy``, each answer checked (repeatable); with
    ``success``, most must succeed (so their bodies were checked against the schema)."""
    statuses: list[int] = []

    @settings(
        max_examples=30,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def check(case: schemathesis.Case) -> None:
        statuses.append(case.call_and_validate(base_url=base, checks=checks).status_code)

    check()
    if success:
        assert statuses.count(200) > len(statuses) // 2, statuses


def test_cos_serve_serves_http_only_when_asked(
    database: DatabaseTarget, write_handler: int, serving: list[Serve]
) -> None:
    http_port = free_port()
    env = serve_env(write_handler, free_port(), COS_HTTP_PORT=str(http_port), **db_env(database))
    plain = Serve(env)
    serving.append(plain)
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{http_port}/v1/entities/e/state")
    assert plain.stop() == 0, plain.process.output
    serving.remove(plain)

    both = Serve({**env, "COS_SERVER_PROTOCOL": "http"})  # gRPC is served all the same
    serving.append(both)
    reply = httpx.post(
        f"http://127.0.0.1:{http_port}/v1/commands/served-1/process",
        json={"command": base64_command(add=[5])},
    )
    assert reply.status_code == 200, reply.text
    assert reply.json()["meta"]["revision_number"] == 1
    got = both.stub.GetState(service_pb2.GetStateRequest(entity_id="served-1"))
    assert got.meta.revision_number == 1


def test_a_taken_http_port_is_one_line(database: DatabaseTarget) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = serve_env(1, free_port(), COS_HTTP_ENABLED="true", COS_HTTP_PORT=str(port))
        last = refused_start({**env, **db_env(database)})
    assert last == (
        f"cos: COS_HTTP_PORT: 127.0.0.1:{port} is already in use (COS_HTTP_ADDRESS,"
        " COS_HTTP_PORT): stop what listens there or choose another port"
    )


def test_an_unusable_descriptor_set_is_one_line(database: DatabaseTarget, tmp_path: Path) -> None:
    missing = str(tmp_path / "missing.pb")
    env = serve_env(1, free_port(), COS_SERVER_PROTOCOL="both", COS_PROTO_DESCRIPTORS=missing)
    last = refused_start({**env, **db_env(database)})
    assert last.startswith(f"cos: COS_PROTO_DESCRIPTORS: cannot read {missing}: ")
