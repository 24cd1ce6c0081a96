"""``cos-cli``: manage read sides (ReadSideManagerService), see where they stand
(cos.v1.ReadSideStatusService), and look at the shard table and the hosts' health
(cos.v1.ClusterService) of a running runtime, through any node's gRPC port.

It accepts the Chief of State CLI's commands and flags as that CLI spells them
(``readside skipOffset``, ``--cosHost``, ``--cosPort``, ``--id``, ``--shard-number``, a
negative shard number for all shards), in the same places: ``--cosHost``/``--cosPort``
before or after the command, ``--id``/``--shard-number`` after ``readside``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import grpc
import typer
from rich.console import Console

from chief_of_state.v1 import manager_pb2, manager_pb2_grpc
from cli.cluster_format import from_response, health_from_response, health_table, shards_table
from cli.readside_format import action_message, error_message, offsets_table, status_view
from cos.service import LOCAL_TOKEN_FILE
from cos.tls import PEM_CERTIFICATE, TlsFileError, read_pem
from cos.v1 import cluster_pb2, cluster_pb2_grpc, readside_pb2, readside_pb2_grpc


@dataclass(frozen=True)
class CallerTls:
    """TLS to the runtime (cos-cli, and cos health): the CAs to trust (system roots when
    None), this caller's certificate for mutual TLS, the name to check the server's
    certificate against."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    server_name: str | None = None

    def channel(self, target: str) -> grpc.Channel:
        try:
            credentials = grpc.ssl_channel_credentials(
                read_pem(self.ca_file, "CA file", PEM_CERTIFICATE) if self.ca_file else None,
                read_pem(self.key_file, "key file") if self.key_file else None,
                read_pem(self.cert_file, "certificate file", PEM_CERTIFICATE)
                if self.cert_file
                else None,
            )
        except TlsFileError as exc:
            typer.echo(error_message("TLS", str(exc)), err=True)
            raise typer.Exit(code=2) from None
        options = [("grpc.ssl_target_name_override", self.server_name)] if self.server_name else []
        return grpc.secure_channel(target, credentials, options=options)


@dataclass
class _Flags:
    """Flags given before the subcommand (Chief of State's persistent flags)."""

    host: str | None = None
    port: int | None = None
    token: str | None = None
    token_file: str | None = None
    tls: CallerTls | None = None
    read_side_id: str | None = None
    shard_number: int | None = None


CosHost = Annotated[
    str | None,
    typer.Option(
        "--cos-host", "--cosHost", help="runtime host [default: localhost]", show_default=False
    ),
]
CosPort = Annotated[
    int | None,
    typer.Option(
        "--cos-port", "--cosPort", help="runtime gRPC port [default: 9000]", show_default=False
    ),
]
AdminToken = Annotated[
    str | None,
    typer.Option(
        "--admin-token",
        envvar="COS_ADMIN_TOKEN",
        help="the operator token (default: --admin-token-file, then .cos-data/admin-token)",
        show_default=False,
    ),
]
AdminTokenFile = Annotated[
    str | None,
    typer.Option(
        "--admin-token-file",
        envvar="COS_ADMIN_TOKEN_FILE",
        help="file holding the operator token",
        show_default=False,
    ),
]


def _file_option(name: str, variable: str, text: str) -> Any:
    return typer.Option(name, envvar=variable, help=text, show_default=False)


Tls = Annotated[bool, typer.Option("--tls", help="TLS to the runtime (system CAs)")]
TlsCaFile = Annotated[
    str | None,
    _file_option("--tls-ca-file", "COS_TLS_CA_FILE", "CAs that sign the runtime's certificate"),
]
TlsCertFile = Annotated[
    str | None,
    _file_option("--tls-cert-file", "COS_TLS_CERT_FILE", "client certificate (mutual TLS)"),
]
TlsKeyFile = Annotated[
    str | None, _file_option("--tls-key-file", "COS_TLS_KEY_FILE", "key of --tls-cert-file")
]
TlsServerName = Annotated[
    str | None,
    _file_option(
        "--tls-server-name", "COS_TLS_SERVER_NAME", "name the server's certificate must carry"
    ),
]
ReadSideId = Annotated[str | None, typer.Option("--id", help="read side id", show_default=False)]
ShardNumber = Annotated[
    int | None,
    typer.Option(
        "--shard-number",
        "--shardNumber",
        help="one shard; all shards when left out or negative (as in Chief of State's CLI)",
        show_default=False,
    ),
]
Timeout = Annotated[float, typer.Option(help="deadline of the call, in seconds")]

