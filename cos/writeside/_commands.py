"""The command path as data: one request object travels from the servicer to the shard,
through a chain of interceptors (where tracing, metrics and idempotency plug in).

The chain is built once, when a node starts: ``chain(router, [A, B])`` gives ``A(B(router))``,
so ``A`` sees every call first. An interceptor subclasses :class:`CommandInterceptor` and
overrides what it wraps, calling ``self.next`` to go on, the way Temporal's SDK chains its
interceptors.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from google.protobuf import any_pb2

from cos.transport import Metadata
from cos.writeside._entity import EntityState


@dataclass(frozen=True, slots=True)
class CommandRequest:
    """``ProcessCommand``: run ``command`` on the entity, serially with its others."""

    entity_id: str
    command: any_pb2.Any
    metadata: Metadata = ()  # the request headers, keys lower case
    # Forwarded by another host: serve it here or say "not owner", never forward again.
    forwarded: bool = False
    deadline: float | None = None  # the caller's, on the time.monotonic() clock


@dataclass(frozen=True, slots=True)
class StateRequest:
    """``GetState``: the entity's state after its last committed command."""

    entity_id: str
    forwarded: bool = False
    deadline: float | None = None
    metadata: Metadata = ()  # the request headers (the trace context travels in them)


class CommandHandler(Protocol):
    """Anything that answers commands: the router of a node, or an interceptor around it."""

    async def process_command(self, request: CommandRequest) -> EntityState: ...

    async def get_state(self, request: StateRequest) -> EntityState: ...


class CommandInterceptor:
    """An interceptor that passes every call on to ``next``; subclass and override."""

    def __init__(self, next: CommandHandler) -> None:
        self.next = next

    async def process_command(self, request: CommandRequest) -> EntityState:
        """Run the command further down the chain."""
        return await self.next.process_command(request)

    async def get_state(self, request: StateRequest) -> EntityState:
        """Read the state further down the chain."""
        return await self.next.get_state(request)


Interceptor = Callable[[CommandHandler], CommandHandler]


def chain(handler: CommandHandler, interceptors: Sequence[Interceptor]) -> CommandHandler:
    """``handler`` wrapped by ``interceptors``; the first one sees each call first."""
    for interceptor in reversed(interceptors):
        handler = interceptor(handler)
    return handler
