"""Journal writes observed: a span per command's write, its context stored with the
events (fakes for the store)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from cos.storage import EntityAppend, NewEvent
from cos.telemetry import Instruments
from cos.telemetry._journal import ObservedJournalWriter
from cos.writeside._group_commit import GroupCommitWriter
from tests.support.fakes import FakeJournalStore


def new_events(count: int) -> list[NewEvent]:
    now = datetime.now(timezone.utc)
    return [NewEvent(r, "t", now, b"") for r in range(1, count + 1)]


async def test_a_traced_write_is_a_span_whose_context_is_stored_with_the_events() -> None:
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    store = FakeJournalStore()
    stored: list[str | None] = []
    append = store.append

    async def keep(shard: int, epoch: int, batch: Sequence[EntityAppend]) -> int:
        stored.extend(item.trace_context for item in batch)
        return await append(shard, epoch, batch)

    store.append = keep  # type: ignore[method-assign]
    writer = ObservedJournalWriter(
        GroupCommitWriter(store, shard=3, epoch=1, max_batch=100),
        instruments=Instruments(provider.get_tracer("t")),
    )
    tracer = provider.get_tracer("t")
    await writer.write(EntityAppend("untraced", new_events(1)))  # no command span: no span
    assert stored == [None] and not spans.get_finished_spans()
    stored.clear()
    with tracer.start_as_current_span("command") as command:
        await writer.write(EntityAppend("e0", new_events(2)))
    span, _ = spans.get_finished_spans()
    assert span.name == "cos.journal.append"
    assert span.parent is not None
    assert span.parent.span_id == command.get_span_context().span_id
    assert dict(span.attributes or {}) == {
        "cos.shard": 3,
        "cos.journal.batch_size": 1,
        "cos.journal.position.first": 2,
        "cos.journal.position.last": 3,
    }
    context = span.get_span_context()
    flags = int(context.trace_flags)
    assert flags & 1  # sampled
    assert stored == [f"00-{context.trace_id:032x}-{context.span_id:016x}-{flags:02x}"]
