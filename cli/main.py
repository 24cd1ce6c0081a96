"""``cos``: run the runtime (serve), apply the schema (migrate), print the version."""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import Annotated

import typer

import cos
from cli.settings_help import settings_table
from cos.settings import SettingsError, load_database_settings, load_settings

app = typer.Typer(
    help="Chief-of-State-compatible event-sourcing runtime on Ray.",
    no_args_is_help=True,
    add_completion=False,
)
log = logging.getLogger("cos")
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def _configure_logging(level: str) -> None:
    logging.basicConfig(level=level, format=LOG_FORMAT)
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)


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
    from cos.journal.database import resolve_target
    from cos.journal.migrate import migrate as run_migrations

    try:
        db = load_database_settings()
    except SettingsError as exc:
        raise _fail(str(exc)) from None
    _configure_logging("INFO")
    target, embedded = resolve_target(db)
    try:
        asyncio.run(run_migrations(target))
        typer.echo(f"schema {target.schema!r} is up to date")
    finally:
        if embedded is not None:
            embedded.stop()


@app.command(
    epilog="Settings (environment variables):\n\n" + settings_table().replace("\n", "\n\n")
)
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
    except SettingsError as exc:
        raise _fail(str(exc)) from None
    _configure_logging(settings.log_level)
    from cli.serve import run
    from cos.journal.layout import ShardCountError
    from cos.sharding.deploy import ClusterMismatchError, NodeTakenError

    try:
        code = run(settings, address or settings.ray_address)
    except (NodeTakenError, ClusterMismatchError, ShardCountError) as exc:
        raise _fail(str(exc)) from None
    sys.exit(code)


@app.command()
def shards(
    address: Annotated[str, typer.Option(help="Ray cluster to look at")] = "auto",
    cluster_name: Annotated[
        str, typer.Option(envvar="COS_CLUSTER_NAME", help="the runtime's COS_CLUSTER_NAME")
    ] = "cos",
) -> None:
    """Print which host owns each shard, its epoch and its active entities."""
    import ray
    from rich.console import Console

    from cli.cluster_format import shards_table
    from cos.sharding.deploy import NAMESPACE, lookup_actor

    ray.init(address=address, namespace=NAMESPACE, logging_level=logging.ERROR)
    try:
        try:
            coordinator = lookup_actor(f"{cluster_name}-coordinator")
        except ValueError:
            raise _fail(f"no runtime named {cluster_name!r} on this Ray cluster") from None
        rows = ray.get(coordinator.report.remote(), timeout=60)
        Console().print(shards_table(rows))
    finally:
        ray.shutdown()


if __name__ == "__main__":
    app()
