"""The HTTP/JSON API (COS_HTTP_*) of a running node: Chief of State's two routes, the
JSON and base64 forms, headers, errors as google.rpc.Status, the OpenAPI document."""

from __future__ import annotations

import base64
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from google.protobuf import any_pb2

from chief_of_state.v1 import service_pb2
from tests.integration.commands import command, struct_of
from tests.integration.conftest import RunningRuntime, StartRuntime
from tests.support import free_port

STRUCT = "type.googleapis.com/google.protobuf.Struct"
NOTE = "type.googleapis.com/tests.http.v1.Note"
PROTOS = Path(__file__).parent / "protos"


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
        write_side_propagated_headers="x-propagated,x-persisted",
        write_persisted_headers="x-persisted",
        command_handler_timeout=1.0,
        max_message_bytes=64 * 1024,
    )
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
        yield Api(running, client)


def json_command(**fields: Any) -> dict[str, Any]:
    return {"@type": STRUCT, "value": fields}


def base64_command(**fields: Any) -> str:
    return base64.b64encode(command(**fields).SerializeToString()).decode()


async def test_commands_and_state_as_json_or_base64(api: Api) -> None:
    client = api.client
    headers = {"X-Propagated": "p1", "X-Persisted": "s1", "X-Other": "o1"}
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
    # The handler saw the request headers as metadata (the propagated ones).
    assert state["last_headers"] == {"x-propagated": "p1", "x-persisted": "s1"}
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
    }
