"""The runtime's exception tree. Errors say what happened and nothing of the transport:
``cos/service/status.py`` maps them to gRPC status codes in one table, and
``cos/transport.py`` turns a gRPC error from a handler or a peer host into one of them.

    CosError                      a bug or broken invariant               (INTERNAL)
    ├── InvalidRequestError       the caller sent something unusable      (INVALID_ARGUMENT)
    ├── NotFoundError             the entity or read side does not exist  (NOT_FOUND)
    ├── HandlerReplyError         a handler answered something unusable   (INTERNAL)
    ├── HandlerCallError          a handler or the owner host answered an error: its own
    │                             status, message and details, passed on unchanged
    ├── ConflictError             a revision already exists               (ABORTED)
    ├── IdempotencyKeyReusedError an idempotency key came with another command (ALREADY_EXISTS)
    ├── RevisionMismatchError     the entity is not at the expected revision (FAILED_PRECONDITION)
    ├── JournalRejectedError      the database refused the data for good  (INTERNAL)
    ├── TooLargeError             a message exceeds COS_MAX_MESSAGE_BYTES (RESOURCE_EXHAUSTED)
    ├── DeadlineExceededError     the caller's deadline passed first      (DEADLINE_EXCEEDED)
    └── UnavailableError          transient: the caller may retry         (UNAVAILABLE)
        ├── ShardNotOwnedError    this host does not serve the shard now; nothing ran
        ├── HostUnreachableError  no connection to the shard's owner host; nothing ran
        ├── FencedError           another host took the shard's lease; nothing was written
        ├── NotWrittenError       an earlier command of the entity was not journaled, so
        │                         this one, computed on its events, was not written either
        └── JournalUnavailableError  the database cannot be reached

    StartupError                  a set-up mistake: cos serve exits 2 with its one line
    ├── DatabaseUnreachableError  PostgreSQL cannot be reached or refuses the login
    ├── PortInUseError            COS_PORT (or COS_HTTP_PORT) is taken on its address
    └── DescriptorsError          a file of COS_PROTO_DESCRIPTORS cannot be used

Callers branch on the class: the router retries ``ShardNotOwnedError``,
``HostUnreachableError``, ``FencedError`` and ``NotWrittenError`` (nothing of the command
was written), and nothing else.
"""

from __future__ import annotations


def shorten(text: str, limit: int = 64) -> str:
    """``text`` quoted for a message, cut to ``limit`` characters: an error never echoes
    unbounded input (a status message must fit in gRPC's 16 KB of metadata)."""
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(text.encode())} bytes)"


class CosError(Exception):
    """Root of every error the runtime raises on purpose."""


class InvalidRequestError(CosError):
    """The request cannot be processed as sent (e.g. empty entity id)."""


class NotFoundError(CosError):
    """The named entity has no revision yet, or the named thing does not exist."""


class OutOfRangeError(CosError):
    """The request names a position past the end (e.g. a revision the entity has not
    reached yet); it may become valid later."""


class HistoryDeletedError(CosError):
    """The request names history deleted after a snapshot (COS_JOURNAL_LOGICAL_DELETION)."""


class HandlerReplyError(CosError):
    """A handler replied with something the runtime cannot use (e.g. no state)."""


class HandlerCallError(CosError):
    """A handler (or the host owning the shard) answered with an error status.

    ``status`` is the canonical status code name (``google.rpc.Code``, e.g.
    ``FAILED_PRECONDITION``); ``details`` the serialized ``google.rpc.Status`` the
    handler attached, if any. Both reach the caller unchanged.
    """

    def __init__(self, status: str, message: str, details: bytes | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.details = details


class ConflictError(CosError):
    """A revision of the entity already exists in the journal."""


class IdempotencyKeyReusedError(CosError):
    """An ``x-cos-idempotency-key`` already applied to the entity came with another command."""


class RevisionMismatchError(CosError):
    """The entity is not at the revision the command's ``x-cos-expected-revision`` names;
    nothing ran."""


class JournalRejectedError(CosError):
    """The database refused what a command would write, and would refuse it again
    (a data or limit error, not a lost connection): it fails that command alone."""


class TooLargeError(CosError):
    """A request, event or state is larger than the largest message (COS_MAX_MESSAGE_BYTES)."""


class DeadlineExceededError(CosError):
    """The caller's deadline passed before the command reached the write handler; it was
    not run."""


class UnavailableError(CosError):
    """A transient failure; the caller may retry."""


class ShardNotOwnedError(UnavailableError):
    """The shard of the entity is not served by this host at the moment."""


class HostUnreachableError(UnavailableError):
    """No connection to the host that owns the shard: the forwarded call never ran."""


class FencedError(UnavailableError):
    """A journal write was refused because the shard's lease epoch moved on."""


class NotWrittenError(UnavailableError):
    """The command ran on the events of an earlier command of its entity whose journal
    write failed (``cos.writeside`` pipelines an entity's commands): nothing of it was
    written or acknowledged, and it may run again on the entity's durable state."""


class JournalUnavailableError(UnavailableError):
    """The journal database could not be reached or failed mid-transaction."""


class StartupError(Exception):
    """A mistake in the set-up that stops ``cos serve``; the message names the setting."""


class DatabaseUnreachableError(StartupError):
    """PostgreSQL could not be reached in time, or refused the configured login."""


class PortInUseError(StartupError):
    """The gRPC port is already bound on the configured address."""

    @classmethod
    def at(
        cls, address: str, port: int, *, setting: str = "COS_PORT", of: str = "COS_ADDRESS"
    ) -> PortInUseError:
        """The error for ``address:port``, naming the settings (``setting`` the port's,
        ``of`` the address's)."""
        return cls(
            f"{setting}: {address}:{port} is already in use ({of}, {setting}):"
            " stop what listens there or choose another port"
        )


class DescriptorsError(StartupError):
    """A descriptor set of COS_PROTO_DESCRIPTORS is missing, unreadable or incomplete."""
