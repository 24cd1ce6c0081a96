"""The ``cos serve`` driver: database, migrations, Ray, hosts, then wait for a signal."""

from __future__ import annotations

import asyncio
import errno
import logging
import secrets
import signal
import socket
import threading
from collections.abc import Mapping
from typing import Any

import ray
from pydantic import SecretStr
from ray.actor import ActorHandle

from cos.deploy import FAST_NODE_FAILURE, NAMESPACE, join_node
from cos.errors import PortInUseError, StartupError
from cos.http import codec_for
from cos.postgres import DatabaseTarget, migrate, pin_shard_count, resolve_target, wait_for_database
from cos.service.operator_auth import LOCAL_TOKEN_FILE
from cos.settings import CosSettings

log = logging.getLogger("cos.serve")

_HEALTH_INTERVAL = 5.0


def run(settings: CosSettings, ray_address: str | None) -> int:
    """Serve until SIGTERM/SIGINT (exit 0) or until a host dies (exit 1)."""
    if settings.http_served:
        codec_for(settings.proto_descriptors)  # unusable descriptor sets stop us here
    target, embedded = resolve_target(settings.db)
    try:
        asyncio.run(_prepare_journal(target, settings))
        if ray_address is None:
            # Our own one-node cluster: the host will bind here, so a taken port is
            # known before Ray starts (joining a cluster, the host reports it itself).
            check_ports_free(settings)
            # No other node will call it: its peers' address is the loopback one.
            if settings.advertise_address is None:
                settings = settings.model_copy(update={"advertise_address": "127.0.0.1"})
            settings = _with_local_operator_token(settings)
        elif not (settings.admin_token or settings.admin_client_names or settings.admin_api_open):
            log.warning(
                "the operator API (read sides, shards) is closed: no COS_ADMIN_TOKEN or"
                " COS_ADMIN_CLIENT_NAMES is set"
            )
        # "local" starts a cluster of our own (on loopback); without it Ray would
        # attach to whatever cluster was started last on this machine.
        ray.init(
            address=ray_address or "local",
            _node_ip_address=None if ray_address else "127.0.0.1",
            _system_config=None if ray_address else _system_config(settings),
            # Picks this machine's node when several run on it (default: the head).
            _temp_dir=settings.ray_temp_dir if ray_address else None,
            namespace=NAMESPACE,
            include_dashboard=False,
            logging_level=logging.WARNING,
            configure_logging=False,
        )
        # After ray.init, which installs a SIGTERM handler that exits at once.
        stop = _stop_on_signals()
        runtime = join_node(settings, target)
        try:
            for host_id, bound in runtime.addresses.items():
                log.info("cos serve ready: %s listening on %s", host_id, bound)
            return _wait(runtime.hosts, stop)
        finally:
            log.info("shutting down: handing shards over, draining in-flight commands")
            for host_id in list(runtime.hosts):
                try:
                    runtime.leave(host_id)
                except Exception as exc:
                    log.error("graceful hand-over of %s failed: %s", host_id, exc)
    finally:
        if ray.is_initialized():
            ray.shutdown()
        if embedded is not None:
            embedded.stop()


async def _prepare_journal(target: DatabaseTarget, settings: CosSettings) -> None:
    await wait_for_database(target, settings.db.connect_retry_seconds)
    await migrate(target)
    log.info("schema %r migrated", target.schema)
    await pin_shard_count(target, settings.num_shards)


def _system_config(settings: CosSettings) -> dict[str, int]:
    """Ray's system config for the Ray ``cos serve`` starts itself."""
    return {
        **FAST_NODE_FAILURE,
        "gcs_rpc_server_reconnect_timeout_s": settings.ray_gcs_reconnect_timeout_seconds,
    }


def _with_local_operator_token(settings: CosSettings) -> CosSettings:
    """A single local node with no operator credential configured makes a token and
    keeps it in :data:`LOCAL_TOKEN_FILE` (readable by its user only): the operator API
    stays closed to others, and cos-cli run from here finds the token."""
    if settings.admin_token or settings.admin_client_names or settings.admin_api_open:
        return settings
    if LOCAL_TOKEN_FILE.is_file():
        token = LOCAL_TOKEN_FILE.read_text().strip()
    else:
        token = secrets.token_urlsafe(32)
        LOCAL_TOKEN_FILE.parent.mkdir(parents=True, exist_ok=True)
        LOCAL_TOKEN_FILE.touch(mode=0o600)
        LOCAL_TOKEN_FILE.write_text(token + "\n")
    log.info("operator token in %s (cos-cli run from here reads it)", LOCAL_TOKEN_FILE)
    return settings.model_copy(update={"admin_token": SecretStr(token)})


def check_ports_free(settings: CosSettings) -> None:
    """Raise :class:`PortInUseError` when a port this node would listen on is taken."""
    check_port_free(settings.address, settings.port)
    if settings.http_served:
        http = settings.http_address or settings.address
        check_port_free(http, settings.http_port, setting="COS_HTTP_PORT", of="COS_HTTP_ADDRESS")
    if settings.subscription_port is not None:
        check_port_free(settings.address, settings.subscription_port, "COS_SUBSCRIPTION_PORT")


def check_port_free(
    address: str, port: int, setting: str = "COS_PORT", of: str = "COS_ADDRESS"
) -> None:
    """Raise :class:`PortInUseError` when ``address:port`` cannot be bound (naming
    ``setting``, the port's, and ``of``, the address's)."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((address, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise PortInUseError.at(address, port, setting=setting, of=of) from None
            raise StartupError(f"{of}: cannot listen on {address}:{port}: {exc.strerror}") from None


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    return stop


def _wait(hosts: Mapping[str, ActorHandle[Any]], stop: threading.Event) -> int:
    while not stop.wait(_HEALTH_INTERVAL):
        try:
            ray.get([h.ping.remote() for h in hosts.values()], timeout=30)
        except Exception as exc:
            log.error("a shard host stopped answering: %s", exc)
            return 1
    return 0
