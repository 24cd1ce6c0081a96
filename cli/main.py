"""``cos``: run the runtime (serve), apply the schema (migrate), print the version."""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import Annotated

import typer

import cos
from cli.settings_help import settings_table
from cos.environment import environment_warnings, read_side_lines
from cos.errors import StartupError
from cos.logs import configure_logging, prepare_ray_log_forwarding
from cos.runtime import prepare_ray
from cos.settings import (
    SettingsError,
    load_database_settings,
    load_log_settings,
    load_settings,
)

app = typer.Typer(
    help="Chief-of-State-compatible event-sourcing runtime on Ray.",
    no_args_is_help=True,
    add_completion=False,
)
log = logging.getLogger("cos.serve")


def _fail(message: str) -> typer.Exit:
    typer.echo(f"cos: {message}", err=True)
    return typer.Exit(code=2)


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(cos.__version__)


@app.command()
def migrate() -> None:
    """Apply the database migrations (COS_DB_*; embedded server when COS_DB_HOST is unset)."""
    from cos.postgres import migrate as run_migrations
    from cos.postgres import resolve_target, wait_for_database

    try:
        db = load_database_settings()
        configure_logging(load_log_settings())
    except SettingsError as exc:
        raise _fail(str(exc)) from None
    target, embedded = resolve_target(db)
    try:
        asyncio.run(wait_for_database(target, db.connect_retry_seconds))
        asyncio.run(run_migrations(target))
        typer.echo(f"schema {target.schema!r} is up to date")
    except StartupError as exc:
        raise _fail(str(exc)) from None
    finally:
        if embedded is not None:
            embedded.stop()


@app.command(epilog="Settings (environment variables):\n\n" + settings_table())
def serve(
    address: Annotated[
        str | None,
        typer.Option(
            help="Ray cluster to join ('auto' for a local `ray start`); overrides COS_RAY_ADDRESS."
        ),
    ] = None,
) -> None:
    """Run the runtime: migrate, start Ray hosts, serve gRPC on COS_PORT until SIGTERM."""
    try:
        settings = load_settings()
    except (SettingsError, StartupError) as exc:
        raise _fail(str(exc)) from None
    ray_address = address or settings.ray.address
    prepare_ray(settings.ray, local=ray_address is None)  # before the first import of ray
    from cos.runtime import run

    configure_logging(settings.logging)  # after importing ray, which sets up its own
    for warning in environment_warnings(settings):
        log.warning(warning)
    for line in read_side_lines(settings):
        log.info(line)

    try:
        code = run(settings, ray_address)
    except StartupError as exc:
        raise _fail(str(exc)) from None
    log.info("cos serve stopped" + (" (a shard host failed)" if code else ""))
    sys.exit(code)


@app.command()
def health(
    timeout: Annotated[float, typer.Option(help="seconds to wait for the answer")] = 3.0,
    alive: Annotated[
        bool, typer.Option("--alive", help="exit 0 on any answer (liveness, not readiness)")
    ] = False,
) -> None:
    """Ask this machine's node its gRPC health (for container and exec probes): exit 0 when
    SERVING, 1 when not, 2 when it does not answer. With --alive, any answer is 0: a node
    waiting for its shards or handing them over is alive. Reads COS_PORT and COS_TLS_*."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from cli.admin import CallerTls

    try:
        settings = load_settings()
    except SettingsError as exc:
        raise _fail(str(exc)) from None
    target = f"127.0.0.1:{settings.server.port}"
    tls = settings.tls.files
    if tls is None:
        channel = grpc.insecure_channel(target)
    else:  # as a peer node calls it: trusting the CA, presenting the node's certificate
        caller = CallerTls(tls.trust_file, tls.cert_file, tls.key_file, tls.server_name)
        channel = caller.channel(target)
    try:
        checked = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=timeout
        )
    except grpc.RpcError as exc:
        raise _fail(f"no health answer from {target}: {exc.code().name}") from None
    finally:
        channel.close()
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(checked.status)
    typer.echo(status)
    if checked.status != health_pb2.HealthCheckResponse.SERVING and not alive:
        raise typer.Exit(code=1)


@app.command()
def shards(
    address: Annotated[str, typer.Option(help="Ray cluster to look at")] = "auto",
    cluster_name: Annotated[
        str, typer.Option(envvar="COS_CLUSTER_NAME", help="the runtime's COS_CLUSTER_NAME")
    ] = "cos",
) -> None:
    """Print which host owns each shard, its epoch and its active entities."""
    prepare_ray_log_forwarding()
    from rich.console import Console

    from cli.cluster_format import shards_table
    from cos.runtime import connect_ray, disconnect_ray, shard_report

    connect_ray(address, quiet=True)
    try:
        try:
            rows = shard_report(cluster_name)
        except ValueError:
            raise _fail(f"no runtime named {cluster_name!r} on this Ray cluster") from None
        Console().print(shards_table(rows))
    finally:
        disconnect_ray()


if __name__ == "__main__":
    app()
