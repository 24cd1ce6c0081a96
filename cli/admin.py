"""``cos-cli``: manage read sides (ReadSideManagerService) and look at the shard table
(cos.v1.ClusterService) of a running runtime, through any node's gRPC port."""

from __future__ import annotations

from typing import Annotated, Any

import grpc
import typer
from rich.console import Console

from chief_of_state.v1 import manager_pb2, manager_pb2_grpc
from cli.cluster_format import from_response, shards_table
from cli.readside_format import action_message, error_message, offsets_table
from cos.v1 import cluster_pb2, cluster_pb2_grpc

app = typer.Typer(
    help="Manage a Chief-of-State-compatible runtime.", no_args_is_help=True, add_completion=False
)
readside = typer.Typer(
    help="Read sides: offsets, pause, resume, skip, restart.", no_args_is_help=True
)
app.add_typer(readside, name="readside")
cluster = typer.Typer(help="The cluster: which host owns each shard.", no_args_is_help=True)
app.add_typer(cluster, name="cluster")

ReadSideId = Annotated[str, typer.Option("--id", help="read side id", show_default=False)]
ShardNumber = Annotated[
    int | None,
    typer.Option("--shard-number", "--shardNumber", help="one shard; all shards when left out"),
]
CosHost = Annotated[str, typer.Option("--cos-host", "--cosHost", help="runtime host")]
CosPort = Annotated[int, typer.Option("--cos-port", "--cosPort", help="runtime gRPC port")]
Timeout = Annotated[float, typer.Option(help="deadline of the call, in seconds")]

# (request type, RPC) for each action, without and with a shard number.
_ACTIONS = {
    "pause": (
        ("PauseReadSide", manager_pb2.PauseReadSideRequest),
        ("PauseReadSideByShard", manager_pb2.PauseReadSideByShardRequest),
    ),
    "resume": (
        ("ResumeReadSide", manager_pb2.ResumeReadSideRequest),
        ("ResumeReadSideByShard", manager_pb2.ResumeReadSideByShardRequest),
    ),
    "skip": (
        ("SkipOffset", manager_pb2.SkipOffsetRequest),
        ("SkipOffsetByShard", manager_pb2.SkipOffsetByShardRequest),
    ),
    "restart": (
        ("RestartReadSide", manager_pb2.RestartReadSideRequest),
        ("RestartReadSideByShard", manager_pb2.RestartReadSideByShardRequest),
    ),
}


def _call(
    host: str,
    port: int,
    timeout: float,
    method: str,
    request: Any,
    stub_type: Any = manager_pb2_grpc.ReadSideManagerServiceStub,
) -> Any:
    with grpc.insecure_channel(f"{host}:{port}") as channel:
        stub = stub_type(channel)
        try:
            return getattr(stub, method)(request, timeout=timeout)
        except grpc.RpcError as exc:
            typer.echo(error_message(exc.code().name, exc.details() or ""), err=True)
            raise typer.Exit(code=1) from None


def _change(
    action: str, read_side_id: str, shard: int | None, host: str, port: int, timeout: float
) -> None:
    all_shards, by_shard = _ACTIONS[action]
    if shard is None:
        method, request_type = all_shards
        request = request_type(read_side_id=read_side_id)
    else:
        method, request_type = by_shard
        request = request_type(read_side_id=read_side_id, cluster_shard_number=shard)
    reply = _call(host, port, timeout, method, request)
    if not reply.successful:
        typer.echo(error_message("FAILED", f"{method} answered successful=false"), err=True)
        raise typer.Exit(code=1)
    typer.echo(action_message(action, read_side_id, shard))


@readside.command()
def offset(
    read_side_id: ReadSideId,
    shard_number: ShardNumber = None,
    cos_host: CosHost = "localhost",
    cos_port: CosPort = 9000,
    timeout: Timeout = 10.0,
) -> None:
    """Print the offset (last delivered journal position) of each shard, or of one."""
    if shard_number is None:
        every = manager_pb2.GetLatestOffsetRequest(read_side_id=read_side_id)
        offsets = list(_call(cos_host, cos_port, timeout, "GetLatestOffset", every).offsets)
    else:
        one = manager_pb2.GetLatestOffsetByShardRequest(
            read_side_id=read_side_id, cluster_shard_number=shard_number
        )
        offsets = [_call(cos_host, cos_port, timeout, "GetLatestOffsetByShard", one).offsets]
    Console().print(offsets_table(read_side_id, offsets))


_HELP = {
    "pause": "Pause delivery at the next event boundary (stored: survives restarts).",
    "resume": "Resume delivery where it stopped.",
    "skip": "Skip the event at the current offset and continue with the next.",
    "restart": "Clear the offset: deliver again from the first event.",
}


def _register(action: str) -> None:
    def command(
        read_side_id: ReadSideId,
        shard_number: ShardNumber = None,
        cos_host: CosHost = "localhost",
        cos_port: CosPort = 9000,
        timeout: Timeout = 10.0,
    ) -> None:
        _change(action, read_side_id, shard_number, cos_host, cos_port, timeout)

    command.__doc__ = _HELP[action]
    readside.command(name=action)(command)


for _action in _ACTIONS:
    _register(_action)


@cluster.command()
def shards(
    cos_host: CosHost = "localhost", cos_port: CosPort = 9000, timeout: Timeout = 30.0
) -> None:
    """Print which host owns each shard, its lease epoch and its active entities."""
    request = cluster_pb2.GetShardsRequest()
    stub_type = cluster_pb2_grpc.ClusterServiceStub
    reply = _call(cos_host, cos_port, timeout, "GetShards", request, stub_type)
    Console().print(shards_table(from_response(reply)))


if __name__ == "__main__":
    app()
