"""ProcessCommand over gRPC against the same over the HTTP/JSON API, on one running
``cos serve`` (``COS_SERVER_PROTOCOL=both``). A benchmark, not a test: it prints figures.

Each protocol gets the same closed loop: ``--concurrency`` workers, each sending one command
at a time to entities of its own, for ``--duration`` seconds after a warm-up; then one
worker alone, for the latency of a lone call. Commands are ``google.protobuf.Struct``
values (``{"add": [1]}``), sent over HTTP in base64 (Chief of State's form) or as JSON.
The write handler must answer them (``tests/handlers/writer.py`` does), and for the JSON
run ``COS_PROTO_DESCRIPTORS`` must hold ``google/protobuf/struct.proto``
(``python -m grpc_tools.protoc --include_imports --descriptor_set_out=struct.pb
google/protobuf/struct.proto``).

Run: ``python bench/http_api.py --grpc 127.0.0.1:9000 --http http://127.0.0.1:9001``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable

import grpc
import httpx
from google.protobuf import any_pb2, struct_pb2

from chief_of_state.v1 import service_pb2, service_pb2_grpc

Send = Callable[[str], Awaitable[None]]


def _command() -> any_pb2.Any:
    body = struct_pb2.Struct()
    body.update({"add": [1]})
    packed = any_pb2.Any()
    packed.Pack(body)
    return packed


async def _loop(send: Send, workers: int, duration: float, warmup: float) -> list[float]:
    """Latencies (seconds) of the calls completed inside the window."""
    prefix = uuid.uuid4().hex[:8]
    start = time.monotonic() + warmup
    end = start + duration
    latencies: list[float] = []

    async def worker(index: int) -> None:
        count = 0
        while time.monotonic() < end:
            began = time.monotonic()
            await send(f"http-bench-{prefix}-{index}-{count % 50}")
            if began >= start:
                latencies.append(time.monotonic() - began)
            count += 1

    await asyncio.gather(*(worker(i) for i in range(workers)))
    return latencies


def _report(name: str, workers: int, duration: float, latencies: list[float]) -> None:
    ordered = sorted(latencies)
    p99 = ordered[int(len(ordered) * 0.99)] if ordered else float("nan")
    print(
        f"{name:<14} workers={workers:<3} {len(ordered) / duration:8.0f} commands/s"
        f"  median {statistics.median(ordered) * 1000:6.2f} ms  p99 {p99 * 1000:6.2f} ms"
    )


async def main(args: argparse.Namespace) -> None:
    command = _command()
    encoded = base64.b64encode(command.SerializeToString()).decode()
    as_json = {"@type": command.type_url, "value": {"add": [1]}}
    async with (
        grpc.aio.insecure_channel(args.grpc) as channel,
        httpx.AsyncClient(base_url=args.http, timeout=30) as client,
    ):
        stub = service_pb2_grpc.ChiefOfStateServiceStub(channel)

        async def over_grpc(entity_id: str) -> None:
            await stub.ProcessCommand(
                service_pb2.ProcessCommandRequest(entity_id=entity_id, command=command)
            )

        def over_http(body: object) -> Send:
            async def send(entity_id: str) -> None:
                reply = await client.post(
                    f"/v1/commands/{entity_id}/process", json={"command": body}
                )
                reply.raise_for_status()

            return send

        targets = {
            "grpc": over_grpc,
            "http base64": over_http(encoded),
            "http json": over_http(as_json),
        }
        for workers in (args.concurrency, 1):
            for name, send in targets.items():
                latencies = await _loop(send, workers, args.duration, args.warmup)
                _report(name, workers, args.duration, latencies)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grpc", default="127.0.0.1:9000")
    parser.add_argument("--http", default="http://127.0.0.1:9001")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    asyncio.run(main(parser.parse_args()))
