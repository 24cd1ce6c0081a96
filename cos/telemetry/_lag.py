"""Read-side lag as gauges: sampled from the database once a second, read by the metrics
thread whenever metrics are collected."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from cos.background import Background
from cos.readside import LagSample
from cos.telemetry._metrics import Metrics

log = logging.getLogger(__name__)

LAG_SAMPLE_SECONDS = 1.0


class LagGauges:
    """The lag of every read side in every shard served here (``sample``: the same reading
    as ``cos-cli readside status``), kept for the ``cos.readside.lag.*`` gauges."""

    def __init__(self, sample: Callable[[], Awaitable[list[LagSample]]], metrics: Metrics) -> None:
        self._sample = sample
        self.lag: list[LagSample] = []  # read by the metrics thread: replaced, never changed
        self._background = Background()
        metrics.observe_lag(lambda: self.lag)

    def start(self) -> None:
        """Sample every second."""
        self._background.start(self._sample_forever())

    async def _sample_forever(self) -> None:
        while True:
            try:
                self.lag = await self._sample()
            except Exception as exc:  # the next sample may work; the gauges keep the last
                log.warning("read-side lag not sampled: %r", exc)
            await asyncio.sleep(LAG_SAMPLE_SECONDS)

    async def stop(self) -> None:
        """Stop sampling."""
        await self._background.stop()
