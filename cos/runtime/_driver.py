"""The ``cos serve`` driver: database and migrations (beside Ray's start), Ray, this node's
host; then it becomes ``cos.runtime.watcher``, or, with an embedded PostgreSQL to stop or a
stderr the node cannot share, waits for a signal itself and hands the shards over."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import secrets
import signal
import socket
import sys
import tempfile
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import ray
from pydantic import SecretStr
from ray.actor import ActorHandle

from cos.errors import PortInUseError, StartupError
from cos.http import codec_for
from cos.logs import can_share_stderr
from cos.postgres import (
    DatabaseTarget,
    EmbeddedPostgres,
    pin_shard_count,
    resolve_target,
    wait_for_database,
)
from cos.runtime._deploy import FAST_NODE_FAILURE, Runtime, join_node
from cos.runtime._ray import connect_ray, disconnect_ray
from cos.runtime.watcher import remove_control
from cos.service import LOCAL_TOKEN_FILE
from cos.settings import CosSettings, replaced

log = logging.getLogger("cos.serve")

_HEALTH_INTERVAL = 5.0
_SOCKET_PATH_MAX = 108  # sun_path, with its terminating NUL


def run(settings: CosSettings, ray_address: str | None) -> int:
    """Serve until SIGTERM/SIGINT (exit 0) or until a host dies (exit 1)."""
    codec_for(settings.http.descriptor_sets)  # unusable descriptor sets stop us here
    target, embedded = resolve_target(settings.db)
    try:
        # The journal is made ready while Ray starts: neither waits for the other.
        with ThreadPoolExecutor(1, thread_name_prefix="journal") as journal:
            prepared = journal.submit(asyncio.run, _prepare_journal(target, settings))
            settings = _for_this_node(settings, local=ray_address is None)
            # "local" starts a cluster of our own (on loopback); without it Ray would
            # attach to whatever cluster was started last on this machine.
            connect_ray(
                ray_address,
                # Picks this machine's node when several run on it (default: the head).
                temp_dir=settings.ray.temp_dir,
                system_config=_system_config(settings),
            )
            prepared.result()  # its StartupError, if any
        # After ray.init, which installs a SIGTERM handler that exits at once.
        stop = _stop_on_signals()
        control = _control_socket() if embedded is None else None
        try:
            runtime = join_node(settings, target, control)
        except BaseException:
            if control is not None:
                remove_control(control)
            raise
        for host_id, bound in runtime.addresses.items():
            log.info("cos serve ready: %s listening on %s", host_id, bound)
        if control is not None:
            _become_watcher(control, stop)  # returns only when a signal came first
        return _serve(runtime, stop)
    finally:
        disconnect_ray()
        _stop_embedded(embedded)


def _for_this_node(settings: CosSettings, *, local: bool) -> CosSettings:
    """The settings this node runs with: a node with a Ray of its own checks its ports
    before Ray starts (joining a cluster, the host reports a taken one itself), is reached
    on the loopback address and makes itself an operator token when none is configured."""
    if not local:
        if not settings.operator.configured:
            log.warning(
                "the operator API (read sides, shards) is closed: no COS_ADMIN_TOKEN or"
                " COS_ADMIN_CLIENT_NAMES is set"
            )
        return settings
    check_ports_free(settings)
    if settings.cluster.advertise_address is None:
        # No other node will call it: its peers' address is the loopback one.
        settings = replaced(settings, {"COS_ADVERTISE_ADDRESS": "127.0.0.1"})
    return _with_local_operator_token(settings)


def _serve(runtime: Runtime, stop: threading.Event) -> int:
    try:
        return _wait(runtime.hosts, stop)
    finally:
        log.info("shutting down: handing shards over, draining in-flight commands")
        for host_id in list(runtime.hosts):
            try:
                runtime.leave(host_id)
            except Exception as exc:
                log.error("graceful hand-over of %s failed: %s", host_id, exc)


def _control_socket() -> str | None:
    """Where the node will answer this process once it is the watcher; None when it
    cannot become one (see ``cos.runtime.watcher``): its stderr, which the node writes to,
    cannot be shared, or the temporary folder's path is too long for a Unix socket."""
    if not can_share_stderr(os.getpid()):
        return None
    control = os.path.join(tempfile.mkdtemp(prefix="cos-serve-"), "node.sock")
    if len(control.encode()) >= _SOCKET_PATH_MAX:
        os.rmdir(os.path.dirname(control))
        return None
    return control


def _become_watcher(control: str, stop: threading.Event) -> None:
    """Replace this process with ``cos.runtime.watcher`` (same pid, stderr and children),
    which keeps the node's lifeline without Ray; returns when a signal came during
    start-up, for this process to hand the node over itself."""
    signals = {signal.SIGTERM, signal.SIGINT}
    # Blocked across exec: the watcher gets one that comes meanwhile once it listens.
    signal.pthread_sigmask(signal.SIG_BLOCK, signals)
    if stop.is_set():
        signal.pthread_sigmask(signal.SIG_UNBLOCK, signals)
        remove_control(control)
        return
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, "-m", "cos.runtime.watcher", control])


def _stop_embedded(embedded: EmbeddedPostgres | None) -> None:
    if embedded is not None:
        embedded.stop()


async def _prepare_journal(target: DatabaseTarget, settings: CosSettings) -> None:
    from cos.postgres import migrate  # alembic: loaded in this thread, while Ray starts

    await wait_for_database(target, settings.db.connect_retry_seconds)
    await migrate(target)
    log.info("schema %r migrated", target.schema)
    await pin_shard_count(target, settings.cluster.num_shards)


def _system_config(settings: CosSettings) -> dict[str, int]:
    """Ray's system config for the Ray ``cos serve`` starts itself."""
    return {
        **FAST_NODE_FAILURE,
        "gcs_rpc_server_reconnect_timeout_s": settings.ray.gcs_reconnect_timeout_seconds,
    }


def _with_local_operator_token(settings: CosSettings) -> CosSettings:
    """A single local node with no operator credential configured makes a token and
    keeps it in :data:`LOCAL_TOKEN_FILE` (readable by its user only): the operator API
    stays closed to others, and cos-cli run from here finds the token."""
    if settings.operator.configured:
        return settings
    if LOCAL_TOKEN_FILE.is_file():
        token = LOCAL_TOKEN_FILE.read_text().strip()
    else:
        token = secrets.token_urlsafe(32)
        LOCAL_TOKEN_FILE.parent.mkdir(parents=True, exist_ok=True)
        LOCAL_TOKEN_FILE.touch(mode=0o600)
        LOCAL_TOKEN_FILE.write_text(token + "\n")
    log.info("operator token in %s (cos-cli run from here reads it)", LOCAL_TOKEN_FILE)
    return replaced(settings, {"COS_ADMIN_TOKEN": SecretStr(token)})


def check_ports_free(settings: CosSettings) -> None:
    """Raise :class:`PortInUseError` when a port this node would listen on is taken."""
    server = settings.server
    check_port_free(server.address, server.port)
    if settings.http.served:
        http = settings.http.address or server.address
        check_port_free(http, settings.http.port, setting="COS_HTTP_PORT", of="COS_HTTP_ADDRESS")
    if settings.subscription.port is not None:
        check_port_free(server.address, settings.subscription.port, "COS_SUBSCRIPTION_PORT")


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
