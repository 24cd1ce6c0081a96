"""Durable subscriptions: the journal's events streamed to gRPC clients, resumable from a
cursor of per-shard positions (``cos.v1.SubscriptionService``)."""

from cos.subscription.announce import CommitAnnouncer, CommitWakeups
from cos.subscription.hub import SubscriptionHub
from cos.subscription.start import Subscription, check_cursor

__all__ = [
    "CommitAnnouncer",
    "CommitWakeups",
    "Subscription",
    "SubscriptionHub",
    "check_cursor",
]
