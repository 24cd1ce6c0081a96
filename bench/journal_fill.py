"""Fill a schema's journal without the API, for the benchmarks of how cost grows.

Writes ``--entities`` bank accounts with ``--events`` events in all (an ``AccountOpened``,
then ``MoneyDeposited`` of 1 each) with PostgreSQL's ``COPY``, as the runtime would have
written them: ``EventWrapper`` payloads with the resulting ``BankAccount`` and the meta,
revisions 1..n per account, positions gap-free per shard in the order written (accounts
interleaved, revision by revision), each shard's lease at its last position, a snapshot every
``--snapshot-every`` revisions (0: none) and the shard count recorded. A `cos serve` with the
same ``COS_NUM_SHARDS`` on the schema then serves the accounts and goes on from their last
revisions. With ``--deep N``, one more account (``<prefix>-deep``) gets N events and no
snapshot. The schema is migrated first and must hold no journal yet.

Run: ``python bench/journal_fill.py --schema S --entities 1000000 --events 10000000
[--shards 8] [--snapshot-every 100] [--prefix acct]``.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Iterator
from datetime import datetime, timezone

import asyncpg
from google.protobuf import any_pb2, message
from load import bank_pb2  # load puts bank.v1 on the path

from chief_of_state.v1 import common_pb2, persistence_pb2
from cos.postgres import DatabaseTarget, migrate
from cos.sharding import shard_of

CHUNK = 50_000  # rows per COPY
JOURNAL_COLUMNS = ["shard", "position", "entity_id", "revision", "event_type", "created_at"]
JOURNAL_COLUMNS += ["payload"]
SNAPSHOT_COLUMNS = ["entity_id", "revision", "created_at", "payload"]


def _packed(value: message.Message) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(value)
    return packed


class Filler:
    """The rows of the journal and snapshots, generated in the order they are written."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.ids = [f"{args.prefix}-{i}" for i in range(args.entities)]
        self.shards = [shard_of(e, args.shards) for e in self.ids]
        base, extra = divmod(args.events, args.entities)
        self.counts = [base + (1 if i < extra else 0) for i in range(args.entities)]
        if args.deep:  # one more account, with that many events and no snapshot
            self.ids.append(f"{args.prefix}-deep")
            self.shards.append(shard_of(self.ids[-1], args.shards))
            self.counts.append(args.deep)
        self.deep = args.deep
        self.snapshot_every = args.snapshot_every
        self.positions = [0] * args.shards
        self.when = datetime.now(timezone.utc)
        self.date = common_pb2.MetaData().revision_date
        self.date.FromDatetime(self.when)

    def rows(self) -> Iterator[tuple[str, tuple[object, ...]]]:
        """("journal" | "snapshot", row), revision by revision over every account."""
        # Most events first, so each revision stops at the first account without it.
        order = sorted(range(len(self.ids)), key=lambda i: -self.counts[i])
        for revision in range(1, max(self.counts) + 1):
            for index in order:
                if self.counts[index] < revision:
                    break
                yield from self._event(index, self.ids[index], revision)

    def _event(
        self, index: int, entity_id: str, revision: int
    ) -> Iterator[tuple[str, tuple[object, ...]]]:
        if revision == 1:
            event: message.Message = bank_pb2.AccountOpened(owner="bench", balance=0)
        else:
            event = bank_pb2.MoneyDeposited(amount=1)
        state = bank_pb2.BankAccount(account_id=entity_id, owner="bench", balance=revision - 1)
        meta = common_pb2.MetaData(
            entity_id=entity_id, revision_number=revision, revision_date=self.date
        )
        wrapper = persistence_pb2.EventWrapper(
            event=_packed(event), resulting_state=_packed(state), meta=meta
        )
        shard = self.shards[index]
        self.positions[shard] += 1
        yield (
            "journal",
            (
                shard,
                self.positions[shard],
                entity_id,
                revision,
                event.DESCRIPTOR.full_name,
                self.when,
                wrapper.SerializeToString(),
            ),
        )
        deep = self.deep and index == len(self.ids) - 1
        if self.snapshot_every and revision % self.snapshot_every == 0 and not deep:
            snapshot = persistence_pb2.StateWrapper(state=wrapper.resulting_state, meta=meta)
            yield "snapshot", (entity_id, revision, self.when, snapshot.SerializeToString())


async def fill(args: argparse.Namespace) -> None:
    target = DatabaseTarget(
        host=args.db_host,
        port=args.db_port,
        user=args.db_user,
        database=args.db_name,
        schema=args.schema,
        password=args.db_password or "",
    )
    await migrate(target)
    conn = await asyncpg.connect(**target.connect_kwargs())
    try:
        if await conn.fetchval("SELECT count(*) FROM cos_shard_leases"):
            raise SystemExit(f"bench: schema {args.schema!r} has a journal already")
        filler, began = Filler(args), time.monotonic()
        pending: dict[str, list[tuple[object, ...]]] = {"journal": [], "snapshot": []}
        written = 0
        for table, row in filler.rows():
            pending[table].append(row)
            if len(pending["journal"]) >= CHUNK:
                written += await _flush(conn, pending)
                print(f"{written} events ({time.monotonic() - began:.0f} s)", flush=True)
        written += await _flush(conn, pending)
        await conn.executemany(
            "INSERT INTO cos_shard_leases (shard, owner, epoch, last_position)"
            " VALUES ($1, 'journal-fill', 0, $2)",
            list(enumerate(filler.positions)),
        )
        await conn.execute(
            "INSERT INTO cos_runtime_settings (name, value) VALUES ('num_shards', $1)",
            str(args.shards),
        )
        await conn.execute("ANALYZE cos_journal; ANALYZE cos_snapshots")
        print(
            f"filled {args.schema!r}: {written} events of {args.entities} accounts in"
            f" {args.shards} shards, {time.monotonic() - began:.0f} s",
            flush=True,
        )
    finally:
        await conn.close()


async def _flush(conn: asyncpg.Connection, pending: dict[str, list[tuple[object, ...]]]) -> int:
    journal, snapshots = pending["journal"], pending["snapshot"]
    async with conn.transaction():
        await conn.copy_records_to_table("cos_journal", records=journal, columns=JOURNAL_COLUMNS)
        if snapshots:
            await conn.copy_records_to_table(
                "cos_snapshots", records=snapshots, columns=SNAPSHOT_COLUMNS
            )
    count = len(journal)
    pending["journal"], pending["snapshot"] = [], []
    return count


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--schema", required=True, help="the schema to fill (made if missing)")
    parser.add_argument("--entities", type=int, default=1000, help="bank accounts")
    parser.add_argument("--events", type=int, default=100_000, help="events in all")
    parser.add_argument("--shards", type=int, default=8, help="COS_NUM_SHARDS to serve it with")
    parser.add_argument("--snapshot-every", type=int, default=100, help="0: no snapshots")
    parser.add_argument("--prefix", default="acct", help="account ids: <prefix>-<n>")
    parser.add_argument(
        "--deep", type=int, default=0, help="one more account, <prefix>-deep: events, no snapshot"
    )
    parser.add_argument("--db-host", default="127.0.0.1")
    parser.add_argument("--db-port", type=int, default=5432)
    parser.add_argument("--db-user", default="postgres")
    parser.add_argument("--db-password", default=None)
    parser.add_argument("--db-name", default="postgres")
    return _checked(parser, parser.parse_args())


def _checked(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.Namespace:
    if args.events < args.entities:
        parser.error("--events must be at least --entities (each account is opened)")
    return args


if __name__ == "__main__":
    asyncio.run(fill(_parse_args()))
