"""The ``cos serve`` driver: database, migrations, Ray, hosts, then wait for a signal."""

from __future__ import annotations

import asyncio
import logging
import signal
import threading

import ray

from cos.journal.database import resolve_target
from cos.journal.layout import pin_shard_count
from cos.journal.migrate import migrate
from cos.settings import CosSettings
from cos.sharding.deploy import FAST_NODE_FAILURE, NAMESPACE, join_node

log = logging.getLogger("cos.serve")

_HEALTH_INTERVAL = 5.0


def run(settings: CosSettings, ray_address: str | None) -> int:
    """Serve until SIGTERM/SIGINT (exit 0) or until a host dies (exit 1)."""
    target, embedded = resolve_target(settings.db)
    try:
        asyncio.run(migrate(target))
        log.info("schema %r migrated", target.schema)
        asyncio.run(pin_shard_count(target, settings.num_shards))
        # "local" starts a cluster of our own (on loopback); without it Ray would
        # attach to whatever cluster was started last on this machine.
        ray.init(
            address=ray_address or "local",
            _node_ip_address=None if ray_address else "127.0.0.1",
            _system_config=None if ray_address else FAST_NODE_FAILURE,
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


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    return stop


def _wait(hosts: dict[str, object], stop: threading.Event) -> int:
    while not stop.wait(_HEALTH_INTERVAL):
        try:
            ray.get([h.ping.remote() for h in hosts.values()], timeout=30)  # type: ignore[attr-defined]
        except Exception as exc:
            log.error("a shard host stopped answering: %s", exc)
            return 1
    return 0
