"""A node put together, phase by phase, on one ``contextlib.AsyncExitStack``.

Each phase starts a part and pushes what stops it. Closing the stack stops the node: in the
reverse order of the phases, so calls in flight finish before the shards, the read sides
and the pool go; and a start-up that fails half-way undoes exactly what it did.

    telemetry ─ pool and stores ─ handler and peer clients ─ read sides ─ subscriptions ─
    LISTEN connections ─ shard host, sweeps, lease keeper ─ gRPC server (and the
    subscription process) ─ HTTP/JSON API ─ lifeline watch ─ health
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING

import grpc

from cos.history import HistoryReader
from cos.postgres import (
    JOURNAL_CHANNEL,
    ControlListener,
    DatabaseTarget,
    PostgresDatastore,
    PostgresHistoryStore,
    PostgresJournalStore,
    PostgresLeaseStore,
    PostgresOffsetStore,
)
from cos.readside import ReadHandlerClient, ReadSideHosting, ReadSideManager
from cos.runtime._plan import NodePlan
from cos.runtime._server import bind, new_server, tls_words
from cos.runtime.subscription_process import SubscriptionProcess
from cos.service import NodeHealth, OperatorGate, add_node_services
from cos.settings import CosSettings
from cos.sharding import LeaseKeeper, PeerClients, Peers, ShardHost, host_prefix
from cos.subscription import CommitAnnouncer, CommitWakeups, SubscriptionHub
from cos.telemetry import MetricsEndpoint, Telemetry, Wrappers
from cos.writeside import (
    CommandHandler,
    ShardParts,
    Sweeps,
    WriteHandler,
    WriteHandlerClient,
    chain,
)

if TYPE_CHECKING:
    from cos.http import HttpServer

log = logging.getLogger("cos.node")


@dataclass
class _Stores:
    journal: PostgresJournalStore
    offsets: PostgresOffsetStore
    leases: PostgresLeaseStore
    history: HistoryReader


@dataclass
class _Subscriptions:
    hub: SubscriptionHub
    announcer: CommitAnnouncer


@dataclass(frozen=True)
class Assembled:
    """A started node's parts that its actor calls."""

    host: ShardHost
    server: grpc.aio.Server


async def assemble(stack: AsyncExitStack, plan: NodePlan, health: NodeHealth) -> Assembled:
    """Start every part of the node on ``stack``."""
    settings = plan.settings
    telemetry = _telemetry(stack, plan)
    wrap = Wrappers(telemetry.instruments)
    stores = await _stores(stack, plan)
    handler, peers = _clients(stack, settings, wrap)
    read_sides = _read_sides(stack, settings, stores, wrap)
    subscriptions = _subscriptions(stack, plan, stores)
    await _listen(stack, plan.target, read_sides, subscriptions)
    host = _host(stack, plan, stores, handler, peers, read_sides, subscriptions, wrap)
    interceptors = wrap.interceptors(num_shards=settings.cluster.num_shards, owner=host.owner_of)
    commands = chain(host, [*interceptors, *plan.interceptors])
    server = await _serve(stack, plan, commands, host, stores, read_sides, subscriptions, health)
    stack.push_async_callback(health.stopping)  # first, when the node stops
    return Assembled(host, server)


def _telemetry(stack: AsyncExitStack, plan: NodePlan) -> Telemetry:
    settings = plan.settings
    metrics = settings.telemetry
    scrape = None
    if metrics.port is not None:
        scrape = MetricsEndpoint(metrics.address or settings.server.address, metrics.port)
    telemetry = Telemetry.start(
        metrics.otel, service_name=settings.logging.service, instance=plan.host_id, scrape=scrape
    )
    # What it buffered is exported.
    stack.push_async_callback(asyncio.to_thread, telemetry.shutdown)
    return telemetry


async def _stores(stack: AsyncExitStack, plan: NodePlan) -> _Stores:
    datastore = await PostgresDatastore.open(plan.target, plan.settings.db.pool_limits)
    stack.push_async_callback(datastore.close)
    return _Stores(
        PostgresJournalStore(datastore, plan.settings.journal),
        PostgresOffsetStore(datastore),
        PostgresLeaseStore(datastore),
        HistoryReader(PostgresHistoryStore(datastore)),
    )


