"""What telemetry puts around the parts of a node, in one place: the runtime asks here for
each part it builds, and gets it back unchanged when telemetry is off.

    commands   TelemetryInterceptor, the outermost link of the chain
    clients    the write handler, the peer hosts, each read handler
    journal    each shard's journal writer, and a listener of every shard's commits
    gauges     the node's shards and entities, and read-side lag
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

from cos.readside import ReadHandler, ReadSideHosting
from cos.sharding import Peers, ShardEvents, ShardHost
from cos.telemetry._inbound import TelemetryInterceptor
from cos.telemetry._instruments import Instruments
from cos.telemetry._journal import FlushMetrics, ObservedJournalWriter
from cos.telemetry._lag import LagGauges
from cos.telemetry._outbound import ObservedPeers, ObservedReadHandler, ObservedWriteHandler
from cos.writeside import Interceptor, JournalWriter, WriteHandler


class Wrappers:
    """The wrappers of one node's parts, over its ``instruments``."""

    def __init__(self, instruments: Instruments) -> None:
        self._instruments = instruments
        self._on = instruments.tracer is not None or instruments.metrics is not None

    @property
    def propagated(self) -> tuple[str, ...]:
        """The headers of the configured propagators (b3, ...), sent on to the handler."""
        return tuple(sorted(self._instruments.headers))

    def interceptors(
        self, *, num_shards: int, owner: Callable[[int], str | None]
    ) -> list[Interceptor]:
        """The interceptor that observes every call a node answers; none when off."""
        if not self._on:
            return []
        return [
            functools.partial(
                TelemetryInterceptor,
                instruments=self._instruments,
                num_shards=num_shards,
                owner=owner,
            )
        ]

    def write_handler(self, handler: WriteHandler, *, target: str) -> WriteHandler:
        """``handler``, its calls observed."""
        if not self._on:
            return handler
        return ObservedWriteHandler(handler, instruments=self._instruments, target=target)

    def peers(self, peers: Peers) -> Peers:
        """``peers``, the forward hop observed."""
        return ObservedPeers(peers, instruments=self._instruments) if self._on else peers

    def read_handler(self, handler: ReadHandler) -> ReadHandler:
        """``handler``, its deliveries observed."""
        if not self._on:
            return handler
        return ObservedReadHandler(handler, instruments=self._instruments)

    def journal_writer(self) -> Callable[[JournalWriter], JournalWriter] | None:
        """What wraps each shard's journal writer: a span per write when tracing."""
        if self._instruments.tracer is None:
            return None
        return functools.partial(ObservedJournalWriter, instruments=self._instruments)

    def shard_events(self) -> Sequence[ShardEvents]:
        """What listens to every shard's commits: the journal transaction metrics."""
        metrics = self._instruments.metrics
        return [FlushMetrics(metrics)] if metrics is not None else []

    def gauges(self, host: ShardHost, read_sides: ReadSideHosting) -> LagGauges | None:
        """The node's gauges (fenced writes, entities, shards), and the read-side lag
        sampler when read sides run here (the caller starts and stops it)."""
        metrics = self._instruments.metrics
        if metrics is None:
            return None
        metrics.observe_node(
            fenced_writes=lambda: host.fenced_writes,
            entities=lambda: host.active_entities,
            shards=lambda: host.shard_count,
        )
        return LagGauges(read_sides.sample_lag, metrics) if read_sides.active else None
