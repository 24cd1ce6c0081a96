"""Durable subscriptions: the journal's events streamed to gRPC clients, resumable from a
cursor of per-shard positions (``cos.v1.SubscriptionService``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cos.exports import lazy_exports

if TYPE_CHECKING:
    from cos.subscription._announce import CommitAnnouncer, CommitWakeups
    from cos.subscription._hub import SubscriptionHub
    from cos.subscription._settings import SubscriptionSettings
    from cos.subscription._start import Subscription, check_cursor

__all__ = [
    "CommitAnnouncer",
    "CommitWakeups",
    "Subscription",
    "SubscriptionHub",
    "SubscriptionSettings",
    "check_cursor",
]

__getattr__ = lazy_exports(__name__)
