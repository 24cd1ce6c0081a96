"""Journal rows for the store-level tests (no handler, no runtime)."""

from __future__ import annotations

from datetime import datetime, timezone

from cos.storage import NewEvent

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)


def events(*revisions: int) -> list[NewEvent]:
    """One event per revision, each with a payload naming it."""
    return [NewEvent(r, "test.Event", NOW, f"event-{r}".encode()) for r in revisions]
