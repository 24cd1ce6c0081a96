"""An entity's stored history: its events and its past states (``cos.v1.HistoryService``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cos.exports import lazy_exports

if TYPE_CHECKING:
    from cos.history._reader import HistoryReader

__all__ = [
    "HistoryReader",
]

__getattr__ = lazy_exports(__name__)