app = typer.Typer(
    help="Manage a Chief-of-State-compatible runtime.", no_args_is_help=True, add_completion=False
)
readside = typer.Typer(
    help="Read sides: offsets, pause, resume, skip, restart.", no_args_is_help=True
)
app.add_typer(readside, name="readside")
cluster = typer.Typer(
    help="The cluster: which host owns each shard, and each host's health.", no_args_is_help=True
)
app.add_typer(cluster, name="cluster")


@app.callback()
def _root(
    ctx: typer.Context,
    cos_host: CosHost = None,
    cos_port: CosPort = None,
    admin_token: AdminToken = None,
    admin_token_file: AdminTokenFile = None,
    tls: Tls = False,
    tls_ca_file: TlsCaFile = None,
    tls_cert_file: TlsCertFile = None,
    tls_key_file: TlsKeyFile = None,
    tls_server_name: TlsServerName = None,
) -> None:
    flags = ctx.ensure_object(_Flags)
    flags.host, flags.port = cos_host, cos_port
    flags.token, flags.token_file = admin_token, admin_token_file
    if tls or tls_ca_file or tls_cert_file:
        flags.tls = CallerTls(tls_ca_file, tls_cert_file, tls_key_file, tls_server_name)


@readside.callback()
def _readside(
    ctx: typer.Context, read_side_id: ReadSideId = None, shard_number: ShardNumber = None
) -> None:
    flags = ctx.ensure_object(_Flags)
    flags.read_side_id, flags.shard_number = read_side_id, shard_number


@dataclass(frozen=True)
class _Call:
    """Where, how long and with which token: the flags of one command, merged with those
    before it."""

    host: str
    port: int
    timeout: float
    token: str | None = None
    tls: CallerTls | None = None

    @classmethod
    def of(cls, ctx: typer.Context, host: str | None, port: int | None, timeout: float) -> _Call:
        flags = ctx.ensure_object(_Flags)
        where = (host or flags.host or "localhost", port or flags.port or 9000)
        return cls(*where, timeout, _token(flags), flags.tls)

    # Any: the RPC is looked up by name on a generated stub, whose calls are untyped.
    def run(self, method: str, request: Any, stub_type: Any = None) -> Any:
        stub_type = stub_type or manager_pb2_grpc.ReadSideManagerServiceStub
        target = f"{self.host}:{self.port}"
        opened = self.tls.channel(target) if self.tls else grpc.insecure_channel(target)
        with opened as channel:
            metadata = (("authorization", f"Bearer {self.token}"),) if self.token else None
            try:
                return getattr(stub_type(channel), method)(
                    request, timeout=self.timeout, metadata=metadata
                )
            except grpc.RpcError as exc:
                typer.echo(error_message(exc.code().name, exc.details() or ""), err=True)
                raise typer.Exit(code=1) from None


def _token(flags: _Flags) -> str | None:
    """The operator token: the flag or COS_ADMIN_TOKEN, else the token file."""
    if flags.token:
        return flags.token
    path = Path(flags.token_file) if flags.token_file else LOCAL_TOKEN_FILE
    try:
        return path.read_text().strip() or None
    except OSError:
        if flags.token_file:
            typer.echo(error_message("TOKEN", f"cannot read {flags.token_file}"), err=True)
            raise typer.Exit(code=2) from None
        return None


def _read_side(ctx: typer.Context, read_side_id: str | None) -> str:
    found = read_side_id or ctx.ensure_object(_Flags).read_side_id
    if not found:
        raise typer.BadParameter("the read side id is required", param_hint="'--id'")
    return found


def _shard(ctx: typer.Context, shard_number: int | None) -> int | None:
    """The shard to act on; None (all shards) when unset or negative, as in CoS's CLI."""
    found = shard_number if shard_number is not None else ctx.ensure_object(_Flags).shard_number
    return None if found is None or found < 0 else found


