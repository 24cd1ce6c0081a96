"""Read sides: ordered, at-least-once delivery of journal events to read handlers, one
runner per read side and shard, and the operator actions on them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cos.exports import lazy_exports

if TYPE_CHECKING:
    from cos.readside._client import ReadHandler, ReadHandlerClient
    from cos.readside._config import ReadSideConfigError, describe, env_variables, load_read_sides
    from cos.readside._hosting import LagSample, ReadSideHosting
    from cos.readside._manager import ReadSideManager
    from cos.readside._runner import Failure
    from cos.readside._settings import ReadSideSettings

__all__ = [
    "Failure",
    "LagSample",
    "ReadHandler",
    "ReadHandlerClient",
    "ReadSideConfigError",
    "ReadSideHosting",
    "ReadSideManager",
    "ReadSideSettings",
    "describe",
    "env_variables",
    "load_read_sides",
]

__getattr__ = lazy_exports(__name__)