def _clients(
    stack: AsyncExitStack, settings: CosSettings, wrap: Wrappers
) -> tuple[WriteHandler, Peers]:
    handler = WriteHandlerClient(
        settings.handler, grpc_settings=settings.grpc, breaker=settings.handler_breaker
    )
    stack.push_async_callback(handler.close)
    peers = PeerClients(settings.grpc, settings.tls.files)
    stack.push_async_callback(peers.close)
    return wrap.write_handler(handler, target=settings.handler.target), wrap.peers(peers)


def _read_sides(
    stack: AsyncExitStack, settings: CosSettings, stores: _Stores, wrap: Wrappers
) -> ReadSideHosting:
    read_side = settings.read_side
    handlers = {
        config.read_side_id: wrap.read_handler(
            ReadHandlerClient(
                config, grpc_settings=settings.grpc, breaker=settings.read_side_breaker
            )
        )
        for config in read_side.enabled_read_sides
    }
    hosting = ReadSideHosting(
        read_side.enabled_read_sides, stores.journal, stores.offsets, read_side.timing, handlers
    )
    stack.push_async_callback(hosting.stop)
    return hosting


def _subscriptions(stack: AsyncExitStack, plan: NodePlan, stores: _Stores) -> _Subscriptions | None:
    subscription = plan.settings.subscription
    if not subscription.enabled:
        return None
    hub = SubscriptionHub(stores.journal, buffer=subscription.buffer, schema=plan.target.schema)
    stack.push_async_callback(hub.close)
    return _Subscriptions(hub, CommitAnnouncer(stores.journal))


async def _listen(
    stack: AsyncExitStack,
    target: DatabaseTarget,
    read_sides: ReadSideHosting,
    subscriptions: _Subscriptions | None,
) -> None:
    """The LISTEN connections: operators' changes to read sides (made through any node)
    for the runners here, and other nodes' commits for the subscriptions here."""
    if read_sides.active:
        control = ControlListener(target, read_sides.poke)
        await control.start()
        stack.push_async_callback(control.close)
    if subscriptions is not None:
        commits = ControlListener(target, subscriptions.hub.heard, channel=JOURNAL_CHANNEL)
        await commits.start()
        stack.push_async_callback(commits.close)
        subscriptions.hub.start()
        subscriptions.announcer.start()
        stack.push_async_callback(subscriptions.announcer.close)


