"""Calling a peer that is either a Ray actor handle or a plain object (in unit tests)."""

from __future__ import annotations

from typing import Any


async def call(method: Any, *args: Any) -> Any:
    """``await method.remote(*args)`` for an actor method, ``await method(*args)`` otherwise."""
    remote = getattr(method, "remote", None)
    if remote is not None:
        return await remote(*args)
    return await method(*args)
