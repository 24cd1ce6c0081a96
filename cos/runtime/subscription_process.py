"""The subscription process of a node (``COS_SUBSCRIPTION_PORT``): SubscriptionService
served by a process of its own, at a lower CPU priority, so that streaming to many
subscribers takes neither the node's interpreter nor, when CPU is short, its CPU time.

    node ──start (settings on stdin)──> python -m cos.runtime.subscription_process
    child: journal NOTIFY + safety poll ─> SubscriptionHub ─> streams on COS_SUBSCRIPTION_PORT
    the node's stdin pipe closed (it stopped, or died) ─> streams end UNAVAILABLE, child exits

The child reads the journal like any other node's subscriptions do: the node announces its
commits (``CommitAnnouncer``) and the child hears them on its own LISTEN connection. When
CPU is short the child falls behind and its subscribers catch up from the journal later;
commands do not wait for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pickle
import subprocess
import sys
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import IO

from cos.background import Background
from cos.errors import PortInUseError, StartupError
from cos.logs import configure_logging
from cos.postgres import (
    JOURNAL_CHANNEL,
    ControlListener,
    DatabaseTarget,
    PoolLimits,
    PostgresDatastore,
    PostgresJournalStore,
)
from cos.runtime._server import bind, new_server
from cos.service import add_subscription_service
from cos.settings import CosSettings
from cos.subscription import SubscriptionHub

log = logging.getLogger(__name__)

NICE = 10  # added to the child's nice value: the node's processes come first
READY = "subscriptions served on "  # the child's first line on stdout, then the address
_POOL = PoolLimits(max_size=4)  # catch-up reads; the feeds read one shard at a time
_RESTART_PAUSE = 1.0
_PORT_SETTING = "COS_SUBSCRIPTION_PORT"


@dataclass(frozen=True)
class _Order:
    """What the node hands the child."""

    settings: CosSettings
    target: DatabaseTarget
    port: int


class SubscriptionProcess:
    """The node's side: starts the child, restarts it should it die, stops it."""

    def __init__(self, settings: CosSettings, target: DatabaseTarget, port: int) -> None:
        self._order = _Order(settings, target, port)
        self._child: subprocess.Popen[bytes] | None = None
        self._keeper = Background()
        self.address = f"{settings.server.address}:{port}"

    async def start(self) -> None:
        """Start the child and wait until it serves; PortInUseError or StartupError
        (with the child's own words) when it cannot."""
        self._child = await asyncio.to_thread(self._spawn)
        self._keeper.start(self._keep())

    def _spawn(self) -> subprocess.Popen[bytes]:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        child = subprocess.Popen(
            # The address on the command line: it tells the process apart in ps.
            [sys.executable, "-m", "cos.runtime.subscription_process", self.address],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        assert child.stdin is not None and child.stdout is not None
        pickle.dump(self._order, child.stdin)
        child.stdin.flush()
        said = child.stdout.readline().decode().strip()
        child.stdout.close()  # the child writes nothing more there (its stdout is stderr now)
        if said.startswith(READY):
            return child
        child.wait()
        if said.startswith("port in use"):
            address = self._order.settings.server.address
            raise PortInUseError.at(address, self._order.port, setting=_PORT_SETTING)
        raise StartupError(f"the subscription process did not start: {said or 'no reply'}")

    async def _keep(self) -> None:
        """Start the child again should it end while the node runs."""
        while True:
            child = self._child
            assert child is not None
            code = await asyncio.to_thread(child.wait)
            log.error(
                "the subscription process ended (exit %s); starting it again on %s",
                code,
                self.address,
            )
            await asyncio.sleep(_RESTART_PAUSE)
            try:
                self._child = await asyncio.to_thread(self._spawn)
            except Exception as exc:  # tried again after the next pause
                log.error("subscriptions: %s", exc)

    async def stop(self, grace: float) -> None:
        """Close the child's pipe: it ends its streams and exits (killed after ``grace``
        and a few seconds)."""
        await self._keeper.stop()
        child, self._child = self._child, None
        if child is None:
            return
        assert child.stdin is not None
        with contextlib.suppress(OSError):
            child.stdin.close()
        try:
            await asyncio.to_thread(child.wait, grace + 5)
        except subprocess.TimeoutExpired:
            child.kill()
            await asyncio.to_thread(child.wait)


# -- the child ---------------------------------------------------------------------------


async def _serve(order: _Order, pipe: IO[bytes], say: IO[str]) -> None:
    settings, target = order.settings, order.target
    async with AsyncExitStack() as stack:
        datastore = await PostgresDatastore.open(target, _POOL)
        stack.push_async_callback(datastore.close)
        hub = SubscriptionHub(
            PostgresJournalStore(datastore),
            buffer=settings.subscription.buffer,
            schema=target.schema,
        )
        server = new_server(max_message=settings.grpc.max_message_bytes)
        add_subscription_service(server, hub, num_shards=settings.cluster.num_shards)
        try:
            address = bind(server, settings.server.address, order.port, settings.tls.files)
        except PortInUseError:
            say.write(f"port in use: {settings.server.address}:{order.port}\n")
            say.flush()
            return
        stack.push_async_callback(server.stop, settings.server.shutdown_grace_seconds)
        listener = ControlListener(target, hub.heard, channel=JOURNAL_CHANNEL)
        await listener.start()
        stack.push_async_callback(listener.close)
        hub.start()
        stack.push_async_callback(hub.close)  # streams end before the server stops
        await server.start()
        say.write(f"{READY}{address}\n")
        say.flush()
        os.dup2(sys.stderr.fileno(), say.fileno())  # nobody reads the pipe any more
        # Until the node closes the pipe (or dies: the pipe closes with it).
        await asyncio.to_thread(pipe.read)


def main() -> None:
    order: _Order = pickle.load(sys.stdin.buffer)
    os.nice(NICE)
    configure_logging(order.settings.logging)
    try:
        asyncio.run(_serve(order, sys.stdin.buffer, sys.stdout))
    except Exception as exc:  # the node logs the line it reads, or the exit code
        print(f"{type(exc).__name__}: {exc}", flush=True)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
