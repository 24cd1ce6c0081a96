"""A node of the runtime, assembled: the one place that builds the parts and hands each
only what it uses.

``Node`` is what ``cos.deploy`` runs as the Ray actor of a node. When it starts,
inside the actor's event loop, it opens the PostgreSQL stores, builds the shard host (the
shards and the routing), the read-side runners, the interceptor chain around the host,
the servicers and the gRPC server, and the HTTP/JSON API when it is served. The
coordinator calls it through :class:`cos.sharding.handles.HostHandle`; it passes those
calls to its host.

    gRPC ──> servicers ──┐
    HTTP ──> cos.http ───┴──> interceptors ──> ShardHost ──> Shard ──> write handler
                                               │            └──> GroupCommitWriter ──> journal
                                               └──> PeerClients (the owner's gRPC port)
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass

import grpc

from chief_of_state.v1 import manager_pb2, service_pb2, service_pb2_grpc
from cos.breaker import BreakerSettings
from cos.errors import PortInUseError, StartupError
from cos.history.reader import HistoryReader
from cos.http import AnyCodec, HttpServer, build_app, codec_for
from cos.logs import configure_logging
from cos.postgres import (
    JOURNAL_CHANNEL,
    ControlListener,
    DatabaseTarget,
    PoolLimits,
    PostgresDatastore,
    PostgresHistoryStore,
    PostgresJournalStore,
    PostgresLeaseStore,
    PostgresOffsetStore,
)
from cos.readside.client import ReadCalls
from cos.readside.hosting import ReadSideHosting
from cos.readside.manager import ReadSideManager
from cos.readside.runner import RunnerTiming
from cos.service.cluster import ClusterServicer
from cos.service.command import ChiefOfStateServicer
from cos.service.decoding import RefuseUndecodable
from cos.service.health import NodeHealth
from cos.service.history import HistoryServicer
from cos.service.manager import ReadSideManagerServicer
from cos.service.manager import add_to_server as add_manager_to_server
from cos.service.operator_auth import OperatorAccess, OperatorGate
from cos.service.readside_status import ReadSideStatusServicer
from cos.service.subscription import SubscriptionServicer
from cos.settings import CosSettings
from cos.sharding.forward import PeerClients
from cos.sharding.handles import CoordinatorHandle, Routes
from cos.sharding.host import ShardHost
from cos.sharding.keeper import LeaseKeeper
from cos.sharding.names import host_prefix
from cos.sharding.report import ShardInfo
from cos.subscription import CommitAnnouncer, CommitWakeups, SubscriptionHub
from cos.subscription.process import SubscriptionProcess
from cos.telemetry.command_path import ObservedWriteHandler, TelemetryInterceptor
from cos.telemetry.instruments import Instruments
from cos.telemetry.setup import MetricsEndpoint, Telemetry
from cos.tls import bind_server
from cos.transport import message_limits
from cos.v1 import (
    cluster_pb2,
    cluster_pb2_grpc,
    history_pb2,
    history_pb2_grpc,
    readside_pb2,
    readside_pb2_grpc,
    subscription_pb2,
    subscription_pb2_grpc,
)
from cos.writeside.commands import CommandHandler, Interceptor, chain
from cos.writeside.handler import WriteHandler, WriteHandlerClient

log = logging.getLogger(__name__)

_LIFELINE_CHECK = 0.1  # seconds between checks that the raylet and the driver live


@dataclass
class _Parts:
    """What a started node holds, to stop it in order."""

    datastore: PostgresDatastore
    host: ShardHost
    read_sides: ReadSideHosting
    handler: WriteHandlerClient
    peers: PeerClients
    server: grpc.aio.Server
    telemetry: Telemetry
    control: ControlListener | None = None
    keeper: LeaseKeeper | None = None
    subscriptions: SubscriptionHub | None = None
    announcer: CommitAnnouncer | None = None
    journal_listener: ControlListener | None = None
    subscription_process: SubscriptionProcess | None = None
    http: HttpServer | None = None  # the HTTP/JSON API, when COS_HTTP_* asks for it

    async def close_connections(self) -> None:
        """Everything but the server: heartbeat, runners, listener, channels, pool, and
        the telemetry (what it buffered is exported)."""
        if self.keeper is not None:
            await self.keeper.stop()
        await self.host.close()
        await self.read_sides.stop()
        if self.control is not None:
            await self.control.close()
        if self.journal_listener is not None:
            await self.journal_listener.close()
        if self.subscriptions is not None:
            await self.subscriptions.close()
        if self.subscription_process is not None:
            await self.subscription_process.stop(0)
        if self.announcer is not None:
            await self.announcer.close()
        await self.peers.close()
        await self.handler.close()
        await self.datastore.close()
        await asyncio.to_thread(self.telemetry.shutdown)


class Node:
    """One node: its shard host, read sides and gRPC server on ``COS_PORT``."""

    def __init__(
        self,
        settings: CosSettings,
        target: DatabaseTarget,
        host_id: str,
        port: int | None = None,
        advertise: str | None = None,
        interceptors: Sequence[Interceptor] = (),
        driver_pid: int | None = None,
        http_port: int | None = None,
        subscription_port: int | None = None,
    ) -> None:
        self.host_id = host_id
        self._http_port = settings.http_port if http_port is None else http_port
        self._subscription_port = subscription_port or settings.subscription_port
        self._driver_pid = driver_pid
        self._watchdog: asyncio.Task[None] | None = None
        self._settings = settings
        self._target = target
        self._port = settings.port if port is None else port
        self._advertise = advertise or f"127.0.0.1:{self._port}"
        self._interceptors = tuple(interceptors)
        self._parts: _Parts | None = None
        self._health = NodeHealth(
            [
                service.full_name
                for module in (
                    service_pb2,
                    manager_pb2,
                    cluster_pb2,
                    readside_pb2,
                    history_pb2,
                    subscription_pb2,
                )
                for service in module.DESCRIPTOR.services_by_name.values()
            ]
        )

    async def start(self) -> str:
        """Connect to the journal, build every part and start serving; returns the bound
        address. Raises :class:`PortInUseError` when the port is taken."""
        settings, db = self._settings, self._settings.db
        configure_logging(settings.logging)
        # A bad COS_PROTO_DESCRIPTORS stops start-up here (cos serve checks it before Ray).
        codec = codec_for(settings.proto_descriptors) if settings.http_served else AnyCodec()
        telemetry = self._start_telemetry()
        instruments = telemetry.instruments
        limits = PoolLimits(
            max_size=db.pool_max_size,
            min_size=db.pool_min_idle_connections,
            idle_timeout=db.pool_idle_timeout_ms / 1000,
            max_lifetime=db.pool_max_lifetime_ms / 1000,
        )
        datastore = await PostgresDatastore.open(self._target, limits)
        journal = PostgresJournalStore(
            datastore,
            snapshots_to_retain=settings.num_snapshots_to_retain,
            logical_deletion=settings.journal_logical_deletion,
            idempotency_window_seconds=settings.idempotency_window_seconds,
        )
        offsets = PostgresOffsetStore(datastore)
        read_sides = ReadSideHosting(
            settings.read_sides,
            journal,
            offsets,
            RunnerTiming(
                backoff_min=settings.read_side_retry_min_seconds,
                backoff_max=settings.read_side_retry_max_seconds,
            ),
            ReadCalls(
                settings.grpc_calls_timeout,
                settings.channels,
                BreakerSettings(
                    settings.read_side_breaker_enabled,
                    settings.read_side_breaker_max_failures,
                    settings.read_side_breaker_call_timeout,
                    settings.read_side_breaker_reset_timeout,
                ),
            ),
            instruments,
        )
        subscriptions = announcer = None
        if settings.subscription_enabled:
            subscriptions = SubscriptionHub(
                journal, buffer=settings.subscription_buffer, schema=self._target.schema
            )
            announcer = CommitAnnouncer(journal)
        handler = WriteHandlerClient(settings)
        peers = PeerClients(settings.channels, settings.tls, instruments)
        leases = PostgresLeaseStore(datastore)
        host = ShardHost(
            host_id=self.host_id,
            settings=settings,
            journal=journal,
            leases=leases,
            handler=_observed(handler, instruments, settings),
            peers=peers,
            events=read_sides
            if subscriptions is None or announcer is None
            else CommitWakeups(read_sides, subscriptions, announcer),
            instruments=instruments,
        )
        if instruments.metrics is not None:
            instruments.metrics.observe_node(
                fenced_writes=lambda: host.fenced_writes,
                entities=lambda: host.active_entities,
                shards=lambda: host.shard_count,
            )
        history = HistoryReader(PostgresHistoryStore(datastore))
        commands = self._commands(host, instruments)
        server = self._server(commands, host, read_sides, offsets, leases, history, subscriptions)
        await self._health.starting()
        self._parts = _Parts(datastore, host, read_sides, handler, peers, server, telemetry)
        self._parts.subscriptions, self._parts.announcer = subscriptions, announcer
        address = f"{settings.address}:{self._port}"
        if not bind_server(server, address, settings.tls):
            parts, self._parts = self._parts, None
            await parts.close_connections()
            raise PortInUseError.at(settings.address, self._port)
        if subscriptions is not None and self._subscription_port is not None:
            await self._start_subscription_process(self._subscription_port)
        await self._bind_http(commands, history, codec)
        if read_sides.active:
            self._parts.control = ControlListener(self._target, read_sides.poke)
            await self._parts.control.start()
        if subscriptions is not None and announcer is not None:
            self._parts.journal_listener = ControlListener(
                self._target, subscriptions.heard, channel=JOURNAL_CHANNEL
            )
            await self._parts.journal_listener.start()
            subscriptions.start()
            announcer.start()
        await server.start()
        if self._parts.http is not None:
            self._parts.http.start()
        host.start()
        self._parts.keeper = LeaseKeeper(
            host,
            leases,
            address=self._advertise,
            prefix=host_prefix(settings.cluster_name),
            num_shards=settings.num_shards,
            failure_timeout=settings.host_failure_timeout_seconds,
        )
        self._parts.keeper.start()
        self._watchdog = asyncio.create_task(self._watch_lifelines(server))
        tls = _tls_words(settings)
        log.info("shard host %s: gRPC server started on %s%s", self.host_id, address, tls)
        if self._parts.http is not None:
            http_address = f"{settings.http_address or settings.address}:{self._http_port}"
            log.info("shard host %s: HTTP/JSON API served on %s", self.host_id, http_address)
        return address

    async def _start_subscription_process(self, port: int) -> None:
        """Start the node's subscription process; a taken port stops start-up."""
        parts = self._parts
        assert parts is not None
        process = SubscriptionProcess(self._settings, self._target, port)
        try:
            await process.start()
        except StartupError:
            await self._abandon_start(parts)
            raise
        parts.subscription_process = process
        log.info(
            "shard host %s: subscription streams also served on %s", self.host_id, process.address
        )

    async def _bind_http(
        self, commands: CommandHandler, history: HistoryReader, codec: AnyCodec
    ) -> None:
        """Bind the HTTP/JSON API's port when it is served; a taken port stops start-up."""
        settings, parts = self._settings, self._parts
        if not settings.http_served or parts is None:
            return
        app = build_app(commands, history, codec=codec, max_message=settings.max_message_bytes)
        http = HttpServer(
            app,
            address=settings.http_address or settings.address,
            port=self._http_port,
            grace=settings.shutdown_grace_seconds,
        )
        try:
            http.bind()
        except StartupError:
            await self._abandon_start(parts)
            raise
        parts.http = http

    async def _abandon_start(self, parts: _Parts) -> None:
        """Undo a start-up that failed after the gRPC port was bound."""
        self._parts = None
        await parts.server.stop(0)
        await parts.close_connections()

    def _start_telemetry(self) -> Telemetry:
        settings = self._settings
        scrape = None
        if settings.metrics_port is not None:
            address = settings.metrics_address or settings.address
            scrape = MetricsEndpoint(address, settings.metrics_port)
        return Telemetry.start(
            settings.telemetry,
            service_name=settings.service_name,
            instance=self.host_id,
            scrape=scrape,
        )

    async def _watch_lifelines(self, server: grpc.aio.Server) -> None:
        """Stop serving at once when this node's raylet or its ``cos serve`` is gone.

        Left alone, the actor's process outlives a killed raylet by seconds and goes on
        acknowledging commands, and a detached actor outlives its driver for good. The
        raylet is this process's parent; the driver runs on the same machine.
        """
        parent = os.getppid()
        while True:
            await asyncio.sleep(_LIFELINE_CHECK)
            if os.getppid() != parent:
                gone = "its Ray node (the raylet) is gone"
            elif self._driver_pid is not None and not _running(self._driver_pid):
                gone = f"its cos serve (pid {self._driver_pid}) is gone"
            else:
                continue
            log.error("shard host %s: %s; it stops serving now", self.host_id, gone)
            await server.stop(0)
            os._exit(1)

    def _commands(self, host: ShardHost, instruments: Instruments) -> CommandHandler:
        """The chain of interceptors around the host, which every protocol calls."""
        settings = self._settings
        interceptors = list(self._interceptors)
        if instruments.tracer is not None or instruments.metrics is not None:
            # Outermost: it sees every call, and how each interceptor answered it.
            interceptors.insert(
                0,
                functools.partial(
                    TelemetryInterceptor,
                    instruments=instruments,
                    num_shards=settings.num_shards,
                    owner=host.owner_of,
                ),
            )
        return chain(host, interceptors)

    def _server(
        self,
        commands: CommandHandler,
        host: ShardHost,
        read_sides: ReadSideHosting,
        offsets: PostgresOffsetStore,
        leases: PostgresLeaseStore,
        history: HistoryReader,
        subscriptions: SubscriptionHub | None,
    ) -> grpc.aio.Server:
        settings = self._settings
        manager = ReadSideManager(
            [r.read_side_id for r in settings.read_sides],
            settings.num_shards,
            offsets,
            read_sides,
        )
        # so_reuseport off: a second server on the same port must fail, not share it.
        options = [("grpc.so_reuseport", 0), *message_limits(settings.max_message_bytes)]
        access = OperatorAccess(
            token=settings.admin_token.get_secret_value() if settings.admin_token else None,
            client_names=settings.admin_client_names,
            open=settings.admin_api_open,
        )
        server = grpc.aio.server(
            options=options, interceptors=[RefuseUndecodable(), OperatorGate(access)]
        )
        service_pb2_grpc.add_ChiefOfStateServiceServicer_to_server(
            ChiefOfStateServicer(commands), server
        )
        add_manager_to_server(ReadSideManagerServicer(manager), server)
        cluster = ClusterServicer(
            host, heartbeats=leases, host_prefix=host_prefix(settings.cluster_name)
        )
        cluster_pb2_grpc.add_ClusterServiceServicer_to_server(cluster, server)
        readside_pb2_grpc.add_ReadSideStatusServiceServicer_to_server(
            ReadSideStatusServicer(manager), server
        )
        history_pb2_grpc.add_HistoryServiceServicer_to_server(HistoryServicer(history), server)
        subscription_pb2_grpc.add_SubscriptionServiceServicer_to_server(
            SubscriptionServicer(subscriptions, num_shards=settings.num_shards), server
        )
        self._health.add_to_server(server)
        return server

    @property
    def _host(self) -> ShardHost:
        if self._parts is None:
            raise RuntimeError(f"node {self.host_id} is not started")
        return self._parts.host

    # -- the coordinator's HostHandle, passed on to the host ------------------------

    async def attach(self, coordinator: CoordinatorHandle) -> None:
        """Remember the coordinator."""
        await self._host.attach(coordinator)

    async def assign(self, shards: Sequence[int]) -> dict[int, int]:
        """Serve ``shards`` (taking their leases); returns each one's epoch."""
        return await self._host.assign(shards)

    async def release(self, shards: Sequence[int]) -> None:
        """Hand ``shards`` over once their in-flight commands are done."""
        await self._host.release(shards)

    async def set_routes(self, routes: Routes) -> None:
        """The whole route table (the coordinator sends it once the shards are placed)."""
        await self._host.set_routes(routes)
        await self._health.serving()

    async def shutting_down(self) -> None:
        """Health ``NOT_SERVING`` from now on: the node hands its shards over, then stops."""
        await self._health.stopping()

    async def shards(self) -> list[ShardInfo]:
        """The shards this node serves."""
        return await self._host.shards()

    async def address(self) -> str:
        """Where other nodes reach this node's gRPC server."""
        return self._advertise

    async def ping(self) -> str:
        """Liveness probe for the driver and the coordinator."""
        return self.host_id

    # -- for operators and tests -----------------------------------------------------

    async def pid(self) -> int:
        """The process id (tests pause it to simulate a partition)."""
        return os.getpid()

    async def stats(self) -> dict[str, int]:
        """Counters: fenced writes, shards served."""
        host = self._host
        return {"fenced_writes": host.fenced_writes, "shards": len(await host.shards())}

    async def stop(self) -> None:
        """Stop accepting calls, let in-flight ones finish, then release connections."""
        await self._health.stopping()
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        parts, self._parts = self._parts, None
        if parts is None:
            return
        if parts.http is not None:
            await parts.http.stop()
        if parts.subscriptions is not None:
            await parts.subscriptions.close()  # streams never end on their own
        if parts.subscription_process is not None:
            await parts.subscription_process.stop(self._settings.shutdown_grace_seconds)
        await parts.server.stop(self._settings.shutdown_grace_seconds)
        await parts.close_connections()


def _observed(
    handler: WriteHandlerClient, instruments: Instruments, settings: CosSettings
) -> WriteHandler:
    if instruments.tracer is None and instruments.metrics is None:
        return handler
    target = f"{settings.write_side_host}:{settings.write_side_port}"
    return ObservedWriteHandler(handler, instruments=instruments, target=target)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, under another user
        return True
    return True


def _tls_words(settings: CosSettings) -> str:
    tls = settings.tls
    if tls is None:
        return ""
    return " (mutual TLS)" if tls.mutual else " (TLS)"
