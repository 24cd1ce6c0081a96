"""The write side: a command from the caller to the handler, its events to the journal,
its reply. Per-entity order (the mailboxes of ``_shard``), durability before the reply
(group commit, ``_group_commit``), idempotency keys and expected revisions (``_guards``),
what a request or a reply may hold (``_limits``), and the pure decisions of an entity
(``_entity``). ``process_command`` and ``read_state`` are the use cases every protocol
calls."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cos.exports import lazy_exports

if TYPE_CHECKING:
    from cos.writeside._api import process_command, read_state
    from cos.writeside._commands import (
        CommandHandler,
        CommandInterceptor,
        CommandRequest,
        Interceptor,
        StateRequest,
        chain,
    )
    from cos.writeside._entity import EntityState, state_from_event
    from cos.writeside._group_commit import CommitListener, Committed, Flush, JournalWriter
    from cos.writeside._handler import HandlerCall, WriteHandler, WriteHandlerClient
    from cos.writeside._limits import check_entity_id
    from cos.writeside._settings import HandlerSettings, ShardSettings
    from cos.writeside._shard import Shard, ShardParts
    from cos.writeside._sweeps import Sweeps

__all__ = [
    "CommandHandler",
    "CommandInterceptor",
    "CommandRequest",
    "CommitListener",
    "Committed",
    "EntityState",
    "Flush",
    "HandlerCall",
    "HandlerSettings",
    "Interceptor",
    "JournalWriter",
    "Shard",
    "ShardParts",
    "ShardSettings",
    "StateRequest",
    "Sweeps",
    "WriteHandler",
    "WriteHandlerClient",
    "chain",
    "check_entity_id",
    "process_command",
    "read_state",
    "state_from_event",
]

__getattr__ = lazy_exports(__name__)
