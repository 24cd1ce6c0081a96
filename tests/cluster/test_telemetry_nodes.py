"""A forwarded command's trace covers both nodes: ``cos serve`` on two ``ray start``
nodes, both exporting to an OTLP receiver inside the test."""

from __future__ import annotations

import os

from cos.postgres import DatabaseTarget
from tests.support.commands import request
from tests.support.database import db_env
from tests.support.otlp import ReceivedSpan, RunningReceiver
from tests.support.processes import free_port
from tests.support.raynodes import RAY_ENV, NodeServe, RayNode
from tests.support.serve import serve_env

SERVER, CLIENT = 2, 3  # OTLP span kinds
PROCESS = "chief_of_state.v1.ChiefOfStateService/ProcessCommand"
FORWARD = "cos.forward ProcessCommand"


async def test_a_forwarded_command_is_one_trace_over_both_nodes(
    ray_nodes: list[RayNode],
    database: DatabaseTarget,
    write_handler: int,
    receiver: RunningReceiver,
) -> None:
    common = {
        **db_env(database),
        "COS_NUM_SHARDS": "8",
        "COS_ADDRESS": "0.0.0.0",
        "COS_CLUSTER_NAME": f"otel{os.getpid()}",
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.grpc_endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        **RAY_ENV,
    }
    head, worker = ray_nodes
    serves = [
        NodeServe(
            serve_env(write_handler, free_port(), **common, COS_RAY_TEMP_DIR=head.temp_dir),
            "--address",
            head.address,
        )
    ]
    try:
        serves.append(
            NodeServe(
                serve_env(
                    write_handler,
                    free_port(),
                    **common,
                    COS_RAY_TEMP_DIR=worker.temp_dir,
                    COS_RAY_ADDRESS=worker.address,
                )
            )
        )
        sender, owner = serves
        # Some of 16 entities are owned by the other node: their commands are forwarded.
        for i in range(16):
            await sender.stub.ProcessCommand(request(f"fwd-{i}", add=[1]))

        def forwarded(spans: list[ReceivedSpan]) -> bool:
            hops = [s for s in spans if s.name == FORWARD]
            owned = {s.trace_id for s in spans if s.name.endswith("HandleCommand")}
            return bool(hops) and all(h.trace_id in owned for h in hops)

        spans = receiver.receiver.wait_for_spans(forwarded)
    finally:
        for serve in serves:
            await serve.channel.close()
            serve.process.stop()
    hop = next(s for s in spans if s.name == FORWARD)
    trace = [s for s in spans if s.trace_id == hop.trace_id]
    servers = sorted((s for s in trace if s.name == PROCESS), key=lambda s: s.parent_span_id)
    first = next(s for s in servers if not s.attributes["cos.forwarded"])
    second = next(s for s in servers if s.attributes["cos.forwarded"])
    # On the node the client called: server span, route, forward hop naming the owner.
    assert first.resource["service.instance.id"] == sender.host_id
    route = next(s for s in trace if s.name == "cos.route" and s.parent_span_id == first.span_id)
    assert (hop.parent_span_id, hop.kind) == (route.span_id, CLIENT)
    assert hop.attributes["cos.owner_host"] == owner.host_id
    assert route.attributes["cos.owner_host"] == owner.host_id
    # On the owner: the server span continues the hop, and the handler call hangs below it.
    assert (second.parent_span_id, second.kind) == (hop.span_id, SERVER)
    assert second.resource["service.instance.id"] == owner.host_id
    owner_route = next(
        s for s in trace if s.name == "cos.route" and s.parent_span_id == second.span_id
    )
    handle = next(s for s in trace if s.name.endswith("HandleCommand"))
    assert handle.parent_span_id == owner_route.span_id
    assert handle.resource["service.instance.id"] == owner.host_id
