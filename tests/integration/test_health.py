"""gRPC health checking and server reflection on the node's port (real Ray, PostgreSQL and
write handler process)."""

from __future__ import annotations

import asyncio
import subprocess

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from chief_of_state.v1 import service_pb2_grpc
from cos.postgres import DatabaseTarget
from cos.runtime import Runtime, alive_nodes, coordinator_of, launch_host, register_host
from tests.support.commands import request
from tests.support.processes import free_port
from tests.support.runtimes import runtime_settings
from tests.support.serve import CLIENT_SERVICE, COS, RUNTIME_SERVICES, serve_env

Status = health_pb2.HealthCheckResponse


async def listed_services(channel: grpc.aio.Channel) -> set[str]:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    call = stub.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")])
    )
    async for reply in call:
        return {service.name for service in reply.list_services_response.service}
    raise AssertionError("reflection gave no answer")


async def cos_health(handler: int, port: int, *options: str) -> tuple[int, str]:
    """``cos health`` (the container's probe) for the node on ``port``: exit code, last line."""
    done = await asyncio.to_thread(
        subprocess.run,
        [*COS, "health", *options],
        env=serve_env(handler, port),
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done.returncode, (done.stdout + done.stderr).strip().splitlines()[-1]


async def test_health_is_serving_only_between_shard_placement_and_the_hand_over(
    ray_session: None, database: DatabaseTarget, write_handler: int
) -> None:
    settings = runtime_settings(write_handler)
    runtime = Runtime(
        settings.cluster.cluster_name, await asyncio.to_thread(coordinator_of, settings, database)
    )
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{settings.server.port}")
    try:
        # The server runs, but the coordinator has not given it shards yet.
        host_id = await asyncio.to_thread(
            launch_host, runtime, settings, database, alive_nodes()[0]
        )
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", CLIENT_SERVICE):
            checked = await health.Check(health_pb2.HealthCheckRequest(service=service))
            assert checked.status == Status.NOT_SERVING, service
        watch = health.Watch(health_pb2.HealthCheckRequest())
        assert (await watch.read()).status == Status.NOT_SERVING
        assert await cos_health(write_handler, settings.server.port) == (1, "NOT_SERVING")
        # Liveness: a node waiting for its shards is alive.
        assert await cos_health(write_handler, settings.server.port, "--alive") == (
            0,
            "NOT_SERVING",
        )

        await asyncio.to_thread(register_host, runtime, host_id)
        assert (await watch.read()).status == Status.SERVING
        checked = await health.Check(health_pb2.HealthCheckRequest(service=CLIENT_SERVICE))
        assert checked.status == Status.SERVING
        assert await cos_health(write_handler, settings.server.port) == (0, "SERVING")
        code, said = await cos_health(write_handler, free_port())
        assert code == 2 and said.startswith("cos: no health answer from 127.0.0.1:"), said
        code, said = await cos_health(write_handler, free_port(), "--alive")
        assert code == 2, said
        client = service_pb2_grpc.ChiefOfStateServiceStub(channel)
        reply = await client.ProcessCommand(request("healthy", add=[1]))
        assert reply.meta.revision_number == 1  # while SERVING, commands go through
        assert await listed_services(channel) == {
            *RUNTIME_SERVICES,
            "grpc.health.v1.Health",
            "grpc.reflection.v1alpha.ServerReflection",
        }
        unknown = health_pb2.HealthCheckRequest(service="no.such.Service")
        try:
            await health.Check(unknown)
        except grpc.aio.AioRpcError as error:
            assert error.code() == grpc.StatusCode.NOT_FOUND
        else:
            raise AssertionError("an unknown service has a health status")

        # A graceful leave: NOT_SERVING from the start of the hand-over.
        leaving = asyncio.create_task(asyncio.to_thread(runtime.leave, host_id))
        assert (await watch.read()).status == Status.NOT_SERVING
        await leaving
    finally:
        await channel.close()
        await asyncio.to_thread(runtime.stop)