# (RPC, request type) for each action, without and with a shard number.
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
_HELP = {
    "pause": "Pause delivery at the next event boundary (stored: survives restarts).",
    "resume": "Resume delivery where it stopped.",
    "skip": "Skip the event at the current offset and continue with the next.",
    "restart": "Clear the offset: deliver again from the first event.",
}
# Chief of State's CLI names for the same actions.
_COS_NAMES = {"skip": "skipOffset"}


def _change(action: str, call: _Call, read_side_id: str, shard: int | None) -> None:
    all_shards, by_shard = _ACTIONS[action]
    if shard is None:
        method, request_type = all_shards
        request = request_type(read_side_id=read_side_id)
    else:
        method, request_type = by_shard
        request = request_type(read_side_id=read_side_id, cluster_shard_number=shard)
    reply = call.run(method, request)
    if not reply.successful:
        typer.echo(error_message("FAILED", f"{method} answered successful=false"), err=True)
        raise typer.Exit(code=1)
    typer.echo(action_message(action, read_side_id, shard))


def _show_offsets(call: _Call, read_side_id: str, shard: int | None) -> None:
    if shard is None:
        every = manager_pb2.GetLatestOffsetRequest(read_side_id=read_side_id)
        offsets = list(call.run("GetLatestOffset", every).offsets)
    else:
        one = manager_pb2.GetLatestOffsetByShardRequest(
            read_side_id=read_side_id, cluster_shard_number=shard
        )
        offsets = [call.run("GetLatestOffsetByShard", one).offsets]
    Console().print(offsets_table(read_side_id, offsets))


def _show_status(call: _Call, read_side_id: str, shard: int | None) -> None:
    request = readside_pb2.GetReadSideStatusRequest(read_side_id=read_side_id)
    if shard is not None:
        request.cluster_shard_number = shard
    stub_type = readside_pb2_grpc.ReadSideStatusServiceStub
    reply = call.run("GetReadSideStatus", request, stub_type)
    Console().print(status_view(read_side_id, reply.shards))


def _register(name: str, help: str, act: Callable[[_Call, str, int | None], None]) -> None:
    """A ``readside`` subcommand: the flags every one takes, then ``act``."""

    def command(
        ctx: typer.Context,
        read_side_id: ReadSideId = None,
        shard_number: ShardNumber = None,
        cos_host: CosHost = None,
        cos_port: CosPort = None,
        timeout: Timeout = 10.0,
    ) -> None:
        call = _Call.of(ctx, cos_host, cos_port, timeout)
        act(call, _read_side(ctx, read_side_id), _shard(ctx, shard_number))

    command.__doc__ = help
    readside.command(name=name)(command)


_register(
    "offset",
    "Print the offset (last delivered journal position) of each shard, or of one.",
    _show_offsets,
)
_register(
    "status",
    "Print, per shard, the offset, the journal's last position, how far behind (events and"
    " seconds), whether delivery runs, is paused, or stopped (and why), and the last delivery"
    " failure with its time.",
    _show_status,
)
for _action in _ACTIONS:
    _register(_action, _HELP[_action], functools.partial(_change, _action))
    if _action in _COS_NAMES:
        spelling = f" Chief of State's CLI spelling of {_action}."
        _register(
            _COS_NAMES[_action], _HELP[_action] + spelling, functools.partial(_change, _action)
        )


@cluster.command()
def shards(
    ctx: typer.Context, cos_host: CosHost = None, cos_port: CosPort = None, timeout: Timeout = 30.0
) -> None:
    """Print which host owns each shard, its lease epoch and its active entities."""
    call = _Call.of(ctx, cos_host, cos_port, timeout)
    reply = call.run(
        "GetShards", cluster_pb2.GetShardsRequest(), cluster_pb2_grpc.ClusterServiceStub
    )
    Console().print(shards_table(from_response(reply)))


@cluster.command()
def health(
    ctx: typer.Context, cos_host: CosHost = None, cos_port: CosPort = None, timeout: Timeout = 30.0
) -> None:
    """Print each host: its address, its shards, its entities in memory and its last
    heartbeat."""
    call = _Call.of(ctx, cos_host, cos_port, timeout)
    reply = call.run(
        "GetClusterHealth",
        cluster_pb2.GetClusterHealthRequest(),
        cluster_pb2_grpc.ClusterServiceStub,
    )
    Console().print(health_table(health_from_response(reply)))


if __name__ == "__main__":
    app()
