"""The runtime's metric instruments (``docs/observability.md`` lists each), on the
OpenTelemetry metrics API."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from opentelemetry.metrics import CallbackOptions, Counter, Histogram, Meter, Observation

from cos.readside import LagSample

# Histogram buckets: milliseconds for latencies, counts for batch sizes.
_MS_BUCKETS = (0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)

Read = Callable[[CallbackOptions], Iterable[Observation]]


class Metrics:
    """The instruments one node records with."""

    def __init__(self, meter: Meter) -> None:
        self._meter = meter
        histogram, counter = self._histogram, self._counter
        self.server_duration = histogram(
            "rpc.server.duration", "ms", "time to answer a ProcessCommand or GetState call"
        )
        self.client_duration = histogram(
            "rpc.client.duration", "ms", "time of a call to a write or read handler, by RPC"
        )
        self.commands = counter(
            "cos.commands",
            "{command}",
            "commands answered to clients, by outcome and gRPC status code",
        )
        self.forwarded = counter(
            "cos.commands.forwarded",
            "{command}",
            "commands and state reads sent on to the host owning the shard",
        )
        self.batch_size = histogram(
            "cos.journal.batch.size",
            "{command}",
            "commands committed together in one journal transaction",
            _BATCH_BUCKETS,
        )
        self.flush_duration = histogram(
            "cos.journal.flush.duration", "ms", "time of one journal transaction (group commit)"
        )
        self.delivered = counter(
            "cos.readside.events.delivered", "{event}", "events a read handler accepted"
        )
        self.failed = counter(
            "cos.readside.events.failed",
            "{event}",
            "failed deliveries to a read handler (each attempt)",
        )

    def _histogram(
        self, name: str, unit: str, description: str, buckets: Sequence[float] = _MS_BUCKETS
    ) -> Histogram:
        return self._meter.create_histogram(
            name, unit=unit, description=description, explicit_bucket_boundaries_advisory=buckets
        )

    def _counter(self, name: str, unit: str, description: str) -> Counter:
        return self._meter.create_counter(name, unit=unit, description=description)

    def _gauge(self, name: str, unit: str, description: str, read: Read) -> None:
        self._meter.create_observable_gauge(name, [read], unit=unit, description=description)

    def observe_node(
        self,
        *,
        fenced_writes: Callable[[], int],
        entities: Callable[[], int],
        shards: Callable[[], int],
    ) -> None:
        """Instruments read from the node when metrics are collected."""
        self._meter.create_observable_counter(
            "cos.journal.fenced_writes",
            [_single(fenced_writes)],
            unit="{write}",
            description="journal writes refused because another host had taken the shard",
        )
        self._gauge(
            "cos.entities.cached",
            "{entity}",
            "entities held in memory by this host",
            _single(entities),
        )
        self._gauge("cos.shards.owned", "{shard}", "shards this host serves", _single(shards))

    def observe_lag(self, samples: Callable[[], Iterable[LagSample]]) -> None:
        """Read-side lag per (read side, shard) of the shards this node serves."""

        def events(options: CallbackOptions) -> Iterable[Observation]:
            return [Observation(s.events, _lag_labels(s)) for s in samples()]

        def seconds(options: CallbackOptions) -> Iterable[Observation]:
            return [Observation(s.seconds, _lag_labels(s)) for s in samples()]

        self._gauge(
            "cos.readside.lag.events",
            "{event}",
            "events committed in the shard and not yet delivered to the read side",
            events,
        )
        self._gauge(
            "cos.readside.lag.seconds",
            "s",
            "age of the oldest event not yet delivered to the read side (0 when caught up)",
            seconds,
        )


def _lag_labels(sample: LagSample) -> dict[str, str | int]:
    return {"cos.read_side_id": sample.read_side_id, "cos.shard": sample.shard}


def _single(read: Callable[[], int]) -> Read:
    def callback(options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(read())]

    return callback
