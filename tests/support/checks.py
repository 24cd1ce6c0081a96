"""Load and journal checks shared by the cluster tests."""

from __future__ import annotations

import asyncio
import random
from collections import Counter, defaultdict

import asyncpg
import grpc

from chief_of_state.v1 import service_pb2_grpc
from tests.support.commands import request
from tests.support.readsides import Reader
from tests.support.waiting import wait_until

Stub = service_pb2_grpc.ChiefOfStateServiceStub


async def journal_revisions(db: asyncpg.Connection) -> dict[str, list[int]]:
    rows = await db.fetch(
        "SELECT entity_id, revision FROM cos_journal ORDER BY entity_id, revision"
    )
    found: dict[str, list[int]] = defaultdict(list)
    for row in rows:
        found[row["entity_id"]].append(row["revision"])
    return found


class Load:
    """Commands sent continuously to random hosts; remembers every acknowledged revision.
    With ``pause_on_error`` a worker waits that long after an error, as a client that backs
    off does (a channel whose connection broke fails calls at once until it reconnects)."""

    def __init__(
        self, stubs: dict[str, Stub], entities: list[str], pause_on_error: float = 0.0
    ) -> None:
        self.stubs = stubs
        self.pause_on_error = pause_on_error
        self.entities = entities
        self.acked: dict[str, set[int]] = defaultdict(set)
        self.errors: Counter[str] = Counter()
        self.said: dict[str, str] = {}  # status code -> the last message with it
        self.calls = 0  # every call finished, acknowledged or not
        self.targets = list(stubs)
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self, workers: int = 8) -> None:
        self._tasks = [asyncio.create_task(self._work(i)) for i in range(workers)]

    async def _work(self, worker: int) -> None:
        rng = random.Random(worker)
        mine = self.entities[worker :: len(self._tasks) or 1]
        while not self._stop.is_set():
            entity_id = rng.choice(mine)
            stub = self.stubs[rng.choice(self.targets)]
            try:
                reply = await stub.ProcessCommand(request(entity_id, add=[1]), timeout=30)
                self.calls += 1
                self.acked[entity_id].add(reply.meta.revision_number)
            except grpc.aio.AioRpcError as exc:
                self.calls += 1
                self.errors[exc.code().name] += 1
                self.said[exc.code().name] = exc.details() or ""
                if self.pause_on_error:
                    await asyncio.sleep(self.pause_on_error)

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)


def assert_journal_consistent(revisions: dict[str, list[int]], load: Load) -> None:
    for entity_id, found in revisions.items():
        assert found == list(range(1, len(found) + 1)), f"{entity_id}: gap or duplicate"
    for entity_id, acked in load.acked.items():
        assert acked <= set(revisions[entity_id]), f"{entity_id}: an acknowledged command is lost"


async def assert_read_side_complete(reader: Reader, revisions: dict[str, list[int]]) -> None:
    """Every journaled event reaches the read side, and per entity never ahead of order."""
    expected = {(e, r) for e, revs in revisions.items() for r in revs}

    async def all_delivered() -> bool:
        return set(reader.delivered()) >= expected

    await wait_until(all_delivered, 60, "every event at the read side")
    highest: dict[str, int] = defaultdict(int)
    for entity_id, revision in reader.delivered():
        assert revision <= highest[entity_id] + 1, f"{entity_id}: revision {revision} skipped ahead"
        highest[entity_id] = max(highest[entity_id], revision)
