"""Subscriptions' settings (``COS_SUBSCRIPTION_*``)."""

from __future__ import annotations

from pydantic import Field, model_validator

from cos.config import Part


class SubscriptionSettings(Part):
    """Whether subscriptions are served, how far a subscriber may fall behind in memory,
    and the port of the node's subscription process."""

    env_prefix = "COS_SUBSCRIPTION_"

    enabled: bool = Field(
        False, description="serve the Subscribe/SubscribeAll streams of cos.v1.SubscriptionService"
    )
    buffer: int = Field(
        1000,
        gt=0,
        description="events buffered per subscriber before it catches up from the journal",
    )
    port: int | None = Field(
        None,
        gt=0,
        lt=65536,
        description="port where a separate, lower-priority process of each node serves the"
        " subscription streams (COS_PORT serves them too); unset: no such process",
    )

    @model_validator(mode="after")
    def _port_needs_subscriptions(self) -> SubscriptionSettings:
        if self.port is not None and not self.enabled:
            raise ValueError("COS_SUBSCRIPTION_PORT: needs COS_SUBSCRIPTION_ENABLED=true")
        return self
