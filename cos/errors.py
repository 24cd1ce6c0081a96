"""The runtime's exception tree and its mapping to gRPC status codes.

    CosError                      INTERNAL     a bug or broken invariant
    ├── InvalidRequestError       INVALID_ARGUMENT  the caller sent something unusable
    ├── NotFoundError             NOT_FOUND    the entity or read side does not exist
    ├── HandlerReplyError         INTERNAL     a handler answered something we cannot use
    ├── HandlerCallError          (the handler's own code)  the handler raised an error
    ├── UnavailableError          UNAVAILABLE  retryable: try again later
    │   ├── ShardNotOwnedError    UNAVAILABLE  the shard is not served here right now
    │   ├── FencedError           UNAVAILABLE  another host took the shard's lease
    │   └── JournalUnavailableError UNAVAILABLE  the database cannot be reached
    └── ConflictError             ABORTED      a revision already exists

Each class carries its code (``error.code``); servicers abort with it, nothing
else maps codes.
"""

from __future__ import annotations

import grpc


class CosError(Exception):
    """Root of every error the runtime raises on purpose."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL


class InvalidRequestError(CosError):
    """The request cannot be processed as sent (e.g. empty entity id)."""

    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFoundError(CosError):
    """The named entity has no revision yet, or the named thing does not exist."""

    code = grpc.StatusCode.NOT_FOUND


class HandlerReplyError(CosError):
    """A handler replied with something the runtime cannot use (e.g. no state)."""

    code = grpc.StatusCode.INTERNAL


class HandlerCallError(CosError):
    """A handler call failed; carries the status to pass on to the caller unchanged."""

    def __init__(
        self,
        code: grpc.StatusCode,
        message: str,
        trailing_metadata: tuple[tuple[str, str | bytes], ...] = (),
    ) -> None:
        super().__init__(message)
        self.code = code
        self.trailing_metadata = trailing_metadata


class UnavailableError(CosError):
    """A transient failure; the caller may retry."""

    code = grpc.StatusCode.UNAVAILABLE


class ShardNotOwnedError(UnavailableError):
    """The shard of the entity is not served by this host at the moment."""


class FencedError(UnavailableError):
    """A journal write was refused because the shard's lease epoch moved on."""


class JournalUnavailableError(UnavailableError):
    """The journal database could not be reached or failed mid-transaction."""


class ConflictError(CosError):
    """A revision of the entity already exists in the journal."""

    code = grpc.StatusCode.ABORTED