def _host(
    stack: AsyncExitStack,
    plan: NodePlan,
    stores: _Stores,
    handler: WriteHandler,
    peers: Peers,
    read_sides: ReadSideHosting,
    subscriptions: _Subscriptions | None,
    wrap: Wrappers,
) -> ShardHost:
    settings = plan.settings
    shards = ShardParts(
        journal=stores.journal,
        handler=handler,
        settings=settings.shard,
        # COS_ENTITY_CACHE_SIZE is the node's: each shard gets its part.
        cache_size=max(1, settings.shard.entity_cache_size // settings.cluster.num_shards),
        max_message=settings.grpc.max_message_bytes,
        propagated=(*settings.handler.propagated_headers, *wrap.propagated),
        wrap_writer=wrap.journal_writer(),
    )
    wakeups = (
        [] if subscriptions is None else [CommitWakeups(subscriptions.hub, subscriptions.announcer)]
    )
    host = ShardHost(
        host_id=plan.host_id,
        new_shard=shards.new_shard,
        leases=stores.leases,
        peers=peers,
        cluster=settings.cluster,
        events=[read_sides, *wakeups, *wrap.shard_events()],
        grace=settings.server.shutdown_grace_seconds,
        command_timeout=settings.shard.command_handler_timeout,
    )
    stack.push_async_callback(host.close)
    _keep(stack, plan, stores, host, read_sides, wrap)
    return host


def _keep(
    stack: AsyncExitStack,
    plan: NodePlan,
    stores: _Stores,
    host: ShardHost,
    read_sides: ReadSideHosting,
    wrap: Wrappers,
) -> None:
    """The host's background work: sweeps, its lease keeper, its gauges."""
    settings = plan.settings
    sweeps = Sweeps(
        host.served,
        stores.journal,
        idle_seconds=settings.shard.passivation_idle_seconds,
        key_window_seconds=settings.journal.idempotency_window_seconds,
    )
    sweeps.start()
    stack.push_async_callback(sweeps.stop)
    keeper = LeaseKeeper(
        host,
        stores.leases,
        address=plan.advertise,
        prefix=host_prefix(settings.cluster.cluster_name),
        num_shards=settings.cluster.num_shards,
        failure_timeout=settings.cluster.host_failure_timeout_seconds,
    )
    keeper.start()
    stack.push_async_callback(keeper.stop)
    gauges = wrap.gauges(host, read_sides)
    if gauges is not None:
        gauges.start()
        stack.push_async_callback(gauges.stop)


async def _serve(
    stack: AsyncExitStack,
    plan: NodePlan,
    commands: CommandHandler,
    host: ShardHost,
    stores: _Stores,
    read_sides: ReadSideHosting,
    subscriptions: _Subscriptions | None,
    health: NodeHealth,
) -> grpc.aio.Server:
    """Bind every port first (a taken one stops start-up before anything is served),
    then serve."""
    settings = plan.settings
    server = new_server(
        max_message=settings.grpc.max_message_bytes,
        interceptors=[OperatorGate(settings.operator)],
    )
    manager = ReadSideManager(
        [r.read_side_id for r in settings.read_side.read_sides],
        settings.cluster.num_shards,
        stores.offsets,
        read_sides,
    )
    hub = None if subscriptions is None else subscriptions.hub
    add_node_services(
        server,
        commands=commands,
        host=host,
        manager=manager,
        heartbeats=stores.leases,
        history=stores.history,
        hub=hub,
        num_shards=settings.cluster.num_shards,
        host_prefix=host_prefix(settings.cluster.cluster_name),
    )
    health.add_to_server(server)
    await health.starting()
    tls = settings.tls.files
    address = bind(server, settings.server.address, plan.ports.grpc, tls)
    stack.push_async_callback(server.stop, settings.server.shutdown_grace_seconds)
    await _subscription_process(stack, plan)
    if hub is not None:
        stack.push_async_callback(hub.close)  # streams never end on their own
    http = _bind_http(stack, plan, commands, stores.history)
    await server.start()
    log.info("shard host %s: gRPC server started on %s%s", plan.host_id, address, tls_words(tls))
    if http is not None:
        http.start()
        log.info("shard host %s: HTTP/JSON API served on %s", plan.host_id, http.address)
    return server


async def _subscription_process(stack: AsyncExitStack, plan: NodePlan) -> None:
    """The node's subscription process, when subscriptions have a port of their own."""
    settings = plan.settings
    port = plan.ports.subscription
    if not settings.subscription.enabled or port is None:
        return
    process = SubscriptionProcess(settings, plan.target, port)
    await process.start()
    stack.push_async_callback(process.stop, settings.server.shutdown_grace_seconds)
    log.info("shard host %s: subscription streams also served on %s", plan.host_id, process.address)


def _bind_http(
    stack: AsyncExitStack, plan: NodePlan, commands: CommandHandler, history: HistoryReader
) -> HttpServer | None:
    """The HTTP/JSON API's port bound, when it is served."""
    settings = plan.settings
    if not settings.http.served:
        return None
    from cos.http import HttpServer, build_app, codec_for  # Starlette, uvicorn: only if served

    app = build_app(
        commands,
        history,
        codec=codec_for(settings.http.descriptor_sets),
        max_message=settings.grpc.max_message_bytes,
    )
    http = HttpServer(
        app,
        address=settings.http.address or settings.server.address,
        port=plan.ports.http,
        grace=settings.server.shutdown_grace_seconds,
    )
    http.bind()
    stack.push_async_callback(http.stop)
    return http
